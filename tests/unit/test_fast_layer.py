"""The fast layer's own promise: a test not marked `slow` cannot start a process (the guard
in tests/conftest.py), so `pytest -m "not slow"` runs in process only."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest


# Module-level helpers: the classifier reads only a test's own body, so a test calling
# these is not marked `slow` by what it says, which is the case the guard is for.
def run_python():
    return subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True)


def start_spawned():
    multiprocessing.get_context("spawn").Process(target=print).start()


def test_a_fast_test_that_starts_a_process_fails_and_says_to_mark_it(request):
    assert request.node.get_closest_marker("slow") is None
    with pytest.raises(AssertionError, match=r"starts a process: mark it @pytest.mark.slow"):
        run_python()
    with pytest.raises(AssertionError, match="mark it"):
        start_spawned()
    with pytest.raises(AssertionError, match="mark it"):
        os.fork()


@pytest.mark.slow
def test_a_slow_test_may_start_one():
    assert run_python().stdout.strip() == "42"
