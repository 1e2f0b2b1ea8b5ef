from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _locate
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import (
    debugfs_state,
    tracefs_state,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import parse_mountinfo

FILESYSTEMS = {"tracefs": False, "debugfs": False, "sysfs": False}


def test_not_mounted():
    state = tracefs_state([], FILESYSTEMS)
    assert state == {
        "registered": True,
        "mounted": False,
        "path": None,
        "options": [],
        "super_options": [],
        "mountpoints": [],
    }


def test_not_registered():
    assert tracefs_state([], {"sysfs": False})["registered"] is False


def test_prefers_sys_kernel_tracing_over_earlier_mounts():
    mounts = parse_mountinfo(
        "40 26 0:12 / /mnt/first rw,relatime - tracefs nodev rw\n"
        "41 21 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec - tracefs nodev rw,gid=5\n"
    )
    state = tracefs_state(mounts, FILESYSTEMS)
    assert state["path"] == "/sys/kernel/tracing"
    assert state["options"] == ["rw", "nosuid", "nodev", "noexec"]
    assert state["super_options"] == ["rw", "gid=5"]
    assert [m["mount_point"] for m in state["mountpoints"]] == ["/mnt/first", "/sys/kernel/tracing"]


def test_falls_back_to_first_mount():
    mounts = parse_mountinfo("40 26 0:12 / /mnt/first rw - tracefs nodev rw\n")
    assert tracefs_state(mounts, FILESYSTEMS)["path"] == "/mnt/first"


def test_debugfs_off_host():
    state = debugfs_state([], {"tracefs": False}, mount_point_exists=False)
    assert state == {"registered": False, "mounted": False, "mount_point_exists": False, "mountpoints": []}


def test_debugfs_mounted():
    mounts = parse_mountinfo("35 21 0:7 / /sys/kernel/debug rw,nosuid - debugfs debugfs rw\n")
    state = debugfs_state(mounts, FILESYSTEMS, mount_point_exists=True)
    assert state["mounted"] and state["mountpoints"][0]["mount_point"] == "/sys/kernel/debug"


def test_read_host_names_what_it_could_not_read(fake_host, monkeypatch):
    host = _locate.Host
    monkeypatch.setattr(_locate, "Host", lambda: host(str(fake_host.root)))
    assert _locate.read_host().filesystems["tracefs"] is False
    fake_host.mountinfo("garbage\n")
    with pytest.raises(_locate.HostFactsError, match="^cannot read the kernel's mount table: no '-' separator"):
        _locate.read_host("mount table")
    (fake_host.root / "proc/self/mountinfo").unlink()
    with pytest.raises(_locate.HostFactsError, match="^cannot read the kernel's mount facts: .*No such file"):
        _locate.read_host()
