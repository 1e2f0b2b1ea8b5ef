"""The trace_capture module as the action plugin runs it: check mode, the option
combinations the argument spec cannot express, a capture's result and warnings, and
an expected failure turned into one message."""

from __future__ import annotations

import json
import resource
import time

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture_keeper, _capture_spec, _capture_window
from ansible_collections.tracefleet.ftrace.plugins.modules import trace_capture


@pytest.fixture
def run(capsys, fake_host, tmp_path):
    fake_host.mount_tracefs()
    for name, text in {"tracing_on": "0\n", "trace": "", "trace_clock": "[local] global\n", "set_event": ""}.items():
        fake_host.write("tracing/instances/cap/" + name, text)
    (fake_host.tracing / "instances/cap/per_cpu/cpu0").mkdir(parents=True)
    (tmp_path / "work").mkdir()

    def run_module(args, check_mode=False) -> dict:
        args = dict(
            {
                "instance": "cap",
                "ledger_path": str(tmp_path / "ledger.json"),
                "tracefs_path": str(fake_host.tracing),
                "work_dir": str(tmp_path / "work"),
                "_ansible_check_mode": check_mode,
            },
            **args,
        )
        with patch_module_args(args), pytest.raises(SystemExit):
            trace_capture.main()
        return json.loads(capsys.readouterr().out)

    return run_module


def test_check_mode_records_nothing(run, tmp_path):
    result = run({"duration": 1}, check_mode=True)
    assert result["skipped"] and not result["changed"]
    assert not (tmp_path / "ledger.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        ({"state": "started", "command": "true"}, "command is for state=captured; with state=started"),
        ({"state": "collected", "duration": 1}, "duration is for state=captured or started"),
        ({"state": "started", "start_at": "soon"}, "start_at='soon': give a time of day"),
        ({"name": ".hidden", "duration": 1}, "name='.hidden': use letters, digits"),
        ({"duration": 0}, "duration=0: must be a finite number of seconds, more than 0"),
        ({}, "state=captured needs duration (seconds) or command"),
    ],
)
def test_option_combinations(run, args, message):
    result = run(args)
    assert result["failed"] and result["msg"].startswith(message)


def test_a_text_capture(run, tmp_path):
    result = run({"duration": 0.01, "format": "text", "compress": "none"})
    assert not result.get("failed"), result
    assert result["file"] == str(tmp_path / "work" / "trace.txt") and result["events"] == 0
    # The fake tracefs has no trace_marker: the one warning says there is no anchor.
    assert "no wall-clock anchor" in json.dumps(result["warnings"]) and len(result["warnings"]) == 1


