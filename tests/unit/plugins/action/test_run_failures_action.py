# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run_failures action plugin, driven the way the task executor drives it, with a
connection that fails the test if it is ever used. (The manifest's side is tested in
tests/unit/plugins/plugin_utils/test_runs.py.)"""

from __future__ import annotations

import json
import os
import stat

import pytest

RUN_ID = "20261127T031500Z-1a2b3c4d"
FAILURES = {
    "web07": {
        "reason": "Failed to connect to the host via ssh: ssh: connect to host web07 port 22: No route to host",
        "unreachable": True,
        "task": "tracefleet.ftrace.tracefs : Create the tracing group",
    },
    "web19": {"reason": "the workload exited with rc 2", "task": "tracefleet.ftrace.session : Capture"},
}


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "traces" / RUN_ID
    (run / "web01").mkdir(parents=True)
    manifest = {"format": 1, "run_id": RUN_ID, "created": "2026-11-27T03:15:00Z", "hosts": {"web01": {"dir": "web01"}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def manifest_of(run) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_records_the_failed_hosts_once(run, run_action):
    result = run_action("run_failures", {"run_dir": str(run), "failures": FAILURES})
    assert not result.get("failed"), result
    assert result["changed"] is True and result["recorded"] == ["web07", "web19"]
    assert result["manifest"] == str(run / "manifest.json")
    assert result["msg"] == "recorded 2 failed host(s) (web07, web19) in %s" % (run / "manifest.json")
    manifest = manifest_of(run)
    assert manifest["failed"] == result["failures"]
    assert manifest["failed"]["web07"]["unreachable"] is True and manifest["failed"]["web19"]["unreachable"] is False
    assert manifest["hosts"] == {"web01": {"dir": "web01"}}
    before = (run / "manifest.json").read_bytes()
    again = run_action("run_failures", {"run_dir": str(run), "failures": FAILURES})
    assert again["changed"] is False and again["recorded"] == [] and not again.get("failed")
    assert again["msg"].startswith("already recorded: 2 failed host(s)")
    assert again["failures"] == result["failures"]
    assert (run / "manifest.json").read_bytes() == before


def test_check_mode_says_what_it_would_record_and_writes_nothing(run, run_action):
    before = (run / "manifest.json").read_bytes()
    result = run_action("run_failures", {"run_dir": str(run), "failures": FAILURES}, check_mode=True)
    assert result["changed"] is True and result["recorded"] == ["web07", "web19"]
    assert result["msg"].startswith("would record 2 failed host(s)")
    assert result["failures"]["web19"]["reason"] == "the workload exited with rc 2"
    assert (run / "manifest.json").read_bytes() == before
    assert sorted(os.listdir(run)) == ["manifest.json", "web01"]


def test_a_run_nobody_captured_in_is_made(tmp_path, monkeypatch, run_action):
    """Every host failed before a capture: neither the run's directory nor its manifest
    exists yet. A relative run_dir is relative to the current directory."""
    monkeypatch.chdir(tmp_path)
    relative = os.path.join("traces", RUN_ID)
    predicted = run_action("run_failures", {"run_dir": relative, "failures": FAILURES}, check_mode=True)
    assert predicted["changed"] is True and not (tmp_path / "traces").exists()
    result = run_action("run_failures", {"run_dir": relative, "failures": FAILURES})
    assert result["changed"] is True and result["manifest"] == str(tmp_path / relative / "manifest.json")
    manifest = manifest_of(tmp_path / relative)
    assert (manifest["format"], manifest["run_id"], manifest["hosts"]) == (1, RUN_ID, {})
    assert sorted(manifest["failed"]) == ["web07", "web19"]
    for path in (tmp_path / "traces", tmp_path / relative):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_no_failures_records_nothing_and_makes_nothing(tmp_path, run_action):
    result = run_action("run_failures", {"run_dir": str(tmp_path / "traces" / RUN_ID), "failures": {}})
    assert result["changed"] is False and result["failures"] == {} and not result.get("failed")
    assert result["msg"].startswith("no failed host to record")
    assert not (tmp_path / "traces").exists()


@pytest.mark.parametrize(
    "failures, message",
    [
        ({"web07": {"reason": {"nested": "dict"}}}, r"failures\['web07'\]\.reason=\{'nested': 'dict'\}: a string"),
        ({"web07": {"reason": "x", "unreachable": "maybe"}}, r"unreachable='maybe': true or false"),
        ({"web07": {"reason": "x", "stdout": "y"}}, r"failures\['web07'\]\.stdout='y': a key this result never has"),
        ({"web07": ["down"]}, r"a dict is expected, not list"),
        ("web07=down", r"failures\['web07'\]='down': a dict is expected"),
    ],
)
def test_failures_of_the_wrong_type_fail_the_task_and_change_nothing(run, run_action, failures, message):
    import re

    before = (run / "manifest.json").read_bytes()
    result = run_action("run_failures", {"run_dir": str(run), "failures": failures})
    assert result.get("failed") is True and not result.get("changed"), result
    assert re.search(message, result["msg"]), result["msg"]
    assert (run / "manifest.json").read_bytes() == before


def test_a_hostile_reason_is_recorded_harmless(run, run_action):
    failures = {"web07": {"reason": "\x1b]0;owned\x07\n" + "x" * 100000, "unreachable": False}}
    result = run_action("run_failures", {"run_dir": str(run), "failures": failures})
    assert not result.get("failed"), result
    reason = manifest_of(run)["failed"]["web07"]["reason"]
    assert reason.startswith("\\x1b]0;owned\\x07 xxx") and len(reason) == 2000
    assert reason.endswith("(cut: 100011 characters)")


def test_a_run_dir_that_is_a_file_fails(run, run_action):
    target = run.with_name("a-file")
    target.write_text("")
    result = run_action("run_failures", {"run_dir": str(target), "failures": FAILURES})
    assert result.get("failed") and "not a directory" in result["msg"], result
    assert target.read_text() == ""


def test_a_missing_run_dir_that_is_no_run_id_is_not_made(run, run_action):
    target = run.with_name("bad run")
    result = run_action("run_failures", {"run_dir": str(target), "failures": FAILURES})
    assert result.get("failed"), result
    assert "no such directory, and not one to make: run_id='bad run'" in result["msg"]
    assert not target.exists()


def test_a_host_with_captures_that_failed_keeps_them(run, run_action):
    failures = {"web01": {"reason": "the teardown could not remove the instance", "task": "teardown"}}
    result = run_action("run_failures", {"run_dir": str(run), "failures": failures})
    assert result["recorded"] == ["web01"]
    manifest = manifest_of(run)
    assert manifest["hosts"]["web01"] == {"dir": "web01"} and list(manifest["failed"]) == ["web01"]
