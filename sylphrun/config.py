"""Project configuration: `sylphrun.toml`, or `[tool.sylphrun]` in `pyproject.toml`.

Keys: `tasks` (modules or folders to discover), `journal` (default
`.sylphrun/journal.db`), `workers` (default: the CPU count), `durability` ("normal" or
"full"), `slots` (runs one worker executes at once), `max_step_output` (the largest step
result, as JSON: bytes, or "16MB"). An unknown key or a wrong type is an error that names
the key and the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sylphrun.codec import DEFAULT_MAX_OUTPUT
from sylphrun.errors import ConfigError

DEFAULT_JOURNAL = ".sylphrun/journal.db"
KEYS: dict[str, type | tuple[type, ...]] = {
    "tasks": list,
    "journal": str,
    "workers": int,
    "durability": str,
    "slots": int,
    "shutdown_grace": (int, float),
    "max_step_output": (int, str),
}
# `max_step_output` bounds: below 1 KB no real result fits; SQLite stores at most 1 GB in
# one value, and a row holds more than the output.
MIN_STEP_OUTPUT = 1024
MAX_STEP_OUTPUT = 512 * 1024 * 1024
_SIZE = re.compile(r"\s*(\d+)\s*(B|KB|MB|GB)?\s*", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


@dataclass(frozen=True)
class Config:
    project_dir: Path
    source: Path | None
    tasks: list[str] = field(default_factory=list)
    # A path, or a PostgreSQL URL kept as a string (`is_server_journal`).
    journal: Path | str = Path(DEFAULT_JOURNAL)
    workers: int = 0
    durability: str = "normal"
    # Runs one worker process executes at once (they interleave on its event loop).
    slots: int = 32
    # Seconds a stopping worker (a reload, Ctrl-C, SIGTERM) lets its in-flight steps run
    # before it abandons them: an abandoned step runs again, with the same idempotency key.
    shutdown_grace: float = 30.0
    # The largest step result (or task output) as JSON, in bytes: larger fails the step.
    max_step_output: int = DEFAULT_MAX_OUTPUT

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 2


def find_config_file(project_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The config table of a project folder, and the file it came from, or None."""
    own = project_dir / "sylphrun.toml"
    if own.is_file():
        data = _read_toml(own)
        return own, data.get("tool", {}).get("sylphrun", data)
    pyproject = project_dir / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject)
        table = data.get("tool", {}).get("sylphrun")
        if table is not None:
            return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def load_config(
    project_dir: str | os.PathLike[str] | None = None, *, required: bool = True
) -> Config:
    """Read the config of `project_dir` (default: the current folder)."""
    root = Path(project_dir or os.getcwd()).resolve()
    if not root.is_dir():
        raise ConfigError(f"project folder {root} does not exist")
    found = find_config_file(root)
    if found is None:
        if required:
            raise ConfigError(
                f"no sylphrun config in {root}: add sylphrun.toml (or [tool.sylphrun] in "
                "pyproject.toml), or run `sylphrun init`"
            )
        return Config(project_dir=root, source=None, journal=root / DEFAULT_JOURNAL)
    source, table = found
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: the sylphrun config must be a table")
    _check_types(table, source)
    tasks = table.get("tasks", [])
    durability = table.get("durability", "normal")
    if durability not in ("normal", "full"):
        raise ConfigError(
            f'{source}: \'durability\' must be "normal" or "full", not {durability!r}'
        )
    workers = table.get("workers", 0)
    if workers < 0:
        raise ConfigError(f"{source}: 'workers' must be 0 (one per CPU) or more")
    slots = table.get("slots", 32)
    if slots < 1:
        raise ConfigError(f"{source}: 'slots' must be at least 1")
    shutdown_grace = float(table.get("shutdown_grace", 30.0))
    if not 0 <= shutdown_grace <= 86_400:
        raise ConfigError(f"{source}: 'shutdown_grace' must be seconds between 0 and 86400")
    max_output = _step_output_limit(table.get("max_step_output", DEFAULT_MAX_OUTPUT), source)
    journal = journal_location(table.get("journal", DEFAULT_JOURNAL), root)
    return Config(
        project_dir=root,
        source=source,
        tasks=list(tasks),
        journal=journal,
        workers=workers,
        durability=durability,
        slots=slots,
        shutdown_grace=shutdown_grace,
        max_step_output=max_output,
    )


