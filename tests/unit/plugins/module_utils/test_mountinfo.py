from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import (
    MountinfoError,
    mounts_of_type,
    parse_filesystems,
    parse_mountinfo,
    parse_mountinfo_line,
    unescape,
    visible_mounts,
)

# Lines in the shape the lab kernel prints them (proc(5)).
SYSTEMD_HOST = """\
21 26 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
22 26 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
26 1 0:2 / / rw shared:1 - rootfs rootfs rw,size=742328k,nr_inodes=185582
35 21 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:15 - debugfs debugfs rw
37 21 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:17 - tracefs tracefs rw
"""


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("/mnt/trace\\040space", "/mnt/trace space"),
        ("/a\\011tab", "/a\ttab"),
        ("/new\\012line", "/new\nline"),
        ("/back\\134slash", "/back\\slash"),
        ("/plain", "/plain"),
        ("/not\\escape", "/not\\escape"),
    ],
)
def test_unescape(raw, expected):
    assert unescape(raw) == expected


def test_parse_systemd_host():
    entries = parse_mountinfo(SYSTEMD_HOST)
    assert [e.mount_point for e in entries] == ["/sys", "/proc", "/", "/sys/kernel/debug", "/sys/kernel/tracing"]
    tracing = entries[-1]
    assert tracing.fstype == "tracefs"
    assert tracing.source == "tracefs"
    assert tracing.options == ["rw", "nosuid", "nodev", "noexec", "relatime"]
    assert tracing.optional_fields == ["shared:17"]
    assert tracing.super_options == ["rw"]
    assert tracing.mount_id == 37 and tracing.parent_id == 21


@pytest.mark.parametrize(
    "optional",
    ["", "shared:1", "shared:1 master:2", "master:3 propagate_from:4 unbindable"],
)
def test_optional_fields_any_number(optional):
    middle = (" " + optional) if optional else ""
    line = "40 21 0:12 / /sys/kernel/tracing rw,relatime%s - tracefs nodev rw,gid=1001,mode=750" % middle
    entry = parse_mountinfo_line(line)
    assert entry.optional_fields == optional.split()
    assert entry.source == "nodev"
    assert entry.super_options == ["rw", "gid=1001", "mode=750"]


def test_escaped_mount_point_and_source():
    line = "41 26 0:12 / /mnt/trace\\040space rw,relatime - tracefs my\\040src rw"
    entry = parse_mountinfo_line(line)
    assert entry.mount_point == "/mnt/trace space"
    assert entry.source == "my src"


def test_several_tracefs_mounts_in_order():
    text = SYSTEMD_HOST + "41 26 0:12 / /mnt/t2 rw,relatime - tracefs nodev rw\n"
    tracefs = mounts_of_type(parse_mountinfo(text), "tracefs")
    assert [e.mount_point for e in tracefs] == ["/sys/kernel/tracing", "/mnt/t2"]


def test_overmounted_entry_is_hidden():
    text = (
        "37 21 0:12 / /sys/kernel/tracing rw - tracefs tracefs rw\n"
        "50 37 0:40 / /sys/kernel/tracing rw - tmpfs tmpfs rw\n"
    )
    entries = parse_mountinfo(text)
    assert [e.fstype for e in visible_mounts(entries)] == ["tmpfs"]
    assert mounts_of_type(entries, "tracefs") == []


def test_missing_super_options_field():
    entry = parse_mountinfo_line("41 26 0:12 / /mnt rw - tracefs nodev")
    assert entry.super_options == []


@pytest.mark.parametrize(
    "line",
    [
        "41 26 0:12 / /mnt rw tracefs nodev rw",  # no separator
        "41 26 0:12 / /mnt - tracefs nodev rw",  # separator too early
        "x 26 0:12 / /mnt rw - tracefs nodev rw",  # bad id
        "41 26 0:12 / /mnt rw -",  # nothing after separator
    ],
)
def test_malformed_lines_raise(line):
    with pytest.raises(MountinfoError):
        parse_mountinfo_line(line)


def test_blank_lines_ignored():
    assert parse_mountinfo("\n\n") == []


def test_parse_filesystems():
    text = "nodev\tsysfs\nnodev\ttracefs\n\text4\nnodev\tdebugfs\n\n"
    registered = parse_filesystems(text)
    assert registered == {"sysfs": False, "tracefs": False, "ext4": True, "debugfs": False}


def test_parse_filesystems_without_debugfs():
    registered = parse_filesystems("nodev\tsysfs\nnodev\ttracefs\n")
    assert "debugfs" not in registered and "tracefs" in registered
