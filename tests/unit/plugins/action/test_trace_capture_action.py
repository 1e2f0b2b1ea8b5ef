# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The trace_capture action plugin on the controller: the module's run is faked (a
"remote" file in a temporary directory), the transfer is real code. Fetch, the
fallback to chunks when fetch fails, a damaged file, a failed module, and where
the files land."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib
import json
import os
import re
import shlex
from unittest.mock import MagicMock

import bad_input_cases
import pytest

PAYLOAD = bytes(range(256)) * 40000  # ~10 MiB: more than two 4 MiB chunks


@pytest.fixture
def remote(tmp_path):
    """The target's side: a gzip-compressed capture file, as the module leaves it."""
    directory = tmp_path / "remote"
    directory.mkdir()
    path = directory / "trace.dat.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(PAYLOAD)
    return path


def module_result(remote):
    return {
        "changed": True,
        "file": str(remote),
        "file_name": "trace.dat",
        "compress": "gzip",
        "bytes": remote.stat().st_size,
        "raw_bytes": len(PAYLOAD),
        "sha256": None,
        "events": 1234,
        "events_per_cpu": {"0": 1234},
        "lost_events": {"0": 0},
        "seconds": 1.0,
        "started": "2026-11-27T03:15:02.000000Z",
        "kernel": "6.1.0",
        "trace_clock": "local",
        "clock_anchor": {"wall": 1.0, "trace": 2.0, "clock": "local"},
        "enabled_events": ["sched/*"],
        "timings": {},
        "file_version": 6,
        "format": "dat",
        "instance": "cap",
    }


def make_action(remote, fetch_works=True, module=None):
    from ansible.playbook.play_context import PlayContext

    plugin = importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.action.trace_capture")
    task = MagicMock()
    task.check_mode = False
    task.async_val = 0
    task.action = "tracefleet.ftrace.trace_capture"
    task.get_play.return_value = MagicMock(_uuid="play-1")
    connection = MagicMock()
    connection._shell.tmpdir = None

    def fetch_file(source, local):
        if not fetch_works:
            raise OSError("Permission denied")
        with open(source, "rb") as src, open(local, "wb") as out:
            out.write(src.read())

    connection.fetch_file.side_effect = fetch_file
    action = plugin.ActionModule(task, connection, PlayContext(), loader=None, templar=None, shared_loader_obj=None)
    action._load_name = "tracefleet.ftrace.trace_capture"  # set by the plugin loader in a real run (2.17 reads it)
    action._make_tmp_path = MagicMock(return_value=str(remote.parent))
    action._remove_tmp_path = MagicMock()
    action._execute_module = MagicMock(return_value=module or module_result(remote))
    commands = []

    def low_level(cmd, sudoable=True):
        # Run the chunk command's dd | base64 for real, on the "remote" file.
        commands.append(cmd)
        argv = shlex.split(cmd.split("|")[0])
        options = dict(arg.split("=", 1) for arg in argv[1:] if "=" in arg)
        with open(options["if"], "rb") as handle:
            handle.seek(int(options["bs"]) * int(options["skip"]))
            data = handle.read(int(options["bs"]))
        return {"rc": 0, "stdout": base64.b64encode(data).decode(), "stderr": ""}

    action._low_level_execute_command = MagicMock(side_effect=low_level)
    action.commands = commands
    return action, task


def run(action, task, args, host="web01"):
    # A version 6 capture (it travels gzip-compressed) unless a test says otherwise.
    task.args = dict({"file_version": 6}, **args)
    return action.run(task_vars={"inventory_hostname": host})


def test_fetch_lands_the_file_and_the_manifest(remote, tmp_path):
    action, task = make_action(remote)
    result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "traces"), "run_id": "r1"})
    assert not result.get("failed"), result
    stored = tmp_path / "traces" / "r1" / "web01" / "trace.dat"
    assert result["files"] == [str(stored)] and stored.read_bytes() == PAYLOAD
    assert result["transfer"] == "fetch" and result["stored_bytes"] == len(PAYLOAD)
    assert "file" not in result and "sha256" not in result
    manifest = json.loads((tmp_path / "traces" / "r1" / "manifest.json").read_text())
    capture = manifest["hosts"]["web01"]["captures"][0]
    assert capture["files"][0]["bytes"] == len(PAYLOAD) and capture["events"] == 1234
    assert capture["clock_anchor"] == {"wall": 1.0, "trace": 2.0, "clock": "local"}
    # The module was asked to work in the task's temporary directory, which is removed.
    module_args = action._execute_module.call_args.kwargs["module_args"]
    assert module_args["work_dir"] == str(remote.parent)
    assert not {"dest", "run_id", "transfer"} & set(module_args)
    action._remove_tmp_path.assert_called_once_with(str(remote.parent), force=True)


