from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _mounts
from ansible_collections.tracefleet.ftrace.plugins.modules import tracefs_info


def run_module(capsys, args=None) -> dict:
    with patch_module_args(args or {}):
        with pytest.raises(SystemExit):
            tracefs_info.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def fake_proc(tmp_path, monkeypatch):
    """Point the module at a fake /proc/self/mountinfo and /proc/filesystems."""
    mountinfo = tmp_path / "mountinfo"
    filesystems = tmp_path / "filesystems"
    filesystems.write_text("nodev\tsysfs\nnodev\ttracefs\nnodev\tdebugfs\n")
    monkeypatch.setattr(tracefs_info, "read_mountinfo",
                        lambda: _mounts.read_mountinfo(str(mountinfo)))
    monkeypatch.setattr(tracefs_info, "read_filesystems",
                        lambda: _mounts.read_filesystems(str(filesystems)))
    return mountinfo


def test_reports_mounts_and_never_changes(capsys, fake_proc):
    fake_proc.write_text(
        "37 21 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec shared:17 - tracefs tracefs rw\n"
    )
    result = run_module(capsys)
    assert result["changed"] is False
    assert result["tracefs"]["mounted"] is True
    assert result["tracefs"]["path"] == "/sys/kernel/tracing"
    assert result["debugfs"]["registered"] is True
    assert result["debugfs"]["mounted"] is False


def test_check_mode_same_answer(capsys, fake_proc):
    fake_proc.write_text("")
    normal = run_module(capsys)
    checked = run_module(capsys, {"_ansible_check_mode": True})
    assert normal["tracefs"] == checked["tracefs"] and checked["changed"] is False


def test_unreadable_mount_table_fails_cleanly(capsys, fake_proc):
    fake_proc.write_text("garbage line without separator\n")
    result = run_module(capsys)
    assert result["failed"] is True
    assert "mount table" in result["msg"]


def test_unknown_option_rejected(capsys, fake_proc):
    fake_proc.write_text("")
    result = run_module(capsys, {"bogus": 1})
    assert result["failed"] is True and "bogus" in result["msg"]
