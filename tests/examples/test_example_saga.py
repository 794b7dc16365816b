"""The seed's saga (`order-saga`): compensation, and a worker crash mid-saga."""


def test_a_failed_shipment_is_compensated_in_reverse_order(sylph):
    result = sylph.run("order-saga", {"fail_at": "create-shipment"})

    assert not result.ok
    assert [s.name for s in sylph.compensations(result.run_id)] == [
        "refund-payment",
        "release-inventory",
    ]


def test_a_crash_after_charge_payment_charges_once(sylph):
    # The worker dies right after the charge is journaled; recovery replays it.
    result = sylph.run("order-saga", crash_at=("after-commit", "charge-payment"))

    assert result.ok
    assert sylph.calls("charge-payment") == 1
    assert sylph.compensations(result.run_id) == []


def test_a_crash_before_the_charge_is_journaled_repeats_it(sylph):
    # Died after the payment call returned, before its result was journaled: the step
    # runs again (with the same ctx.step.idempotency_key for the payment provider).
    result = sylph.run("order-saga", crash_at=("after-effect", "charge-payment"))

    assert result.ok
    assert sylph.calls("charge-payment") == 2
    charge = next(s for s in sylph.steps(result.run_id) if s.name == "charge-payment")
    assert charge.attempts == 2


def test_a_carrier_outage_mocked(sylph):
    sylph.mock_step("create-shipment", side_effect=ConnectionError("carrier down"))

    result = sylph.run("order-saga")

    sylph.assert_failed(result, match="carrier down")
    assert [s.name for s in sylph.compensations(result.run_id)] == [
        "refund-payment",
        "release-inventory",
    ]
