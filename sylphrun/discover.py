"""Finding and importing a project's task modules.

`tasks` in the config lists dotted module names, `.py` files, or folders; a folder (a
package or a plain folder) is walked and each module in it imported. Importing is what
registers the tasks (`task(...)` runs at import time).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from sylphrun.config import Config
from sylphrun.define import Task, clear_registry, registered_tasks
from sylphrun.errors import DiscoveryError, SylphrunError
from sylphrun.model import TaskRecord

if TYPE_CHECKING:
    from sylphrun.journal import Journal

_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".sylphrun", "tests"}


def discover(config: Config) -> dict[str, Task]:
    """Import every task module of the project and return its tasks by id."""
    clear_registry()
    root = str(config.project_dir)
    if root not in sys.path:
        sys.path.insert(0, root)
    for entry in config.tasks:
        for module_name, path in _modules_of(config.project_dir, entry):
            _import(module_name, path)
    return registered_tasks()


def task_records(tasks: dict[str, Task]) -> list[TaskRecord]:
    """The tasks as the journal's registry keeps them (no code, just what to show and check)."""
    return [
        TaskRecord(
            t.id,
            {
                "retry": t.retry.to_json(),
                "concurrency": t.concurrency,
                "timeout": t.timeout,
                "async": t.is_async,
                **t.flow.to_json(),
                **_event_options(t),
                **_schedule_option(t),
            },
            t.source_file,
            t.source_line,
            t.source_fingerprint(),
        )
        for t in tasks.values()
    ]


def _event_options(t: Task) -> dict:
    """`on_event` and `cancel_on`, when set: a sender acts on them from the journal alone."""
    options: dict = {}
    if getattr(t, "on_event", None):
        options["on_event"] = list(t.on_event)
    if getattr(t, "cancel_on", None):
        options["cancel_on"] = [rule.to_json() for rule in t.cancel_on]
    return options


def _schedule_option(t: Task) -> dict:
    """`schedule` in the registry, only for a scheduled task: the supervisors fire ticks
    and `sylphrun schedules` lists them from there, without importing the code."""
    schedule = getattr(t, "schedule", None)
    return {} if schedule is None else {"schedule": schedule.to_json()}


def register_tasks(journal: Journal, config: Config, tasks: dict[str, Task], *, by: str) -> None:
    """Record the tasks just imported in the journal's registry, which `sylphrun trigger`
    and `sylphrun tasks` read instead of importing the project themselves. Called by each
    worker as it starts and by a reload's import check once it passed."""
    journal.register_tasks(
        task_records(tasks), registered_by=by, project_dir=str(config.project_dir), now=time.time()
    )


def task_sources(config: Config) -> list[Path]:
    """The files and folders to watch for changes."""
    out = []
    for entry in config.tasks:
        candidate = config.project_dir / entry
        if candidate.exists():
            out.append(candidate)
        elif (config.project_dir / (entry.replace(".", "/") + ".py")).exists():
            out.append(config.project_dir / (entry.replace(".", "/") + ".py"))
        elif (config.project_dir / entry.replace(".", "/")).is_dir():
            out.append(config.project_dir / entry.replace(".", "/"))
    return out


def _modules_of(root: Path, entry: str) -> list[tuple[str, Path | None]]:
    candidate = (root / entry).resolve()
    if candidate.is_dir():
        return [(_module_name(root, f), f) for f in _walk(candidate)]
    if candidate.suffix == ".py" and candidate.is_file():
        return [(_module_name(root, candidate), candidate)]
    dotted_dir = root / entry.replace(".", "/")
    if dotted_dir.is_dir():
        return [(_module_name(root, f), f) for f in _walk(dotted_dir)]
    if not entry.replace(".", "").replace("_", "").isalnum():
        raise DiscoveryError(f"tasks entry {entry!r}: no such file or folder in {root}")
    return [(entry, None)]


def _walk(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if path.name.startswith(("test_", ".")) or path.name == "conftest.py":
            continue
        files.append(path)
    return files


def _module_name(root: Path, path: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return path.stem
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import(module_name: str, path: Path | None) -> None:
    try:
        if module_name in sys.modules:
            importlib.reload(sys.modules[module_name])
        elif path is not None and not all(p.isidentifier() for p in module_name.split(".")):
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(module_name)
    except DiscoveryError:
        raise
    except ModuleNotFoundError as exc:
        if path is None and exc.name == module_name.split(".")[0]:
            raise DiscoveryError(
                f"tasks entry {module_name!r}: no module, file or folder of that name; "
                "fix `tasks` in the config"
            ) from None
        raise _import_error(module_name, path, exc) from None
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything at import
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_error(module_name, path, exc) from None


def _import_error(module_name: str, path: Path | None, exc: BaseException) -> DiscoveryError:
    """One line naming the user's file and line, with the user's traceback attached."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename and "/sylphrun/" not in f.filename]
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
        what = f"SyntaxError: {exc.msg}"
    else:
        last = user[-1] if user else None
        where = f"{last.filename}:{last.lineno}" if last else str(path or module_name)
        what = f"{type(exc).__name__}: {exc}"
    err = DiscoveryError(f"cannot import task module {module_name} ({where}): {what}")
    if isinstance(exc, SylphrunError):
        # A definition sylphrun refused (a bad schedule): its one line names the task and
        # the fix, and `where` the line; `dev` would print the frames above it as noise.
        return err
    err.user_traceback = "".join(  # type: ignore[attr-defined]
        traceback.format_list(user) + traceback.format_exception_only(type(exc), exc)
    )
    return err
