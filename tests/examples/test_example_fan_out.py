"""The seed's fan-out (`batch-process`): children run in process too."""


def test_batch_counts_failed_children(sylph):
    result = sylph.run("batch-process", {"count": 8, "fail_items": [3, 7]})

    assert result.output == {"total": 8, "successful": 6, "failed": 2}
    children = sylph.children(result.run_id)
    assert len(children) == 8
    assert sorted(c.payload["item_id"] for c in children if c.status == "failed") == [3, 7]
    assert sylph.calls("process") == 8


def test_a_crash_in_a_child_does_not_create_children_twice(sylph):
    result = sylph.run("batch-process", {"count": 3}, crash_at=("after-effect", "process"))

    assert result.output == {"total": 3, "successful": 3, "failed": 0}
    assert len(sylph.children(result.run_id)) == 3
    assert sylph.calls("process") == 4  # the crashed child's step ran again
