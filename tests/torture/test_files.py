"""Files: the journal and its `-wal`/`-shm` are 0600 and `.sylphrun/` is 0700 under a
permissive umask, when they are created and when they are opened again; and nothing in
sylphrun can turn journal data into code (no pickle, eval, exec, or import by a name read
from the journal)."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path

import sylphrun

TASKS = """
from sylphrun import task

@task(id="hello")
async def hello(payload, ctx):
    return await ctx.step.run("greet", lambda: "hi")
"""


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sylphrun", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o022),
    )


def _modes(journal: Path) -> dict[str, int]:
    found = {".sylphrun/": stat.S_IMODE(journal.parent.stat().st_mode)}
    for suffix in ("", "-wal", "-shm", ".lock"):
        path = Path(str(journal) + suffix)
        found[path.name] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_journal_files_are_private_on_create_and_on_reopen(tmp_path):
    root = tmp_path / "proj"
    (root / "tasks").mkdir(parents=True)
    (root / "sylphrun.toml").write_text('tasks = ["tasks"]\n')
    (root / "tasks" / "main.py").write_text(TASKS)
    journal = root / ".sylphrun" / "journal.db"
    private = {
        ".sylphrun/": 0o700,
        "journal.db": 0o600,
        "journal.db-wal": 0o600,
        "journal.db-shm": 0o600,
        "journal.db.lock": 0o600,
    }

    assert _cli(root, "trigger", "hello").returncode == 0
    # The CLI's last connection checkpointed and removed -wal/-shm; a reader brings them
    # back while a second connection holds the journal open.
    from sylphrun.journal import Connection

    held = Connection(journal)
    try:
        assert _cli(root, "runs").returncode == 0
        assert _modes(journal) == private
        # Loosened by hand (a restore from backup, a careless chmod): made private again on
        # the next open.
        os.chmod(journal.parent, 0o755)
        for suffix in ("", "-wal", "-shm", ".lock"):
            os.chmod(str(journal) + suffix, 0o644)
        assert _cli(root, "runs").returncode == 0
        assert _modes(journal) == private
    finally:
        held.close()


BANNED_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "yaml",
}
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
# Importing by name is how task modules are discovered (names from the project's config,
# never from the journal), and how `sylph.register("pkg.tasks")` adds a module (a name in
# the user's own test): those files alone may do it.
IMPORTERS = {"discover.py", "harness.py"}


def test_no_pickle_eval_exec_or_import_of_journal_data_in_the_source():
    package = Path(sylphrun.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(package)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            found += [f"{where}:{node.lineno} imports {n}" for n in names if n in BANNED_MODULES]
            if isinstance(node, ast.Call):
                fn = node.func
                name = (
                    fn.id
                    if isinstance(fn, ast.Name)
                    else fn.attr
                    if isinstance(fn, ast.Attribute)
                    else ""
                )
                called = ast.unparse(fn)
                # The builtins, bare or through `builtins.` (not `re.compile`).
                if name in BANNED_CALLS and called in (name, f"builtins.{name}"):
                    found.append(f"{where}:{node.lineno} calls {called}()")
                if (name in ("import_module", "exec_module") or called == "importlib.reload") and (
                    path.name not in IMPORTERS
                ):
                    found.append(f"{where}:{node.lineno} imports by name ({called})")
                if (
                    name == "loads"
                    and isinstance(fn, ast.Attribute)
                    and getattr(fn.value, "id", "") not in ("json", "codec")
                ):
                    found.append(f"{where}:{node.lineno} calls {ast.unparse(fn)}()")
    assert found == []
