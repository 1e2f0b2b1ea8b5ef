"""trace_instance, tracer, trace_event and teardown end to end on a fake tracefs tree:
check mode changes nothing, apply records in the ledger, teardown puts it back."""

from __future__ import annotations

import json

import pytest

from ansible_collections.tracefleet.ftrace.plugins.modules import (
    teardown,
    trace_event,
    trace_instance,
    tracer,
)


@pytest.fixture
def tree(state_tree):
    return state_tree


@pytest.fixture
def run(run_module, tree):
    return lambda module, args: run_module(module, dict({"tracefs_path": str(tree)}, **args))


def snapshot(tree):
    return {str(path.relative_to(tree)): path.read_text() for path in sorted(tree.rglob("*")) if path.is_file()}


def test_top_level_changes_check_apply_teardown(run, tree, tmp_path):
    before = snapshot(tree)
    knobs = {"tracer": "function", "function_filter": ["vfs_read"], "trace_clock": "mono"}
    events = {"events": [{"name": "sched/sched_switch", "filter": "prev_pid != 0"}]}

    assert run(tracer, dict(knobs, _ansible_check_mode=True))["changed"]
    assert run(trace_event, dict(events, _ansible_check_mode=True))["changed"]
    assert snapshot(tree) == before and not (tmp_path / "ledger.json").exists()

    applied = run(tracer, dict(knobs, _ansible_diff=True))
    assert applied["diff"]["before"]["tracer"] == "nop"
    assert applied["diff"]["after"]["function_filter"] == {"added": ["vfs_read"], "removed": []}
    assert run(trace_event, events)["events"]["sched/sched_switch"]["after"]["enabled"]
    assert (tree / "current_tracer").read_text() == "function\n"

    undone = run(teardown, {})
    assert undone["changed"] and undone["remaining"] == 0
    after = snapshot(tree)
    assert after["current_tracer"] == "nop\n"
    assert after["trace_clock"] == "local\n"
    assert after["events/sched/sched_switch/enable"] == "0\n"
    assert after["events/sched/sched_switch/filter"] == "0\n"
    assert after["set_ftrace_filter"] == "vfs_read\n!vfs_read\n"  # the kernel would drop it


def test_instance_ownership(run, tree):
    (tree / "instances" / "theirs").mkdir()
    assert run(trace_instance, {"name": "mine", "_ansible_check_mode": True})["changed"]
    assert not (tree / "instances" / "mine").exists()
    created = run(trace_instance, {"name": "mine"})
    assert created["changed"] and created["owned"] and created["exists"]
    assert not run(trace_instance, {"name": "mine"})["changed"]
    refused = run(trace_instance, {"name": "theirs", "state": "absent"})
    assert refused["failed"] and "force=true" in refused["msg"]
    assert (tree / "instances" / "theirs").exists()
    removed = run(trace_instance, {"name": "mine", "state": "absent"})
    assert removed["changed"] and not removed["exists"]


def test_unknown_event_changes_nothing(run, tree):
    before = snapshot(tree)
    result = run(trace_event, {"events": [{"name": "sched/sched_switch"}, {"name": "sched/nope"}]})
    assert result["failed"] and "has no event 'nope'" in result["msg"]
    assert snapshot(tree) == before


def test_missing_instance_is_named(run, tree):
    result = run(tracer, {"instance": "ghost", "tracing_on": False})
    assert result["failed"] and "instance='ghost' does not exist" in result["msg"]


def test_tracer_failure_puts_back_what_it_changed(run, tree, tmp_path):
    before = snapshot(tree)
    result = run(tracer, {"trace_clock": "mono", "tracer": "function", "options": {"funcgraph-proc": True}})
    assert result["failed"]
    assert result["msg"] == (
        "options: 'funcgraph-proc' is not an option of the tracer set here (in the top level); "
        "the changes this task had made were put back"
    )
    assert result["changes"] == ["trace_clock <- mono", "current_tracer <- function"]
    after = snapshot(tree)
    assert after["current_tracer"] == "nop\n" and after["trace_clock"] == "local\n"
    assert {name: text for name, text in after.items() if name not in ("current_tracer", "trace_clock")} == {
        name: text for name, text in before.items() if name not in ("current_tracer", "trace_clock")
    }
    assert json.loads((tmp_path / "ledger.json").read_text())["entries"] == []


def test_rejected_event_write_is_named_and_put_back(run, tree, tmp_path):
    (tree / "events/sched/sched_wakeup").mkdir()
    (tree / "events/sched/sched_wakeup/enable").write_text("0\n")  # and no filter file: the write fails
    result = run(
        trace_event,
        {
            "events": [
                {"name": "sched/sched_switch", "filter": "prev_pid != 0"},
                {"name": "sched/sched_wakeup", "filter": "pid > 1"},
            ]
        },
    )
    assert result["failed"] and result["error_log"] == []
    assert result["msg"].startswith(
        "events: filter 'pid > 1' of sched/sched_wakeup was rejected: writing 'pid > 1' to "
    )
    # (the rejected filter's undo write fails too: the file is missing)
    assert "(in the top level); the changes this task had made were put back, except: writing '0'" in result["msg"]
    assert (tree / "events/sched/sched_switch/filter").read_text() == "0\n"  # put back: "0" clears a filter
    assert json.loads((tmp_path / "ledger.json").read_text())["entries"] == []


