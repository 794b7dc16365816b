"""`Retry`: the back-off a failed attempt waits, and the policies refused at definition."""

from __future__ import annotations

import pytest

from sylphrun import Retry
from sylphrun.define import NO_RETRY


def test_delays_grow_by_the_factor_and_stop_at_max_delay():
    policy = Retry(max_attempts=10, min_delay=1.0, max_delay=10.0, factor=2.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_spreads_each_delay_by_its_fraction_both_ways():
    policy = Retry(min_delay=10.0, max_delay=100.0, factor=3.0, jitter=0.1)
    assert policy.delay(2, rand=lambda: 0.0) == pytest.approx(27.0)
    assert policy.delay(2, rand=lambda: 0.5) == pytest.approx(30.0)
    assert policy.delay(2, rand=lambda: 1.0) == pytest.approx(33.0)


def test_a_delay_is_never_negative():
    assert Retry(min_delay=0.0, max_delay=0.0, jitter=0.5).delay(1, rand=lambda: 0.0) == 0.0
    assert Retry(min_delay=1.0, jitter=2.0).delay(1, rand=lambda: 0.0) == 0.0


def test_the_default_is_to_run_once_without_waiting():
    assert NO_RETRY.max_attempts == 1
    assert NO_RETRY.delay(1) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"min_delay": -1.0},
        {"min_delay": 5.0, "max_delay": 1.0},
    ],
)
def test_impossible_policies_are_refused(kwargs):
    with pytest.raises(ValueError, match="Retry"):
        Retry(**kwargs)


def test_to_json_names_every_field():
    assert Retry(max_attempts=4, min_delay=0.5).to_json() == {
        "max_attempts": 4,
        "min_delay": 0.5,
        "max_delay": 60.0,
        "factor": 2.0,
        "jitter": 0.1,
    }
