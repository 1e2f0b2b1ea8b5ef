"""Keeping debugfs from coming back at boot: systemd's unit masked, fstab lines commented
out (byte for byte), and who holds a mount busy (users_of, on a fake /proc)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _debugfs_boot, _fstab
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import describe_users, users_of

UNIT = "etc/systemd/system/sys-kernel-debug.mount"


def make(root, relative, text=""):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "setup, state",
    [
        (lambda root: None, None),
        (lambda root: (root / "run/systemd/system").mkdir(parents=True), "unmasked"),
        (lambda root: make(root, "lib/systemd/system/sys-kernel-debug.mount", "[Mount]\n"), "unmasked"),
        (lambda root: make(root, "usr/lib/systemd/system/sys-kernel-debug.mount", "[Mount]\n"), "unmasked"),
        (lambda root: (make(root, UNIT).unlink(), os.symlink("/dev/null", root / UNIT)), "masked"),
        (lambda root: make(root, UNIT, ""), "masked"),  # systemd takes an empty unit file as a mask
        (lambda root: make(root, UNIT, "[Mount]\nWhat=debugfs\n"), "overridden"),
        (lambda root: (make(root, UNIT).unlink(), os.symlink("/lib/x.mount", root / UNIT)), "overridden"),
    ],
)
def test_unit_state(tmp_path, setup, state):
    setup(tmp_path)
    assert _debugfs_boot.unit_state(str(tmp_path)) == state


def test_mask_makes_the_symlink_systemctl_mask_makes(tmp_path):
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    mask = _debugfs_boot.Mask(str(tmp_path))
    assert (mask.before, mask.changed, mask.after) == ("unmasked", True, "masked")
    mask.check_writable()
    mask.apply()  # /etc/systemd/system did not exist: made
    assert os.readlink(tmp_path / UNIT) == "/dev/null"
    assert os.listdir(tmp_path / "etc/systemd/system") == ["sys-kernel-debug.mount"]  # no temp name left
    again = _debugfs_boot.Mask(str(tmp_path))
    assert (again.before, again.changed) == ("masked", False)


def test_no_mask_without_systemd(tmp_path):
    mask = _debugfs_boot.Mask(str(tmp_path))
    assert (mask.before, mask.changed, mask.after) == (None, False, None)


def test_an_admins_unit_is_not_replaced(tmp_path):
    make(tmp_path, UNIT, "[Mount]\n")
    with pytest.raises(_debugfs_boot.DebugfsBootError, match="is a unit of its own, not a mask"):
        _debugfs_boot.Mask(str(tmp_path))


def test_a_failed_mask_leaves_no_temp_file(tmp_path, monkeypatch):
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    mask = _debugfs_boot.Mask(str(tmp_path))

    def refuse(source, target):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "rename", refuse)
    with pytest.raises(_debugfs_boot.DebugfsBootError, match="cannot mask sys-kernel-debug.mount: .*Read-only"):
        mask.apply()
    assert os.listdir(tmp_path / "etc/systemd/system") == []


@pytest.mark.parametrize(
    "fstab, unit, policy, expected",
    [
        ("", None, "on", ([], True)),
        ("debugfs /sys/kernel/debug debugfs defaults 0 0\n", None, "on", (["/sys/kernel/debug"], False)),
        ("debugfs /sys/kernel/debug debugfs noauto 0 0\n", None, "on", (["/sys/kernel/debug"], True)),
        ("# tracefleet: debugfs: unmounted: debugfs /d debugfs defaults 0 0\n", None, "on", ([], True)),
        ("", "run/systemd/system/", "on", ([], False)),
        (
            "debugfs /sys/kernel/debug debugfs defaults 0 0\n",
            "run/systemd/system/",
            "off",
            (["/sys/kernel/debug"], True),
        ),
        ("", "run/systemd/system/", "no-mount", ([], True)),
    ],
)
def test_boot_facts(tmp_path, fstab, unit, policy, expected):
    make(tmp_path, "etc/fstab", fstab)
    if unit:
        (tmp_path / unit).mkdir(parents=True)
    facts = _debugfs_boot.boot_facts(str(tmp_path), policy)
    assert (facts["fstab_mount_points"], facts["kept_unmounted"]) == expected


def test_boot_facts_cannot_tell_with_an_unreadable_fstab(tmp_path):
    (tmp_path / "etc/fstab").mkdir(parents=True)  # not a regular file
    facts = _debugfs_boot.boot_facts(str(tmp_path), "on")
    assert facts == {"systemd_unit": None, "fstab_mount_points": None, "kept_unmounted": None}


# -- commenting out the fstab's debugfs lines

ORIGINAL = (
    b"# <fs> <mount point> <type> <options>\n"
    b"UUID=\xff\xfe / ext4 errors=remount-ro 0 1\r\n"
    b"  debugfs\t/sys/kernel/debug debugfs  noauto,mode=0700 0 0\n"
    b"#debugfs /old debugfs defaults 0 0\n"
    b"tracefs /sys/kernel/tracing tracefs nosuid 0 0\n"
    b"none /srv/jail/sys/kernel/debug debugfs defaults"
)


def test_comment_out_keeps_every_byte_and_round_trips():
    text = ORIGINAL.decode("utf-8", "surrogateescape")
    new, commented = _fstab.comment_out(text, "debugfs", _fstab.DEBUGFS_COMMENT)
    assert commented == [
        "  debugfs\t/sys/kernel/debug debugfs  noauto,mode=0700 0 0",
        "none /srv/jail/sys/kernel/debug debugfs defaults",
    ]
    lines = new.encode("utf-8", "surrogateescape").split(b"\n")
    assert lines[1] == b"UUID=\xff\xfe / ext4 errors=remount-ro 0 1\r"
    assert lines[2] == _fstab.DEBUGFS_COMMENT.encode() + b"  debugfs\t/sys/kernel/debug debugfs  noauto,mode=0700 0 0"
    assert lines[5] == _fstab.DEBUGFS_COMMENT.encode() + b"none /srv/jail/sys/kernel/debug debugfs defaults"
    assert _fstab.entries_of_type(new, "debugfs") == []
    # Taking the mark off gives the original file back, byte for byte.
    assert new.replace(_fstab.DEBUGFS_COMMENT, "").encode("utf-8", "surrogateescape") == ORIGINAL
    assert _fstab.comment_out(new, "debugfs", _fstab.DEBUGFS_COMMENT) == (new, [])


def test_entries_of_type_skips_comments():
    text = ORIGINAL.decode("utf-8", "surrogateescape")
    assert [entry.mount_point for entry in _fstab.entries_of_type(text, "debugfs")] == [
        "/sys/kernel/debug",
        "/srv/jail/sys/kernel/debug",
    ]


# -- who holds a mount busy


def process(proc, pid, comm, cwd="/", root="/", exe="/usr/bin/x", fds=None, maps=""):
    base = proc / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "comm").write_text(comm + "\n")
    (base / "maps").write_text(maps)
    for name, target in (("cwd", cwd), ("root", root), ("exe", exe)):
        os.symlink(target, base / name)
    for fd, target in (fds or {}).items():
        os.symlink(target, base / "fd" / str(fd))


def test_users_of_finds_cwd_fds_and_maps_like_fuser(tmp_path):
    proc = tmp_path / "proc"
    process(proc, 1, "systemd", fds={3: "/proc/1/mountinfo", 4: "socket:[123]"})
    process(proc, 812, "cat", fds={0: "/dev/null", 3: "/sys/kernel/debug/tracing/trace_pipe"})
    process(proc, 90, "bash", cwd="/sys/kernel/debug/dri")
    process(
        proc,
        1000,
        "tool\x1b[31m",
        maps="7f00-7f01 r--p 00000000 00:07 12 /sys/kernel/debug/x (deleted)\n7f02-7f03 r-xp 0 08:01 5 /usr/lib/libc.so\n",
    )
    process(proc, 77, "other", cwd="/sys/kernel/debugger")  # a sibling, not inside
    (proc / "self").mkdir()  # not a pid
    users = users_of("/sys/kernel/debug", str(proc))
    assert users == [
        {"pid": 90, "command": "bash", "uses": ["cwd /sys/kernel/debug/dri"]},
        {"pid": 812, "command": "cat", "uses": ["fd 3 /sys/kernel/debug/tracing/trace_pipe"]},
        {"pid": 1000, "command": "tool?[31m", "uses": ["mapped /sys/kernel/debug/x (deleted)"]},
    ]
    assert describe_users(users[:2]) == (
        "pid 90 (bash: cwd /sys/kernel/debug/dri), pid 812 (cat: fd 3 /sys/kernel/debug/tracing/trace_pipe)"
    )


def test_users_of_a_missing_proc_is_nobody(tmp_path):
    assert users_of("/sys/kernel/debug", str(tmp_path / "nothing")) == []