def test_keep_the_instance_then_force(run, tree):
    (tree / "instances" / "theirs").mkdir()
    refused = run(trace_instance, {"name": "theirs", "state": "absent"})
    assert refused["path"] == str(tree / "instances" / "theirs") and refused["owned"] is False
    removed = run(trace_instance, {"name": "theirs", "state": "absent", "force": True, "_ansible_diff": True})
    assert removed["changed"] and removed["diff"] == {
        "before": {"exists": True, "owned": False},
        "after": {"exists": False, "owned": False},
    }
    assert not run(trace_instance, {"name": "theirs", "state": "absent"})["changed"]
    bad = run(trace_instance, {"name": "../x"})
    assert bad["failed"] and bad["msg"].startswith("name='../x' is not a valid instance name")


def test_teardown_without_tracefs(run, tmp_path):
    with open(tmp_path / "ledger.json", "w") as handle:
        json.dump(
            {
                "format": 1,
                "entries": [
                    {"kind": "knob", "instance": None, "file": "x", "original": "1", "session": "s", "time": 0}
                ],
            },
            handle,
        )
    result = run(teardown, {"tracefs_path": str(tmp_path / "nowhere"), "all_sessions": True})
    assert result["failed"] and result["remaining"] == 1
    assert result["msg"].startswith("cannot undo the tracing changes: tracefs_path=")


def _ledger_with_sessions(tmp_path, sessions):
    entries = [
        {"kind": "knob", "instance": None, "file": "tracing_on", "original": "1", "session": name, "time": 0}
        for name in sessions
    ]
    entries[-1]["file"] = "current_tracer"
    entries[-1]["original"] = "nop"
    with open(tmp_path / "ledger.json", "w") as handle:
        json.dump({"format": 1, "entries": entries}, handle)


def test_teardown_without_a_session_leaves_concurrent_sessions_alone(run, tree, tmp_path):
    _ledger_with_sessions(tmp_path, ["other-play", "default"])
    (tree / "tracing_on").write_text("0\n")
    (tree / "current_tracer").write_text("function\n")
    result = run(teardown, {})
    assert result["undone"] == ["restore current_tracer of top level to 'nop'"] and result["remaining"] == 1
    assert (tree / "tracing_on").read_text() == "0\n"
    everything = run(teardown, {"all_sessions": True})
    assert everything["undone"] == ["restore tracing_on of top level to '1'"] and everything["remaining"] == 0


def test_teardown_session_and_all_sessions_exclude_each_other(run, tree, tmp_path):
    _ledger_with_sessions(tmp_path, ["a"])
    result = run(teardown, {"session": "a", "all_sessions": True})
    assert result["failed"] and "mutually exclusive" in result["msg"]
    assert (tree / "current_tracer").read_text() == "nop\n"


def test_subbuf_size_check_apply_again_teardown(run, tree, tmp_path, monkeypatch):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _knob_state

    monkeypatch.setattr(_knob_state, "system_page_size", lambda: 4096)
    (tree / "buffer_subbuf_size_kb").write_text("4\n")
    before = snapshot(tree)

    checked = run(tracer, {"buffer_subbuf_size_kb": 5, "_ansible_check_mode": True, "_ansible_diff": True})
    assert checked["changed"] and checked["diff"] == {
        "before": {"buffer_subbuf_size_kb": 4},
        "after": {"buffer_subbuf_size_kb": 8},
    }
    assert snapshot(tree) == before and not (tmp_path / "ledger.json").exists()

    applied = run(tracer, {"buffer_subbuf_size_kb": 5})
    assert applied["changed"] and applied["changes"] == ["buffer_subbuf_size_kb <- 8"]
    assert (tree / "buffer_subbuf_size_kb").read_text().strip() == "8"
    for args in ({"buffer_subbuf_size_kb": 8}, {"buffer_subbuf_size_kb": 5, "_ansible_check_mode": True}):
        assert not run(tracer, args)["changed"]

    undone = run(teardown, {})
    assert undone["undone"] == ["restore buffer_subbuf_size_kb of top level to '4'"]
    assert (tree / "buffer_subbuf_size_kb").read_text().strip() == "4"


def test_subbuf_size_on_a_kernel_without_it(run, tree):
    before = snapshot(tree)
    result = run(tracer, {"buffer_subbuf_size_kb": 8, "tracer": "function"})
    assert result["failed"] and result["msg"] == (
        "buffer_subbuf_size_kb=8: this kernel has no buffer_subbuf_size_kb (ring-buffer sub-buffer sizes "
        "came with Linux 6.8) (in the top level); nothing was changed"
    )
    assert snapshot(tree) == before
