# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run_report action plugin, driven the way the task executor drives it, with a
connection that fails the test if it is ever used. (The report itself is tested in
tests/unit/plugins/plugin_utils/test_run_report.py.)"""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "traces" / "20261127T031500Z-1a2b3c4d"
    (run / "web01").mkdir(parents=True)
    (run / "web01" / "trace.txt").write_text("# tracer: nop\n")
    manifest = {
        "format": 1,
        "run_id": run.name,
        "hosts": {
            "web01": {
                "dir": "web01",
                "captures": [
                    {
                        "name": "trace",
                        "format": "text",
                        "events": 3,
                        "lost_events": {"0": 0, "1": 2},
                        "files": [{"path": "web01/trace.txt", "bytes": 14}],
                    }
                ],
            }
        },
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_writes_then_up_to_date(run_dir, run_action):
    result = run_action("run_report", {"run_dir": str(run_dir), "title": "Lab run"})
    assert not result.get("failed"), result
    assert result["changed"] is True and result["path"] == str(run_dir / "report.html")
    assert (result["hosts"], result["captures"], result["events"], result["lost_events"]) == (1, 1, 3, 2)
    assert result["failed_hosts"] == 0 and "failed host" not in result["msg"]
    assert result["msg"].startswith("wrote %s: 1 host(s)" % (run_dir / "report.html"))
    assert "<title>Lab run</title>" in (run_dir / "report.html").read_text()
    again = run_action("run_report", {"run_dir": str(run_dir), "title": "Lab run"})
    assert again["changed"] is False and again["msg"].startswith("up to date:")


def test_check_mode_writes_nothing(run_dir, run_action):
    result = run_action("run_report", {"run_dir": str(run_dir)}, check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("would write")
    assert not (run_dir / "report.html").exists()


def test_relative_run_dir_and_problems_in_msg(run_dir, monkeypatch, run_action):
    monkeypatch.chdir(run_dir.parent.parent)
    (run_dir / "web01" / "trace.txt").unlink()
    result = run_action("run_report", {"run_dir": "traces/" + run_dir.name, "top_events": 3})
    assert result["path"] == str(run_dir / "report.html")
    assert result["problems"] == ["web01 / trace: web01/trace.txt: missing"]
    assert "1 problem(s): web01 / trace: web01/trace.txt: missing" in result["msg"]


@pytest.mark.parametrize(
    "args,words",
    [
        ({"run_dir": "/nonexistent/run"}, "is not a directory"),
        ({"run_dir": "."}, "no manifest.json"),
        ({"run_dir": ".", "top_events": 0}, "top_events=0: at least 1"),
    ],
)
def test_bad_input(tmp_path, monkeypatch, args, words, run_action):
    monkeypatch.chdir(tmp_path)
    result = run_action("run_report", args)
    assert result["failed"] is True and words in result["msg"]


def test_unknown_option(run_dir, run_action):
    from ansible.errors import AnsibleActionFail

    with pytest.raises(AnsibleActionFail, match="bogus"):
        run_action("run_report", {"run_dir": str(run_dir), "bogus": 1})


def test_failed_hosts_recorded_by_run_failures_are_counted(run_dir, run_action):
    failures = {"web07": {"reason": "No route to host", "unreachable": True}}
    assert run_action("run_failures", {"run_dir": str(run_dir), "failures": failures})["changed"] is True
    result = run_action("run_report", {"run_dir": str(run_dir)})
    assert (result["hosts"], result["failed_hosts"]) == (1, 1)
    assert result["problems"] == ["web07: unreachable: No route to host"]
    assert ", 1 failed host(s); 1 problem(s): web07: unreachable: No route to host" in result["msg"]


def test_the_report_brings_a_manifest_json_left_behind_up_to_date(tmp_path, run_action):
    """A controller killed between a host's record and the rewrite of manifest.json:
    the report reads the records, and (not in check mode) catches manifest.json up."""
    from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _runs

    run = _runs.run_dir(str(tmp_path / "traces"), "r1")
    for host in ("web01", "web02"):
        staging = tmp_path / "stage"
        staging.mkdir()
        (staging / "trace.txt").write_text("# tracer: nop\n")
        _runs.file_capture(run, host, str(staging), {"name": "trace", "format": "text", "events": 1}, None)
        staging.rmdir()
    checked = run_action("run_report", {"run_dir": run}, check_mode=True)
    assert checked["hosts"] == 2 and not (tmp_path / "traces" / "r1" / "manifest.json").exists()
    result = run_action("run_report", {"run_dir": run})
    assert not result.get("failed") and result["hosts"] == 2, result
    manifest = json.loads((tmp_path / "traces" / "r1" / "manifest.json").read_text())
    assert sorted(manifest["hosts"]) == ["web01", "web02"]
