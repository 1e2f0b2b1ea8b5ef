from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _teardown
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Control
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tracing"
    for name, text in {
        "current_tracer": "function\n",
        "set_ftrace_filter": "vfs_read\n",
        "set_event_pid": "5\n7\n",
        "error_log": "",
        "set_event": "",
        "dynamic_events": "p:tracefleet/open do_sys_openat2\n",
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    event = root / "events" / "sched" / "sched_switch"
    event.mkdir(parents=True)
    (event / "enable").write_text("1\n")
    (event / "filter").write_text("prev_pid != 0\n")
    (event / "trigger").write_text("traceoff:unlimited\n")
    (root / "instances" / "mine").mkdir(parents=True)
    # (tracefs removes an instance with its files; a plain directory must be empty)
    return root


@pytest.fixture
def ledger(tmp_path):
    with Ledger(str(tmp_path / "ledger.json")) as opened:
        yield opened


def test_undo_newest_first_and_forget(tree, ledger):
    ledger.record("s", kind="instance", name="mine")
    ledger.record("s", kind="knob", instance=None, file="current_tracer", original="nop")
    ledger.record("s", kind="list_add", instance=None, file="set_ftrace_filter", value="vfs_read")
    ledger.record("s", kind="list_add", instance=None, file="set_event_pid", value="7")
    ledger.record("s", kind="event", instance=None, event="sched/sched_switch", original="0")
    ledger.record("s", kind="filter", instance=None, event="sched/sched_switch", original="none")
    ledger.record("s", kind="trigger_add", instance=None, event="sched/sched_switch", value="traceoff")
    ledger.record("s", kind="probe", group="tracefleet", event="open")
    ledger.record("other", kind="knob", instance=None, file="tracing_on", original="1")
    undone, notes, failures = _teardown.teardown(Control(str(tree)), ledger, "s", False, False)
    assert failures == [] and notes == []
    assert undone[0] == "remove probe tracefleet/open"
    assert undone[-1] == "remove instance mine"
    assert (tree / "current_tracer").read_text() == "nop\n"
    assert (tree / "set_ftrace_filter").read_text() == "vfs_read\n!vfs_read\n"  # appended
    assert (tree / "set_event_pid").read_text() == "5\n"  # rewritten without ours
    assert (tree / "events/sched/sched_switch/enable").read_text() == "0\n"
    assert (tree / "events/sched/sched_switch/filter").read_text() == "0\n"
    assert (tree / "events/sched/sched_switch/trigger").read_text().endswith("!traceoff\n")
    assert (tree / "dynamic_events").read_text().endswith("-:tracefleet/open\n")
    assert not (tree / "instances" / "mine").exists()
    assert [e["session"] for e in ledger.entries] == ["other"]


def test_dry_run_lists_without_undoing(tree, ledger):
    ledger.record("s", kind="knob", instance=None, file="current_tracer", original="nop")
    undone, _notes, _failures = _teardown.teardown(Control(str(tree)), ledger, None, False, True)
    assert undone == ["restore current_tracer of top level to 'nop'"]
    assert (tree / "current_tracer").read_text() == "function\n"


def test_gone_things_become_notes(tree, ledger):
    ledger.record("s", kind="instance", name="vanished")
    ledger.record("s", kind="knob", instance="vanished", file="tracing_on", original="1")
    ledger.record("s", kind="event", instance=None, event="nosys/noevent", original="0")
    undone, notes, failures = _teardown.teardown(Control(str(tree)), ledger, "s", False, False)
    assert undone == [] and failures == []
    assert len(notes) == 3
    assert ledger.entries == []


def test_failures_keep_their_entry_for_a_rerun(tree, ledger):
    ledger.record("s", kind="knob", instance=None, file="no_such_knob", original="1")
    undone, _notes, failures = _teardown.teardown(Control(str(tree)), ledger, "s", False, False)
    assert undone == [] and len(failures) == 1
    assert "no_such_knob" in failures[0]
    assert len(ledger.entries) == 1


def test_keep_mounts(tree, ledger):
    ledger.record("s", kind="mount", path="/sys/kernel/tracing", fstype="tracefs")
    undone, _notes, _failures = _teardown.teardown(Control(str(tree)), ledger, "s", True, False)
    assert undone == [] and len(ledger.entries) == 1
