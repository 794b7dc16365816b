"""Example tasks: a Python port of the Tasks SDK seed's four workflows.

Each module shows one pattern of the seed (`seed-tasks-sdk.txt`), and every task but
`sync-customer` (flow control, beyond the seed: it needs a `customer_id`) runs with the
payload `{}`. Failures are chosen from the payload, so each pattern can be shown on
demand from the CLI or the dashboard:

- `process-order`: step chaining + run retries. Try `{"flaky": "process-payment"}`.
- `process-item`: the child of the fan-out tasks. Try `{"item_id": 3, "fail": true}`.
- `batch-process`: fan-out, fan-in, stats. Try `{"count": 20, "fail_items": [3, 7]}`.
- `batch-report`: fan-in tolerating failures. Try `{"fail_items": [2]}`.
- `order-saga`: saga with try/except undo. Try `{"fail_at": "create-shipment"}`.
- `order-saga-registered`: saga with `compensate=`. Try `{"fail_at": "create-shipment"}`.
- `nightly-report`: a schedule (03:00 Europe/Paris). Try `{"scheduled_at": "2026-11-29T02:00:00Z"}`.
- `sync-customer`: one run at a time per customer. Try `{"customer_id": "acme"}`.

    sylphrun trigger order-saga --payload '{"fail_at": "create-shipment"}' --wait

`services.py` holds the simulated side effects (and the payload-driven failures); set
`SYLPHRUN_EXAMPLE_LEDGER` to a file path to get one line per side effect written there.
"""
