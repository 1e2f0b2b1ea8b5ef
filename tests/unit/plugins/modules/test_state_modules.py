"""trace_instance, tracer, trace_event and teardown end to end on a fake tracefs tree:
check mode changes nothing, apply records in the ledger, teardown puts it back."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.modules import (
    teardown,
    trace_event,
    trace_instance,
    tracer,
)

FILES = {
    "trace": "",
    "error_log": "",
    "current_tracer": "nop\n",
    "tracing_on": "1\n",
    "available_tracers": "function nop\n",
    "trace_clock": "[local] global mono\n",
    "buffer_size_kb": "7 (expanded: 1408)\n",
    "set_event": "",
    "dynamic_events": "",
    "available_filter_functions": "vfs_read\n",
    "set_ftrace_filter": "",
    "events/sched/sched_switch/enable": "0\n",
    "events/sched/sched_switch/filter": "none\n",
    "events/sched/sched_switch/trigger": "# Available triggers:\n",
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tracing"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "instances").mkdir()
    (root / "per_cpu" / "cpu0").mkdir(parents=True)
    return root


@pytest.fixture
def run(capsys, tmp_path, tree):
    def run_module(module, args) -> dict:
        args = dict({"ledger_path": str(tmp_path / "ledger.json"), "tracefs_path": str(tree)}, **args)
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run_module


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
