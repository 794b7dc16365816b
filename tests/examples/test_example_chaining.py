"""The seed's step chaining (`process-order`), tested as a user would, with the `sylph`
fixture that installing sylphrun provides."""


def test_order_goes_through_every_step(sylph):
    result = sylph.run("process-order")

    assert result.ok
    assert [s.name for s in sylph.steps(result.run_id)] == [
        "validate",
        "reserve-inventory",
        "process-payment",
        "create-shipment",
        "send-confirmation",
    ]
    assert result.output["payment_id"].startswith("pay_")


def test_a_retried_order_charges_once(sylph):
    # The payment times out on attempt 1; the run-level retry (its delay skipped on the
    # virtual clock) replays validate and reserve-inventory from the journal.
    result = sylph.run("process-order", {"flaky": "process-payment"})

    assert result.ok
    assert sylph.get_run(result.run_id).attempt == 2
    assert sylph.calls("validate") == 1
    assert sylph.calls("process-payment") == 2  # the failed try, then the charge


def test_an_invalid_order_fails_at_once(sylph):
    result = sylph.run("process-order", {"items": []})

    sylph.assert_failed(result, match="has no items")
    assert sylph.get_run(result.run_id).attempt == 1  # NonRetriableError: no retry