def test_the_capture_cpu_leaves_out_the_workload(run):
    """timings.cpu: the capture's own CPU on the target, from just before the window
    until the file was ready; the workload's (about half a second here) is not in it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run({"command": "python3 -c 'x = 0\nfor i in range(10**7): x += i'", "kallsyms": False})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert not result.get("failed"), result
    burned = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert result["rc"] == 0 and burned >= 0.2
    assert 0.0 <= result["timings"]["cpu"] < burned / 2


def test_warnings_reach_the_task(run):
    result = run({"duration": 0.01, "compress": "gzip"})  # format=dat, with no event enabled
    assert not result.get("failed"), result
    # (ansible-core 2.19 returns each warning as a summary holding its message)
    assert "no events are enabled in instance cap: the capture holds only what a tracer recorded" in json.dumps(
        result["warnings"]
    )


def test_an_expected_failure_is_one_message(run):
    result = run({"state": "collected"})
    assert result["failed"]
    assert result["msg"] == (
        "trace_capture (instance=cap): no capture window is open in instance cap: start one with state=started"
    )


def test_the_module_declares_every_documented_option():
    """DOCUMENTATION and the argument spec agree (no validate-modules ignores): the
    controller's options are declared (and ignored on the target), and work_dir, which
    only the action sets, is documented; a task cannot set it."""
    documented = set(yaml.safe_load(trace_capture.DOCUMENTATION)["options"])
    fragments = {"instance", "session", "tracefs_path", "ledger_path"}
    assert set(_capture_spec.MODULE_SPEC) == documented | fragments
    assert set(_capture_spec.CONTROLLER_OPTIONS) <= set(_capture_spec.MODULE_SPEC)
    assert "work_dir" in _capture_spec.MODULE_SPEC and "work_dir" not in _capture_spec.ARGUMENT_SPEC
    assert set(_capture_spec.ARGUMENT_SPEC) == set(_capture_spec.TARGET_OPTIONS) | {"dest", "run_id", "transfer"}
    assert _capture_spec.module_args({"instance": "cap", "dest": "x", "run_id": None, "name": "t"}) == {
        "instance": "cap",
        "name": "t",
    }


def _keeper_of(tmp_path) -> dict | None:
    entries = json.loads((tmp_path / "ledger.json").read_text())["entries"]
    captures = [entry for entry in entries if entry["kind"] == "capture"]
    return captures[0]["keeper"] if captures else None


def test_an_armed_window_opens_at_start_at_and_closes_by_itself(run, fake_host, tmp_path):
    """The keeper (a process of its own) opens the window at start_at and closes it after
    the duration; collected waits for it and reports the real start and length."""
    on = fake_host.tracing / "instances/cap/tracing_on"
    on.write_text("1\n")  # recording before: arming turns it off until the window opens
    start_at = time.time() + 0.5
    armed = run({"state": "started", "start_at": start_at, "duration": 0.4})
    assert not armed.get("failed"), armed
    assert armed["started"] is None and armed["late"] is False and armed["start_at"].endswith("Z")
    assert on.read_text().strip() == "0"
    keeper = _keeper_of(tmp_path)
    assert _capture_keeper.alive(keeper)
    result = run({"state": "collected", "format": "text", "compress": "none"})
    assert not result.get("failed"), result
    assert result["closed_by"] == "duration" and result["late"] is False
    assert 0 <= result["start_delay"] < 0.4, result["start_delay"]
    assert 0.35 <= result["seconds"] < 1.0, result["seconds"]
    assert on.read_text().strip() == "1"  # as it was before the window
    assert not _capture_keeper.alive(keeper)
    assert _keeper_of(tmp_path) is None


def test_a_window_armed_after_start_at_is_late_and_says_so(run, tmp_path):
    armed = run({"state": "started", "start_at": time.time() - 5, "duration": 0.1})
    assert not armed.get("failed"), armed
    assert armed["late"] is True and "armed after start_at" in json.dumps(armed["warnings"])
    result = run({"state": "collected", "format": "text", "compress": "none"})
    assert result["late"] is True and result["start_delay"] >= 5, result
    assert "opened 5." in json.dumps(result["warnings"]) or "late, at" in json.dumps(result["warnings"])


def test_a_keeper_that_died_before_opening_is_a_clear_error(run, tmp_path):
    run({"state": "started", "start_at": time.time() + 60, "duration": 1})
    assert _capture_keeper.stop(_keeper_of(tmp_path))
    result = run({"state": "collected", "format": "text", "compress": "none"})
    assert result["failed"] and "never opened: its keeper process (pid" in result["msg"], result


def test_teardown_ends_the_keeper_before_it_opens_the_window(run, fake_host, tmp_path):
    on = fake_host.tracing / "instances/cap/tracing_on"
    run({"state": "started", "start_at": time.time() + 60, "duration": 1})
    keeper = _keeper_of(tmp_path)
    entry = json.loads((tmp_path / "ledger.json").read_text())["entries"][-1]
    _capture_window.LEDGER_KINDS["capture"].undo(None, None, entry)
    assert not _capture_keeper.alive(keeper) and on.read_text().strip() == "0"