def test_a_manifest_json_that_cannot_be_rewritten_fails_the_task_but_keeps_the_capture(remote, tmp_path, monkeypatch):
    """The host's record is filed; the task says manifest.json is behind, and the
    readers (the records) and the next writer catch it up."""
    from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _run_dir, _runs

    def full(run):
        raise OSError(28, "No space left on device")

    action, task = make_action(remote)
    with monkeypatch.context() as patched:
        patched.setattr(_runs, "refresh_manifest", full)
        result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "traces"), "run_id": "r1"})
    run_dir = tmp_path / "traces" / "r1"
    assert result.get("failed") and "No space left on device" in result["msg"], result
    assert (
        "the capture of web01 is filed in %s, but manifest.json was not rewritten" % (run_dir / "web01")
        in result["msg"]
    )
    assert (run_dir / "web01" / "trace.dat").read_bytes() == PAYLOAD and not (run_dir / "manifest.json").exists()
    assert list(_run_dir.load_manifest(str(run_dir))["hosts"]) == ["web01"]
    assert _runs.refresh_manifest(str(run_dir)) is True
    assert list(json.loads((run_dir / "manifest.json").read_text())["hosts"]) == ["web01"]


def test_fetch_that_fails_falls_back_to_chunks(remote, tmp_path):
    action, task = make_action(remote, fetch_works=False)
    result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "t"), "run_id": "r1"})
    assert not result.get("failed"), result
    assert result["transfer"] == "chunks"
    assert (tmp_path / "t" / "r1" / "web01" / "trace.dat").read_bytes() == PAYLOAD
    # One 4 MiB piece per command, run with become like the module.
    assert len(action.commands) == -(-remote.stat().st_size // (4 << 20))
    assert all(call.kwargs.get("sudoable") for call in action._low_level_execute_command.call_args_list)


def test_transfer_fetch_does_not_fall_back(remote, tmp_path):
    action, task = make_action(remote, fetch_works=False)
    result = run(
        action,
        task,
        {"instance": "cap", "duration": 1, "dest": str(tmp_path / "t"), "run_id": "r1", "transfer": "fetch"},
    )
    assert result["failed"] and "Permission denied" in result["msg"]
    assert "nothing was kept for web01" in result["msg"]
    assert not (tmp_path / "t").exists()


def test_damaged_transfer_keeps_nothing(remote, tmp_path):
    remote.write_bytes(remote.read_bytes()[:-100])  # a truncated gzip member
    module = module_result(remote)
    action, task = make_action(remote, module=module)
    result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "t"), "run_id": "r1"})
    assert result["failed"] and "nothing was kept" in result["msg"]
    assert not (tmp_path / "t").exists()


def test_failed_module_keeps_nothing(remote, tmp_path):
    action, task = make_action(remote, module={"failed": True, "msg": "instance='x' does not exist"})
    result = run(action, task, {"instance": "x", "duration": 1, "dest": str(tmp_path / "t"), "run_id": "r1"})
    assert result["failed"] and result["msg"] == "instance='x' does not exist"
    assert not (tmp_path / "t").exists()
    action._remove_tmp_path.assert_called_once()


def test_default_run_id_is_shared_by_the_play(remote, tmp_path):
    ids = set()
    for host in ("web01", "web02"):
        action, task = make_action(remote)
        result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "t")}, host=host)
        ids.add(result["run_id"])
    assert len(ids) == 1
    (run_id,) = ids
    assert sorted(os.listdir(tmp_path / "t" / run_id)) == [
        ".manifest.lock",
        ".records",
        "manifest.json",
        "web01",
        "web02",
    ]


def test_check_mode_and_started_fetch_nothing(remote, tmp_path):
    action, task = make_action(remote)
    task.check_mode = True
    result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "t")})
    assert result["skipped"] and not (tmp_path / "t").exists()
    started = "2026-11-27T03:15:02.000000Z"
    action, task = make_action(remote, module={"changed": True, "started": started, "kernel": "6.1.0"})
    result = run(action, task, {"instance": "cap", "state": "started", "dest": str(tmp_path / "t")})
    assert result["started"] == started and not (tmp_path / "t").exists()
    action._make_tmp_path.assert_not_called()


