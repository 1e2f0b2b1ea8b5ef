"""The mount policy's own pieces: validated requests and the ledger's `mount` kind
(recorded before mounting, forgotten after unmounting, undone for teardown)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _mount_syscalls, _mountpolicy
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountplan import Action, Plan

PARAMS = dict(
    state="mounted",
    path="/sys/kernel/tracing/",
    options=["nosuid", "nodev", "noexec"],
    gid="7",
    mode="0750",
    persistent=False,
    fstab="/etc/fstab",
    backup=False,
    legacy_debugfs=False,
    debugfs="unmanaged",
    debugfs_force=False,
    session="default",
    ledger_path="/nonexistent/ledger.json",
)


def test_request_normalises():
    request = _mountpolicy.Request(PARAMS)
    assert request.policy.path == os.path.realpath("/sys/kernel/tracing")
    assert (request.policy.gid, request.policy.mode) == (7, 0o750)


# -- #12.14: the mount point as the kernel will show it


def test_a_path_through_a_symlink_is_canonical(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert _mountpolicy.canonical_mount_point(str(tmp_path / "link")) == str(tmp_path / "real")
    assert _mountpolicy.canonical_mount_point(str(tmp_path / "link") + "/") == str(tmp_path / "real")
    assert _mountpolicy.canonical_mount_point(str(tmp_path / "link" / "new" / "dir")) == str(
        tmp_path / "real" / "new" / "dir"
    )
    assert _mountpolicy.canonical_mount_point(str(tmp_path) + "//real/./") == str(tmp_path / "real")


@pytest.mark.parametrize(
    "path, message",
    [
        ("relative", "path='relative' is not an absolute path"),
        ("", "path='' is not an absolute path"),
        ("./sys/kernel/tracing", "is not an absolute path"),
        ("/sys/kernel/tracing\n", "path='/sys/kernel/tracing\\n' contains a control character"),
        ("/mnt/a\nb", "contains a control character"),
        ("/mnt/a\x00b", "contains a control character"),
        ("/mnt/\x1b[31m", "contains a control character"),
        ("/sys/kernel/tracing/../..", "path='/sys/kernel/tracing/../..' contains '..'; give the mount point itself"),
        ("/mnt/../etc", "contains '..'"),
        ("/mnt/" + "x" * 256, "is longer than the kernel takes"),
        ("/mnt" + "/x" * 2100, "is longer than the kernel takes"),
    ],
)
def test_bad_paths_are_refused(path, message):
    with pytest.raises(_mountpolicy.MountPolicyError) as error:
        _mountpolicy.canonical_mount_point(path)
    assert message in str(error.value)


def test_a_dangling_symlink_is_refused(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    with pytest.raises(
        _mountpolicy.MountPolicyError, match="link' is a symlink to %s/nowhere, which does not exist" % tmp_path
    ):
        _mountpolicy.canonical_mount_point(str(tmp_path / "link"))


def test_dots_that_are_not_parent_references_are_fine():
    assert _mountpolicy.canonical_mount_point("/mnt/..trace/.x") == "/mnt/..trace/.x"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"path": "relative"}, "path='relative' is not an absolute path"),
        ({"options": ["mode=0700"]}, "options=['mode=0700']: 'mode=0700' belongs in the mode option, not in options"),
        ({"mode": "rwx"}, "mode='rwx' is not an octal mode like '0750'"),
        ({"gid": True}, "gid=True is neither a group name nor a number"),
    ],
)
def test_request_refuses(change, message):
    with pytest.raises(TracefleetError) as error:
        _mountpolicy.Request(dict(PARAMS, **change))
    assert str(error.value) == message


def plan_with(*actions):
    result = Plan("tracefs", "/sys/kernel/tracing", "/sys/kernel/tracing")
    result.actions.extend(actions)
    return result


def test_mounts_recorded_and_unmounts_forgotten(tmp_path):
    path = str(tmp_path / "ledger.json")
    with Ledger(path) as ledger:
        _mountpolicy.record_mounts(
            ledger, "s1", plan_with(Action("mkdir", "/mnt/t"), Action("mount", "/mnt/t", "tracefs"))
        )
        assert [(e["kind"], e["path"], e["fstype"], e["session"]) for e in ledger.entries] == [
            ("mount", "/mnt/t", "tracefs", "s1")
        ]
        _mountpolicy.forget_unmounts(ledger, plan_with(Action("umount", "/mnt/t", "tracefs")))
        assert ledger.entries == []
        _mountpolicy.forget_unmounts(ledger, plan_with(Action("umount", "/mnt/other", "tracefs")))  # not ours


def test_undo_mount(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(_mount_syscalls, "umount", calls.append)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("37 21 0:12 / /mnt/t rw,relatime - tracefs tracefs rw\n")
    entry = {"kind": "mount", "path": "/mnt/t", "fstype": "tracefs", "session": "s"}
    assert _mountpolicy.describe_mount(entry) == "unmount /mnt/t (tracefs)"
    assert _mountpolicy.undo_mount(entry, str(mountinfo)) is None
    assert calls == ["/mnt/t"]
    mountinfo.write_text("")
    assert _mountpolicy.undo_mount(entry, str(mountinfo)) == "/mnt/t was no longer mounted"
    debugfs = dict(entry, fstype="debugfs")  # something else mounted there now: not ours to unmount
    mountinfo.write_text("37 21 0:12 / /mnt/t rw,relatime - tracefs tracefs rw\n")
    assert _mountpolicy.undo_mount(debugfs, str(mountinfo)) == "/mnt/t was no longer mounted"
    assert calls == ["/mnt/t"]


def test_an_old_entry_through_a_symlink_is_still_undone_and_forgotten(tmp_path, monkeypatch):
    """#12.14: entries written before paths were canonical named the symlink."""
    calls = []
    monkeypatch.setattr(_mount_syscalls, "umount", calls.append)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("37 21 0:12 / %s rw,relatime - tracefs tracefs rw\n" % (tmp_path / "real"))
    entry = {"kind": "mount", "path": str(tmp_path / "link") + "/", "fstype": "tracefs", "session": "s"}
    assert _mountpolicy.undo_mount(entry, str(mountinfo)) is None
    assert calls == [str(tmp_path / "real")]
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        ledger.record("s", kind="mount", path=entry["path"], fstype="tracefs")
        _mountpolicy.forget_unmounts(ledger, plan_with(Action("umount", str(tmp_path / "real"), "tracefs")))
        assert ledger.entries == []
