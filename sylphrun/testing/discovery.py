"""The project's tasks for the harness: the modules its config lists (`tasks`), imported
once, without the worker's discovery re-import (a test module holding a task object
must keep the object the harness runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from sylphrun.codec import DEFAULT_MAX_OUTPUT
from sylphrun.config import load_config
from sylphrun.define import Task


def project_tasks(root: Path) -> tuple[dict[str, Task], int]:
    """(tasks by id, max step output) of the project whose config is in `root`; no config:
    no tasks (a test then registers its own with `sylph.register`)."""
    from sylphrun import discover
    from sylphrun.testing.harness import tasks_in_module

    config = load_config(root, required=False)
    if config.source is None:
        return {}, DEFAULT_MAX_OUTPUT
    project = str(config.project_dir)
    if project not in sys.path:
        sys.path.insert(0, project)
    tasks: dict[str, Task] = {}
    for entry in config.tasks:
        for name, path in discover._modules_of(config.project_dir, entry):
            if name not in sys.modules:
                discover._import(name, path)
            tasks.update(tasks_in_module(sys.modules[name]))
    return tasks, config.max_step_output
