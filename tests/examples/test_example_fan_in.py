"""The seed's fan-in with partial failures (`batch-report`)."""


def test_a_partial_failure_is_reported_not_raised(sylph):
    result = sylph.run("batch-report", {"items": [1, 2, 3, 4], "fail_items": [2]})

    assert result.ok
    report = result.output
    assert (report["total"], report["successful"], report["failed"]) == (4, 3, 1)
    failed = [d for d in report["details"] if not d["ok"]]
    assert [d["item_id"] for d in failed] == [2]
    assert "corrupt" in failed[0]["error"]


def test_too_many_failures_fail_the_report(sylph):
    result = sylph.run("batch-report", {"count": 5, "fail_items": [1, 2], "max_failure_rate": 0.2})

    sylph.assert_failed(result, match="2 of 5 items failed")