def test_the_action_imports_nothing_from_the_modules():
    plugin = importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.action.trace_capture")
    with open(plugin.__file__, encoding="utf-8") as handle:
        assert "plugins.modules" not in handle.read()


def test_internal_options_are_not_the_task_s(remote, tmp_path):
    action, task = make_action(remote)
    with pytest.raises(Exception, match="work_dir"):
        run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "t"), "work_dir": "/tmp"})
    action._execute_module.assert_not_called()


def test_bad_run_id_is_refused_before_the_host_is_touched(remote, tmp_path):
    action, task = make_action(remote)
    result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "t"), "run_id": "../x"})
    assert result["failed"] and "run_id='../x'" in result["msg"]
    action._execute_module.assert_not_called()


def _controller_cases():
    return bad_input_cases.load("controller")["bad_input_cases_controller"]


@pytest.mark.parametrize("case", _controller_cases(), ids=lambda case: case["name"])
def test_bad_input_cases_fail_before_the_module_runs(remote, tmp_path, case):
    """The molecule bad-input suite's controller cases, on the action: refused with their
    message before the host is asked for anything, and nothing written (#12.8)."""
    if not os.path.isfile("/etc/hostname") and "hostname" in str(case["args"].get("dest")):
        pytest.skip("no /etc/hostname here")
    action, task = make_action(remote)
    args = dict(case["args"])
    args.setdefault("dest", str(tmp_path / "traces"))
    result = run(action, task, args)
    assert result["failed"] and re.search(case["msg"], result["msg"]), result["msg"]
    action._execute_module.assert_not_called()
    action._make_tmp_path.assert_not_called()
    assert not (tmp_path / "traces").exists()


def v7_result(path, **changes):
    data = path.read_bytes()
    result = dict(
        module_result(path),
        compress="zstd",
        bytes=len(data),
        raw_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        file_version=7,
        clock_anchor={
            "wall": 1.5,
            "trace": 2.0,
            "clock": "local",
            "wall_ns": 1_500_000_000,
            "trace_ns": 2_000_000_000,
            "uncertainty_ns": 2100,
        },
        excluded_pids=[4242, 4240],
    )
    result.update(changes)
    return result


def test_a_version_7_file_is_stored_as_it_travelled(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    path = remote / "trace.dat"
    path.write_bytes(b"\x17\x08\x44tracing7\0" + PAYLOAD[:100000])
    action, task = make_action(path, module=v7_result(path))
    result = run(
        action,
        task,
        {"instance": "cap", "duration": 1, "dest": str(tmp_path / "traces"), "run_id": "r1", "file_version": 7},
    )
    assert not result.get("failed"), result
    stored = tmp_path / "traces" / "r1" / "web01" / "trace.dat"
    assert stored.read_bytes() == path.read_bytes()
    assert result["stored_bytes"] == result["bytes"] == path.stat().st_size
    # The module was asked for the compression inside the file, not how it travels.
    assert action._execute_module.call_args.kwargs["module_args"]["compress"] == "auto"
    manifest = json.loads((tmp_path / "traces" / "r1" / "manifest.json").read_text())
    (capture,) = manifest["hosts"]["web01"]["captures"]
    assert capture["clock_anchor"]["uncertainty_ns"] == 2100 and capture["file_version"] == 7
    assert capture["excluded_pids"] == [4242, 4240]


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(sha256=None), "sha256=None: a capture stored as it travels comes with its sha256"),
        (dict(raw_bytes=5), "raw_bytes=5: not bytes="),
        (dict(compress="gzip"), "compress='gzip': not one of zlib, zstd"),
        (dict(file_version=6), "file_version=6: expected 7"),
        (dict(clock_anchor={"wall_ns": -1}), r"clock_anchor.wall_ns=-1: out of range"),
        (dict(enabled_events=["sched:sched_switch"]), "not an event as system/name"),
    ],
)
def test_a_version_7_result_is_checked(tmp_path, changes, message):
    remote = tmp_path / "remote"
    remote.mkdir()
    path = remote / "trace.dat"
    path.write_bytes(PAYLOAD[:1000])
    action, task = make_action(path, module=v7_result(path, **changes))
    result = run(action, task, {"instance": "cap", "duration": 1, "dest": str(tmp_path / "traces"), "file_version": 7})
    assert result["failed"] and message in result["msg"], result["msg"]
    assert not (tmp_path / "traces").exists()
