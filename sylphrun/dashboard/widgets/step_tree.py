"""The step tree of one run, updated node by node as the journal changes.

A node's label is replaced only when its step changed; its lines (attempts, output,
children) are rebuilt only when it is expanded. Compensation steps get a heading node
before the first of them and their own colour and arrow, so the undo trace reads as one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from sylphrun import model
from sylphrun.dashboard import steps_view
from sylphrun.dashboard import text as fmt
from sylphrun.journal.types import RunSummary

# Node data: ("step", key), ("child", run_id), ("countdown", key), ("progress", key),
# ("compensation", ""), ("attempts", "") and ("attempt", n) for the run's failed attempts
# (always the last nodes), or None for plain lines.
Ref = tuple[str, str] | None
COMPENSATION_HEAD = ("compensation", "")


class StepTree(Tree[Ref]):
    DEFAULT_CSS = """
    StepTree { height: 1fr; }
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(Text("steps"), id=id)
        self.clock = clock
        self.show_root = False
        self.guide_depth = 3
        self.auto_expand = True
        self._forget()

    def reset(self) -> None:
        """Forget the run shown (the screen is reused for another run)."""
        self.clear()
        self._forget()

    def _forget(self) -> None:
        self.steps: dict[str, model.Step] = {}
        self.children_by_id: dict[str, RunSummary] = {}
        self._step_nodes: dict[str, TreeNode[Ref]] = {}
        self._order: list[tuple[str, str]] = []
        self._key_width = 8
        self._stale: set[str] = set()  # collapsed nodes whose lines are out of date
        self._auto_expanded: set[str] = set()
        self._fanout_sig: dict[str, tuple] = {}
        self._placeholder: TreeNode[Ref] | None = None
        self._attempts_node: TreeNode[Ref] | None = None
        self._attempts_sig: tuple = ()

    # -- data ------------------------------------------------------------------------------

    def show_steps(
        self,
        steps: list[model.Step],
        children: list[RunSummary],
        *,
        empty_text: str = "no steps yet",
    ) -> None:
        if not steps:
            label = Text(empty_text, style="dim italic")
            if self._placeholder is None:
                self._placeholder = self.root.add_leaf(label)
            else:
                self._placeholder.set_label(label)
            return
        if self._placeholder is not None:
            self._placeholder.remove()
            self._placeholder = None
        now = self.clock()
        self.children_by_id = {c.id: c for c in children}
        new_width = steps_view.key_width(steps)
        width_changed = new_width != self._key_width
        self._key_width = new_width
        order = self._wanted_order(steps)
        if order[: len(self._order)] != self._order:
            self._rebuild(steps)
            return
        known = len(self._order)
        by_key = {s.key: s for s in steps}
        for i, ref in enumerate(order):
            if ref == COMPENSATION_HEAD:
                if i >= known:
                    self.root.add_leaf(
                        self._compensation_heading(), data=ref, before=self._attempts_node
                    )
                continue
            step = by_key[ref[1]]
            old = self.steps.get(step.key)
            node = self._step_nodes.get(step.key)
            if node is None:
                self._add_step_node(step, now)
                continue
            sig = self._fanout_signature(step)
            if old == step and not width_changed and sig == self._fanout_sig.get(step.key):
                continue
            self.steps[step.key] = step
            self._fanout_sig[step.key] = sig
            node.allow_expand = steps_view.has_details(step)
            node.set_label(self._label(step, now))
            self._maybe_auto_expand(step, node)
            if node.is_expanded:
                self._fill(node, step)
            else:
                self._stale.add(step.key)
        self._order = order
        self._place_cursor()

    def show_attempts(self, attempts: list[model.RunAttempt]) -> None:
        """The run's failed attempts, after the steps: their errors and tracebacks."""
        lines = steps_view.run_attempt_lines(attempts)
        sig = tuple((line.text.plain, len(line.children)) for line in lines)
        if sig == self._attempts_sig:
            return
        self._attempts_sig = sig
        if self._attempts_node is not None:
            self._attempts_node.remove()
            self._attempts_node = None
        if not lines:
            return
        label = Text(f"run attempts: {len(lines)} failed", style="bold red")
        node = self.root.add(label, data=("attempts", ""), expand=True)
        for line in lines:
            self._add_line(node, line)
        self._attempts_node = node

    def selected_attempts(self) -> bool:
        """Is the cursor in the run attempts' lines?"""
        node = self.cursor_node
        while node is not None and node is not self.root:
            if node.data == ("attempts", ""):
                return True
            node = node.parent
        return False

    def _place_cursor(self) -> None:
        # A tree shown for the first time has no cursor: put it on the first step so the
        # pane beside it shows something and the arrow keys start from the top.
        if self.cursor_line < 0 and self._step_nodes:
            self.move_cursor(next(iter(self._step_nodes.values())))

    def _wanted_order(self, steps: list[model.Step]) -> list[tuple[str, str]]:
        order: list[tuple[str, str]] = []
        for s in steps:
            if s.kind == model.COMPENSATION and COMPENSATION_HEAD not in order:
                order.append(COMPENSATION_HEAD)
            order.append(("step", s.key))
        return order

    def _rebuild(self, steps: list[model.Step]) -> None:
        expanded = {k for k, n in self._step_nodes.items() if n.is_expanded}
        cursor = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        self._attempts_node = None  # cleared with the rest; show_attempts adds it again
        self._attempts_sig = ()
        self._step_nodes.clear()
        self.steps.clear()
        self._stale.clear()
        self._order = []
        now = self.clock()
        by_key = {s.key: s for s in steps}
        for ref in self._wanted_order(steps):
            if ref == COMPENSATION_HEAD:
                self.root.add_leaf(self._compensation_heading(), data=ref)
            else:
                node = self._add_step_node(by_key[ref[1]], now)
                if ref[1] in expanded:
                    node.expand()
        self._order = self._wanted_order(steps)
        if cursor is not None:
            self.select_ref(cursor)
        self._place_cursor()

    def _label(self, step: model.Step, now: float) -> Text:
        label = steps_view.step_label(step, now, self._key_width)
        if not steps_view.has_details(step):
            # No expand arrow is drawn before it: two cells keep the columns aligned.
            label = Text("  ") + label
        return label

    def _compensation_heading(self) -> Text:
        return Text(
            "↩ compensating: undo steps, newest first", style=f"bold {fmt.COMPENSATION_STYLE}"
        )

    def _add_step_node(self, step: model.Step, now: float) -> TreeNode[Ref]:
        node = self.root.add(
            self._label(step, now),
            data=("step", step.key),
            allow_expand=steps_view.has_details(step),
            before=self._attempts_node,
        )
        self._step_nodes[step.key] = node
        self.steps[step.key] = step
        self._fanout_sig[step.key] = self._fanout_signature(step)
        self._stale.add(step.key)
        self._maybe_auto_expand(step, node)
        return node

    def _maybe_auto_expand(self, step: model.Step, node: TreeNode[Ref]) -> None:
        """Show a failure or a pending retry without a key press (once per step)."""
        wanted = step.status in (model.STEP_FAILED, model.STEP_RETRYING) or (
            step.child_run_ids and step.key not in self._auto_expanded
        )
        if wanted and step.key not in self._auto_expanded and steps_view.has_details(step):
            self._auto_expanded.add(step.key)
            self._fill(node, step)
            node.expand()

    def _fanout_signature(self, step: model.Step) -> tuple:
        if not step.child_run_ids:
            return ()
        kids = self.children_by_id
        shown = steps_view.notable_children(step.child_run_ids, kids, steps_view.TREE_CHILDREN)
        return tuple(
            (rid, kids[rid].status, kids[rid].error) if rid in kids else (rid,) for rid in shown
        ) + steps_view.fanout_counts(step, kids)

    def _fill(self, node: TreeNode[Ref], step: model.Step) -> None:
        self._stale.discard(step.key)
        node.remove_children()
        lines = steps_view.detail_lines(step, self.children_by_id, self.clock(), full=False)
        for line in lines:
            self._add_line(node, line)

    def _add_line(self, parent: TreeNode[Ref], line: steps_view.Line) -> None:
        if line.children:
            sub = parent.add(line.text, data=line.ref, expand=line.expand)
            for child in line.children:
                self._add_line(sub, child)
        else:
            parent.add_leaf(line.text, data=line.ref)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Ref]) -> None:
        ref = event.node.data
        if ref is not None and ref[0] == "step" and ref[1] in self._stale:
            self._fill(event.node, self.steps[ref[1]])

    # -- time ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Countdowns and the durations of unfinished steps move on."""
        now = self.clock()
        for key, step in self.steps.items():
            if step.status in (model.STEP_RUNNING, model.STEP_RETRYING, model.STEP_WAITING):
                node = self._step_nodes.get(key)
                if node is None:
                    continue
                node.set_label(self._label(step, now))
                if not node.is_expanded:
                    continue
                for child in node.children:
                    if child.data == ("countdown", key):
                        text = steps_view.countdown_text(step, now)
                        if text is not None:
                            child.set_label(text)

    # -- selection -------------------------------------------------------------------------

    def selected_step(self) -> model.Step | None:
        """The step under the cursor, or the step a line under the cursor belongs to."""
        node = self.cursor_node
        while node is not None and node is not self.root:
            if node.data is not None and node.data[0] == "step":
                return self.steps.get(node.data[1])
            node = node.parent
        return None

    def select_ref(self, ref: tuple[str, str]) -> None:
        if ref[0] == "step" and ref[1] in self._step_nodes:
            self.move_cursor(self._step_nodes[ref[1]])
