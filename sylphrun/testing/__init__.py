"""Testing users' tasks with pytest: the `sylph` fixture (registered as a `pytest11` entry
point, so installing sylphrun is enough).

    def test_saga_refunds_when_shipping_fails(sylph):
        result = sylph.run("order-saga", {"fail_at": "create-shipment"})
        assert not result.ok
        assert [s.name for s in sylph.compensations(result.run_id)] == [
            "refund-payment", "release-inventory"]

`plugin` is imported by every pytest run in an environment where sylphrun is installed:
it imports nothing heavy. The harness (`harness.Sylph`: an in-process executor over a
temporary journal, with a virtual clock, mocks and crash injection) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sylphrun.testing.harness import Sylph, SylphHandle

__all__ = ["Sylph", "SylphHandle"]


def __getattr__(name: str) -> Any:  # PEP 562: the harness loads on first use
    if name in __all__:
        from sylphrun.testing import harness

        return getattr(harness, name)
    raise AttributeError(name)