def _check_types(table: dict[str, Any], source: Path) -> None:
    """Refuse an unknown key or a value of the wrong type, naming the file."""
    for key, value in table.items():
        if key not in KEYS:
            raise ConfigError(f"{source}: unknown key {key!r} (known: {', '.join(KEYS)})")
        expected = KEYS[key]
        if key == "tasks":
            # A string is refused, not read as a list of one: the README promises an
            # error for a wrong type, and `tasks = "a, b"` would silently find nothing.
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"{source}: 'tasks' must be a list of module names or folders, like "
                    f'tasks = ["tasks"], not {type(value).__name__}'
                )
        elif key == "shutdown_grace":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(
                    f"{source}: 'shutdown_grace' must be a number of seconds, "
                    f"not {type(value).__name__}"
                )
        elif not isinstance(value, expected) or isinstance(value, bool):
            names = (
                " or ".join(t.__name__ for t in expected)
                if isinstance(expected, tuple)
                else expected.__name__
            )
            raise ConfigError(f"{source}: {key!r} must be {names}, not {type(value).__name__}")


def _step_output_limit(value: int | str, source: Path) -> int:
    """`max_step_output` in bytes: an int, or a string like "16MB" (KB, MB, GB are
    powers of 1,024)."""
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ConfigError(
                f'{source}: \'max_step_output\' must be a size like "16MB", "512KB" or a '
                f"number of bytes, not {value!r}"
            )
        value = int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]
    if not MIN_STEP_OUTPUT <= value <= MAX_STEP_OUTPUT:
        raise ConfigError(
            f"{source}: 'max_step_output' must be between 1KB and 512MB, not {value:,} bytes"
        )
    return value


SERVER_SCHEMES = ("postgresql://", "postgres://")


def is_server_journal(journal: object) -> bool:
    """Is this journal setting a server's URL (PostgreSQL), not a file?"""
    return isinstance(journal, str) and journal.startswith(SERVER_SCHEMES)


def journal_location(value: str, root: Path) -> Path | str:
    """A `journal` setting: a PostgreSQL URL as given (a Path would fold its `//`), else a
    path, relative to the project folder."""
    if is_server_journal(value):
        return value
    journal = Path(value).expanduser()
    return journal if journal.is_absolute() else root / journal


def journal_label(journal: Path | str) -> str:
    """The journal as messages and the dashboard name it (a URL without its password)."""
    if is_server_journal(journal):
        from sylphrun.journal import redact_url as redact

        return redact(str(journal))
    return str(journal)


def journal_side_file(config: Config, suffix: str) -> Path:
    """A local file kept beside the journal (`dev`'s lock and log): next to a journal file;
    for a server's journal, in the project's `.sylphrun/`, named after the URL (never a
    path made of the URL)."""
    if not is_server_journal(config.journal):
        return Path(str(config.journal) + suffix)
    digest = hashlib.sha1(journal_label(config.journal).encode()).hexdigest()[:12]
    return config.project_dir / ".sylphrun" / f"postgres-{digest}{suffix}"


def journal_path_for_scripts() -> Path | str:
    """The journal a script outside any run triggers into: $SYLPHRUN_JOURNAL, else the
    config of the current folder, else the default path under it."""
    env = os.environ.get("SYLPHRUN_JOURNAL")
    if env:
        return env if is_server_journal(env) else Path(env).expanduser().resolve()
    return load_config(required=False).journal


# A command's `--journal` (the CLI's), passed down to the processes it starts: a dev
# session's import checks and the config it reloads on an edit keep the journal given,
# not the file's. Private to sylphrun (`SYLPHRUN_JOURNAL` is the scripts' own setting).
JOURNAL_OPTION_ENV = "SYLPHRUN_JOURNAL_OPTION"


def with_journal_option(config: Config) -> Config:
    """`config` with the journal its command's `--journal` gave, if any."""
    value = os.environ.get(JOURNAL_OPTION_ENV)
    if not value:
        return config
    from dataclasses import replace

    return replace(config, journal=journal_location(value, config.project_dir))
