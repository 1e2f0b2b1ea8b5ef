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


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(path, tmp_path):
    os.makedirs(os.path.dirname(path))
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(str(victim), path + ".lock")
    with pytest.raises(LedgerError, match="lock file .* is a symlink; refusing"), Ledger(path):
        pass
    assert victim.read_text() == "precious\n"
    os.unlink(path + ".lock")
    os.symlink(str(tmp_path / "created-by-nobody"), path + ".lock")
    with pytest.raises(LedgerError, match="is a symlink"), Ledger(path):
        pass
    assert not (tmp_path / "created-by-nobody").exists()


def test_a_lock_file_that_is_not_a_regular_file_is_refused(path):
    os.makedirs(os.path.dirname(path))
    os.mkfifo(path + ".lock")
    with pytest.raises(LedgerError, match="is not a regular file"), Ledger(path):
        pass


def test_a_new_lock_file_is_private(path):
    with Ledger(path):
        pass
    assert oct(os.stat(path + ".lock").st_mode & 0o777) == "0o600"


def test_a_symlinked_ledger_is_refused(path, tmp_path):
    os.makedirs(os.path.dirname(path))
    os.symlink(str(tmp_path / "elsewhere.json"), path)
    with pytest.raises(LedgerError, match="is a symlink"), Ledger(path, dry_run=True):
        pass


def test_an_unusable_ledger_directory_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LedgerError, match="cannot open the ledger %s/ledger.json: \\[Errno " % blocker), Ledger(
        str(blocker / "ledger.json")
    ):
        pass

    def read_only(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "makedirs", read_only)
    with pytest.raises(LedgerError, match="Read-only file system"), Ledger(str(tmp_path / "ro" / "ledger.json")):
        pass


def test_a_ledger_that_cannot_be_saved_is_a_clear_error(path, monkeypatch):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _ledger

    def read_only(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    with Ledger(path) as ledger:
        monkeypatch.setattr(_ledger._atomicfile, "replace", read_only)
        with pytest.raises(LedgerError, match="cannot write the ledger .*Read-only file system.*was not made"):
            ledger.record("s", kind="instance", name="a")


def test_an_error_in_the_block_is_not_hidden_by_the_unlock(path, monkeypatch):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _ledger

    def failing_flock(_fd, operation):
        if operation == _ledger.fcntl.LOCK_UN:
            raise OSError(5, "Input/output error")

    with pytest.raises(RuntimeError, match="the real error"), Ledger(path):
        monkeypatch.setattr(_ledger.fcntl, "flock", failing_flock)
        raise RuntimeError("the real error")


@pytest.mark.parametrize(
    "entry, problem",
    [
        ("x", "entry 0 is not an object"),
        ({"kind": "knob", "session": "s", "instance": None, "file": "tracing_on"}, "entry 0 has no 'original'"),
        ({"kind": "probe", "session": "s", "group": "g"}, "entry 0 has no 'event'"),
        ({"kind": "probe", "group": "g", "event": "e"}, "entry 0 has no 'session'"),
        ({"kind": "probe", "session": "s", "group": "g", "event": 3}, "entry 0 has event=3, not a string"),
        ({"kind": "instance", "session": "s", "name": None}, "entry 0 has name=None, not a string"),
        ({"kind": "event", "session": "s", "instance": [], "event": "a/b", "original": "0"}, "entry 0 has instance=[]"),
        ({"kind": "nonsense", "session": "s"}, "entry 0 has an unknown kind 'nonsense'"),
        ({"session": "s"}, "entry 0 has an unknown kind None"),
    ],
)
def test_a_damaged_entry_is_named_with_the_ledger(path, entry, problem):
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        json.dump({"format": 1, "entries": [entry]}, handle)
    with pytest.raises(LedgerError) as failure, Ledger(path):
        pass
    assert str(failure.value).startswith("the ledger %s is damaged: %s" % (path, problem))


def test_entries_must_be_a_list(path):
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        json.dump({"format": 1, "entries": {}}, handle)
    with pytest.raises(LedgerError, match="'entries' is not a list"), Ledger(path):
        pass


def test_a_batch_is_recorded_with_one_save(path, monkeypatch):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _ledger

    saves = []
    real = _ledger._atomicfile.replace
    monkeypatch.setattr(_ledger._atomicfile, "replace", lambda *a, **k: saves.append(1) or real(*a, **k))
    batch = [dict(kind="event", instance=None, event="syscalls/e%d" % n, original="0") for n in range(700)]
    with Ledger(path) as ledger:
        assert ledger.record_many("s", batch + batch[:1]) == [True] * 700 + [False]
        assert len(saves) == 1
        ledger.record("s", kind="list_add", instance=None, file="set_ftrace_filter", value="f")
        results = ledger.record_many(
            "s",
            [
                dict(kind="list_remove", instance=None, file="set_ftrace_filter", value="f"),
                dict(kind="event", instance=None, event="syscalls/e1", original="1"),
            ],
        )
        assert results == [True, False] and len(saves) == 3
        assert ledger.find(kind="event", instance=None, event="syscalls/e1")["original"] == "0"
        assert ledger.record_many("s", batch[:5]) == [False] * 5 and len(saves) == 3
    with Ledger(path) as ledger:
        assert len(ledger.entries) == 700
