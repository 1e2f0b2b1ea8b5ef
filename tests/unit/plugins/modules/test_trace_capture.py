"""The trace_capture module as the action plugin runs it: check mode, the option
combinations the argument spec cannot express, a capture's result and warnings, and
an expected failure turned into one message."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture_spec
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
        ({"state": "started", "duration": 1}, "duration and command are for state=captured; with state=started"),
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
