"""The interface itself: every backend implements all of `Journal`, with its signatures,
and `open_journal` is the one way in."""

from __future__ import annotations

import inspect

import pytest

from sylphrun.errors import JournalError
from sylphrun.journal import Journal, JournalReader, SqliteJournal, open_journal
from sylphrun.journal.interface import Journal as JournalProtocol

MEMBERS = sorted(
    name for name, _ in inspect.getmembers(JournalProtocol) if not name.startswith("_")
)


def test_the_protocol_names_the_operations_in_domain_terms():
    # Enough to keep the list honest if a method disappears by accident.
    assert {
        "claim_runs",
        "record_step_start",
        "suspend_run",
        "cancel_run",
        "events_since",
        "heartbeat",
        "wake_run",
        "replay_run",
        "change_token",
    } <= set(MEMBERS)
    assert len(MEMBERS) >= 60


def test_each_backend_satisfies_the_protocol(journal):
    assert isinstance(journal, Journal) and isinstance(journal, JournalReader)
    for name in MEMBERS:
        declared = getattr(JournalProtocol, name)
        implemented = getattr(type(journal), name)
        if isinstance(declared, property):
            assert isinstance(implemented, property), name
            continue
        want = inspect.signature(declared)
        got = inspect.signature(implemented)
        # Same names, kinds and defaults: a caller written against the protocol (keyword
        # arguments included) works unchanged on every backend.
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == [
            (p.name, p.kind, p.default) for p in want.parameters.values()
        ], name
        assert got.return_annotation == want.return_annotation, name


def test_no_sqlite_type_or_sql_in_the_protocol():
    from sylphrun.journal import (
        interface,
        interface_features,
        interface_reads,
        interface_workers,
    )

    source = "".join(
        inspect.getsource(m)
        for m in (interface, interface_reads, interface_workers, interface_features)
    )
    assert "sqlite3" not in source and "Connection" not in source
    for word in ("SELECT ", "UPDATE ", "INSERT ", " WHERE "):
        assert word not in source


def test_a_path_opens_a_sqlite_journal_at_the_current_schema(tmp_path):
    j = open_journal(tmp_path / "sub" / "journal.db")
    try:
        assert isinstance(j, SqliteJournal)
        assert j.location == str(tmp_path / "sub" / "journal.db")
        assert j.check_integrity() == "ok"
        assert not j.replaced()
    finally:
        j.close()


def test_create_false_refuses_a_missing_journal(tmp_path):
    with pytest.raises(JournalError, match="no journal at"):
        open_journal(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_nothing_outside_the_journal_package_imports_sqlite3():
    import ast
    from pathlib import Path

    import sylphrun

    root = Path(sylphrun.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.is_relative_to(root / "journal"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "sqlite3" or n.startswith("sqlite3.") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
