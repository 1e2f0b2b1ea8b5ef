# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The perfetto_export action plugin, driven the way the task executor drives it, with
a connection that fails the test if it is ever used. (The export itself is tested in
tests/unit/plugins/plugin_utils/test_perfetto.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

FIXTURE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugin_utils", "fixtures", "sched-uprobe-v6.dat"
)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "traces" / "20261202T112531Z-0a1b2c3d"
    (run / "web01").mkdir(parents=True)
    shutil.copyfile(FIXTURE, run / "web01" / "trace.dat")
    data = (run / "web01" / "trace.dat").read_bytes()
    entry = {"path": "web01/trace.dat", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    capture = {
        "name": "trace",
        "format": "dat",
        "trace_clock": "local",
        "clock_anchor": {"wall": 1796210731.2977355, "trace": 424.169736, "clock": "local"},
        "files": [entry],
    }
    manifest = {"format": 1, "run_id": run.name, "hosts": {"web01": {"dir": "web01", "captures": [capture]}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


TASKS = {"web01": [{"name": "capture", "start": 1796210731.2, "end": 1796210731.4}]}


def test_writes_then_up_to_date(run_dir, run_action):
    result = run_action("perfetto_export", {"run_dir": str(run_dir), "tasks": TASKS})
    assert not result.get("failed"), result
    path = str(run_dir / "perfetto.tar")
    assert result["changed"] is True and result["path"] == path
    assert (result["hosts"], result["events"], result["files"][0]["tasks"]) == (1, 971, 1)
    assert result["msg"] == "wrote %s: 1 host(s), 1 file(s), 971 events" % path
    assert result["open_with"] == "open https://ui.perfetto.dev, choose 'Open trace file' and pick %s" % path
    again = run_action("perfetto_export", {"run_dir": str(run_dir), "tasks": TASKS})
    assert again["changed"] is False and again["msg"].startswith("up to date:")


def test_check_mode_writes_nothing(run_dir, run_action):
    result = run_action("perfetto_export", {"run_dir": str(run_dir)}, check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("would write")
    assert sorted(os.listdir(run_dir)) == ["manifest.json", "web01"]


def test_relative_run_dir_and_problems_in_msg(run_dir, monkeypatch, run_action):
    monkeypatch.chdir(run_dir.parent.parent)
    (run_dir / "web01" / "trace.dat").unlink()
    result = run_action("perfetto_export", {"run_dir": "traces/" + run_dir.name})
    assert not result.get("failed") and result["changed"] is False and result["open_with"] is None
    assert result["problems"] == [
        "web01 / trace: web01/trace.dat: missing: not in the archive",
        "no trace.dat capture in the run: nothing to export",
    ]
    assert result["msg"].startswith("nothing exported for %s; 2 problem(s): web01 / trace" % run_dir)


@pytest.mark.parametrize(
    "args,words",
    [
        ({"run_dir": "/nonexistent/run"}, "is not a directory"),
        ({"run_dir": "."}, "no manifest.json"),
        ({"run_dir": ".", "tasks": {"web01": "capture"}}, "tasks['web01']: a host name with a list of tasks"),
    ],
)
def test_bad_input(tmp_path, monkeypatch, args, words, run_action):
    monkeypatch.chdir(tmp_path)
    result = run_action("perfetto_export", args)
    assert result["failed"] is True and words in result["msg"]


def test_unknown_option(run_dir, run_action):
    from ansible.errors import AnsibleActionFail

    with pytest.raises(AnsibleActionFail, match="bogus"):
        run_action("perfetto_export", {"run_dir": str(run_dir), "bogus": 1})
