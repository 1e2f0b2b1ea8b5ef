from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import (
    Ledger,
    LedgerError,
)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "state" / "ledger.json")


def test_record_persists_and_first_original_wins(path):
    with Ledger(path) as ledger:
        assert ledger.record("s1", kind="knob", instance=None, file="current_tracer", original="nop")
        assert not ledger.record("s1", kind="knob", instance=None, file="current_tracer", original="function")
    data = json.loads(open(path).read())
    assert [e["original"] for e in data["entries"]] == ["nop"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_opposite_entries_cancel(path):
    with Ledger(path) as ledger:
        ledger.record("s", kind="list_add", instance=None, file="set_ftrace_filter", value="f")
        ledger.record("s", kind="list_remove", instance=None, file="set_ftrace_filter", value="f")
        assert ledger.entries == []


def test_instance_ownership_and_contents(path):
    with Ledger(path) as ledger:
        ledger.record("s", kind="instance", name="a")
        ledger.record("s", kind="event", instance="a", event="sched/x", original="0")
        ledger.record("s", kind="event", instance=None, event="sched/x", original="0")
        assert ledger.owns_instance("a") and not ledger.owns_instance("b")
        ledger.forget_instance_contents("a")
        assert [(e["kind"], e.get("instance")) for e in ledger.entries] == [("instance", None), ("event", None)]


def test_sessions(path):
    with Ledger(path) as ledger:
        ledger.record("s1", kind="instance", name="a")
        ledger.record("s2", kind="instance", name="b")
        assert [e["name"] for e in ledger.session_entries("s2")] == ["b"]
        assert len(ledger.session_entries(None)) == 2


def test_checkpoint_restore(path):
    with Ledger(path) as ledger:
        ledger.record("s", kind="instance", name="a")
        checkpoint = ledger.checkpoint()
        ledger.record("s", kind="instance", name="b")
        ledger.restore(checkpoint)
    with Ledger(path) as ledger:
        assert [e["name"] for e in ledger.entries] == ["a"]


def test_dry_run_does_not_write(path):
    with Ledger(path, dry_run=True) as ledger:
        ledger.record("s", kind="instance", name="a")
    assert not os.path.exists(path)


def test_not_a_ledger(tmp_path):
    bad = tmp_path / "ledger.json"
    bad.write_text('{"something": "else"}')
    with pytest.raises(LedgerError, match="not a tracefleet ledger"), Ledger(str(bad)):
        pass
    bad.write_text("{broken")
    with pytest.raises(LedgerError, match="cannot read the ledger"), Ledger(str(bad)):
        pass


def test_unknown_kind(path):
    with Ledger(path) as ledger, pytest.raises(LedgerError):
        ledger.record("s", kind="bogus")


def _add_many(path, prefix, count):
    for index in range(count):
        with Ledger(path) as ledger:
            ledger.record(prefix, kind="instance", name="%s%d" % (prefix, index))


def test_concurrent_writers_lose_nothing(path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_many, args=(path, prefix, 25)) for prefix in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with Ledger(path) as ledger:
        assert len(ledger.entries) == 50
    assert [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".ledger.")] == []
