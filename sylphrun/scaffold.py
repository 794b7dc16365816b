"""`sylphrun init`: a config and one example task, so `sylphrun dev` has something to run."""

from __future__ import annotations

from pathlib import Path

import tomli_w

from sylphrun.config import find_config_file
from sylphrun.errors import SylphrunError

EXAMPLE_TASK = '''"""An example durable task: steps, a child run and a retry.

Try it:  sylphrun trigger welcome --payload '{"name": "Ada"}' --wait
Make the flaky step fail for good:  --payload '{"fail": true}'
"""

import random
import zlib

from sylphrun import Retry, task


@task(id="send-email")
async def send_email(payload, ctx):
    """A child task: each email is a run of its own, retried and shown on its own."""
    to = payload.get("to", "someone@example.com")
    ctx.log.info("sending to %s", to)
    message_id = f"msg-{zlib.crc32(to.encode()) % 10_000}"
    return await ctx.step.run("send", lambda: {"sent_to": to, "message_id": message_id})


def flaky_lookup(name: str, attempt: int, fail: bool) -> dict:
    # Fails on the first attempt to show a retry; completed steps are not run again.
    if fail or (attempt == 1 and random.random() < 0.5):
        raise ConnectionError("the profile service timed out")
    return {"name": name, "plan": "pro"}


@task(id="welcome", retry=Retry(max_attempts=3, min_delay=0.5))
async def welcome(payload, ctx):
    name = payload.get("name", "friend")
    account = await ctx.step.run(
        "create-account", lambda: {"id": f"acct-{name.lower()}", "name": name}
    )
    fail = payload.get("fail", False)
    profile = await ctx.step.run("lookup-profile", flaky_lookup, name, ctx.attempt, fail)
    email = await send_email.trigger_and_wait({"to": f"{name.lower()}@example.com"})
    return {"account": account["id"], "plan": profile["plan"], "email": email.unwrap()}
'''


def _refuse_pyproject_config(folder: Path) -> None:
    """A sylphrun.toml is read before `[tool.sylphrun]` in pyproject.toml: writing one into
    a project configured there would silently replace its config. Even with --force,
    which is about overwriting our own files."""
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return
    found = find_config_file(folder)
    if found is not None and found[0] == pyproject:
        raise SylphrunError(
            f"{pyproject} already configures sylphrun ([tool.sylphrun]); a sylphrun.toml "
            "would take its place: add your tasks there instead"
        )


def write_project(folder: Path, *, force: bool = False) -> list[Path]:
    """Write sylphrun.toml and tasks/example.py into `folder`. Refuses to overwrite."""
    _refuse_pyproject_config(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "sylphrun.toml"
    task_path = folder / "tasks" / "example.py"
    existing = [p for p in (config_path, task_path) if p.exists()]
    if existing and not force:
        names = ", ".join(str(p.relative_to(folder)) for p in existing)
        raise SylphrunError(f"{names} already exist(s) in {folder}; use --force to overwrite")
    config = {"tasks": ["tasks"], "journal": ".sylphrun/journal.db", "durability": "normal"}
    config_path.write_text(
        "# sylphrun project config: https://github.com/sylphrun/sylphrun#configuration\n"
        + tomli_w.dumps(config)
    )
    task_path.parent.mkdir(exist_ok=True)
    task_path.write_text(EXAMPLE_TASK)
    gitignore = folder / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".sylphrun/\n")
    return [config_path, task_path]
