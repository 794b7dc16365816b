"""`load_config`: what a sylphrun.toml may say, and the one-line error for what it may not."""

from __future__ import annotations

from pathlib import Path

import pytest

from sylphrun.codec import DEFAULT_MAX_OUTPUT
from sylphrun.config import load_config
from sylphrun.errors import ConfigError


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "sylphrun.toml").write_text(body)
    return tmp_path


def test_defaults_and_a_relative_journal_under_the_project(tmp_path):
    cfg = load_config(write(tmp_path, 'tasks = ["tasks"]\njournal = "data/j.db"\n'))
    assert cfg.tasks == ["tasks"]
    assert cfg.journal == tmp_path.resolve() / "data/j.db"
    assert (cfg.durability, cfg.slots, cfg.shutdown_grace) == ("normal", 32, 30.0)
    assert cfg.max_step_output == DEFAULT_MAX_OUTPUT


def test_pyproject_tool_table_is_read(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.sylphrun]\ntasks = ["jobs"]\nworkers = 3\n')
    cfg = load_config(tmp_path)
    assert (cfg.tasks, cfg.workers) == (["jobs"], 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"16MB"', 16 * 1024**2),
        ('"512KB"', 512 * 1024),
        ("4096", 4096),
        ('"256mb"', 256 * 1024**2),
    ],
)
def test_max_step_output_takes_sizes_or_bytes(tmp_path, value, expected):
    assert load_config(write(tmp_path, f"max_step_output = {value}\n")).max_step_output == expected


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('tasks = "tasks"\n', "'tasks' must be a list"),
        ("tasks = [1]\n", "'tasks' must be a list"),
        ("colour = 1\n", "unknown key 'colour'"),
        ('workers = "2"\n', "'workers' must be"),
        ("workers = true\n", "'workers' must be"),
        ("workers = -1\n", "'workers' must be 0"),
        ("slots = 0\n", "'slots' must be at least 1"),
        ('durability = "extra"\n', "'durability' must be"),
        ('shutdown_grace = "30"\n', "'shutdown_grace' must be a number"),
        ("shutdown_grace = -1\n", "between 0 and 86400"),
        ('max_step_output = "lots"\n', "must be a size like"),
        ("max_step_output = 10\n", "between 1KB and 512MB"),
        ('max_step_output = "1TB"\n', "must be a size like"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_file(tmp_path, body, says):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body))
    message = str(caught.value)
    assert says in message and "sylphrun.toml" in message and "\n" not in message


def test_a_missing_config_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="sylphrun init"):
        load_config(tmp_path)
    assert load_config(tmp_path, required=False).source is None
