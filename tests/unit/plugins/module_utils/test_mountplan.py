from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _mount_syscalls
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import (
    parse_mountinfo,
    parse_mountinfo_line,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountplan import (
    Action,
    Facts,
    Plan,
    Policy,
    PolicyError,
    apply_plan,
    flag_drift,
    plan,
)

MODERN = {"tracefs": False, "debugfs": False, "sysfs": False}
PRE_4_1 = {"debugfs": False, "sysfs": False}  # no tracefs filesystem at all
DEFAULT_OPTIONS = ["nosuid", "nodev", "noexec"]
SYSTEMD_TRACEFS = "37 21 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime - tracefs tracefs rw\n"


class FakeTree:
    """A fake root filesystem under tmp_path; absolute paths are mapped into it."""

    def __init__(self, root, dirs=(), owners=None):
        self.root = root
        for directory in dirs:
            os.makedirs(self.real(directory), exist_ok=True)
        self.owners = owners or {}
        self.listed = []

    def real(self, path):
        return os.path.join(str(self.root), path.lstrip("/"))

    def is_dir(self, path):
        return os.path.isdir(self.real(path))

    def exists(self, path):
        return os.path.lexists(self.real(path))

    def owner(self, path):
        return self.owners.get(path, (0, 0o700))

    def listdir(self, path):
        self.listed.append(path)
        return os.listdir(self.real(path))


def facts_for(tree, mountinfo="", filesystems=None, debugfs_allowed=True, reason="debugfs mounting is allowed"):
    return Facts(
        parse_mountinfo(mountinfo),
        filesystems or MODERN,
        debugfs_allowed,
        reason,
        is_dir=tree.is_dir,
        exists=tree.exists,
        owner=tree.owner,
        listdir=tree.listdir,
    )


def policy(**kwargs):
    values = dict(
        state="mounted", path="/sys/kernel/tracing", options=DEFAULT_OPTIONS, gid=None, mode=None, legacy_debugfs=False
    )
    values.update(kwargs)
    return Policy(**values)


@pytest.fixture
def modern(tmp_path):
    return FakeTree(tmp_path, dirs=["/sys/kernel/tracing", "/sys/kernel/debug"])


def test_mount_when_not_mounted(modern):
    result = plan(policy(gid=100, mode=0o750), facts_for(modern))
    assert [a.kind for a in result.actions] == ["mount"]
    action = result.actions[0]
    assert action.fstype == "tracefs" and action.target == "/sys/kernel/tracing"
    assert action.flags == _mount_syscalls.MS_NOSUID | _mount_syscalls.MS_NODEV | _mount_syscalls.MS_NOEXEC
    assert action.data == "gid=100,mode=750"
    assert result.before == {"mounted": False}
    assert result.after["mounted"] and result.after["gid"] == 100 and result.after["mode"] == "0750"
    assert result.via == "tracefs" and result.tracing_path == "/sys/kernel/tracing"


def test_matching_systemd_mount_is_not_a_change(modern):
    result = plan(policy(), facts_for(modern, SYSTEMD_TRACEFS))
    assert not result.changed
    assert result.before == result.after


def test_drifted_flags_and_owner_remount_restating_unmanaged_values(modern):
    modern.owners["/sys/kernel/tracing"] = (100, 0o755)
    mountinfo = "37 21 0:12 / /sys/kernel/tracing rw,nosuid,nodev,relatime - tracefs tracefs rw,gid=100,mode=755\n"
    result = plan(policy(mode=0o750), facts_for(modern, mountinfo))
    assert [a.kind for a in result.actions] == ["remount"]
    action = result.actions[0]
    assert action.data == "gid=100,mode=750"  # gid kept, mode corrected
    assert "+noexec" in action.reason and "mode 0755 -> 0750" in action.reason
    assert result.before["mode"] == "0755" and result.after["mode"] == "0750"


def test_gid_drift_alone(modern):
    result = plan(policy(gid=100), facts_for(modern, SYSTEMD_TRACEFS))
    assert result.actions[0].kind == "remount"
    assert result.actions[0].data == "gid=100,mode=700"


def test_missing_mount_point_is_created(tmp_path):
    tree = FakeTree(tmp_path, dirs=["/sys/kernel/tracing"])
    result = plan(policy(path="/mnt/trace"), facts_for(tree))
    assert [a.kind for a in result.actions] == ["mkdir", "mount"]


def test_path_that_is_a_file_is_refused(modern, tmp_path):
    os.makedirs(modern.real("/etc"))
    with open(modern.real("/etc/hostname"), "w") as handle:
        handle.write("x")
    with pytest.raises(PolicyError, match="not a directory"):
        plan(policy(path="/etc/hostname"), facts_for(modern))


def test_other_filesystem_on_the_mount_point_is_refused(modern):
    mountinfo = "50 21 0:40 / /sys/kernel/tracing rw - tmpfs tmpfs rw\n"
    with pytest.raises(PolicyError, match="already has a tmpfs mount"):
        plan(policy(), facts_for(modern, mountinfo))


def test_unmount(modern):
    result = plan(policy(state="unmounted"), facts_for(modern, SYSTEMD_TRACEFS))
    assert [a.kind for a in result.actions] == ["umount"]
    assert plan(policy(state="unmounted"), facts_for(modern)).actions == []


@pytest.mark.parametrize(
    "wanted, options, drift",
    [
        (["nosuid", "nodev", "noexec"], "rw,nosuid,nodev,noexec,relatime", []),
        (["nosuid", "nodev", "noexec"], "rw,nosuid,relatime", ["+nodev", "+noexec"]),
        (["nosuid"], "rw,nosuid,nodev,noexec", ["-nodev", "-noexec"]),
        (["ro", "nosuid"], "rw,nosuid", ["+ro"]),
        (["nosuid", "noatime"], "rw,nosuid,relatime", ["+noatime"]),
        (["nosuid"], "rw,nosuid,noatime", []),  # atime only compared when asked for
    ],
)
def test_flag_drift(wanted, options, drift):
    entry = parse_mountinfo_line("1 1 0:1 / /t %s - tracefs tracefs rw" % options)
    assert flag_drift(wanted, entry) == drift


# Legacy kernels (< 4.1) on a fake tree: no tracefs, tracing lives in <debugfs>/tracing.


def test_legacy_kernel_without_opt_in_fails_with_hint(tmp_path):
    tree = FakeTree(tmp_path, dirs=["/sys/kernel/debug"])
    with pytest.raises(PolicyError, match="legacy_debugfs=true"):
        plan(policy(), facts_for(tree, filesystems=PRE_4_1))


def test_legacy_kernel_mounts_debugfs_when_allowed(tmp_path):
    tree = FakeTree(tmp_path, dirs=["/sys/kernel/debug"])
    result = plan(policy(legacy_debugfs=True), facts_for(tree, filesystems=PRE_4_1))
    assert result.via == "debugfs"
    assert result.mount_point == "/sys/kernel/debug"
    assert result.tracing_path == "/sys/kernel/debug/tracing"
    assert [(a.kind, a.fstype, a.target) for a in result.actions] == [("mount", "debugfs", "/sys/kernel/debug")]


def test_legacy_kernel_uses_existing_debugfs_mount(tmp_path):
    tree = FakeTree(tmp_path, dirs=["/sys/kernel/debug/tracing"])
    mountinfo = "35 21 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec - debugfs debugfs rw\n"
    result = plan(policy(legacy_debugfs=True), facts_for(tree, mountinfo, PRE_4_1))
    assert not result.changed
    assert result.tracing_path == "/sys/kernel/debug/tracing"


def test_legacy_kernel_with_debugfs_disallowed_fails(tmp_path):
    tree = FakeTree(tmp_path)  # debugfs=off: no /sys/kernel/debug
    with pytest.raises(PolicyError) as failure:
        plan(
            policy(legacy_debugfs=True),
            facts_for(
                tree,
                filesystems={"sysfs": False},
                debugfs_allowed=False,
                reason="debugfs=off on the kernel command line",
            ),
        )
    message = str(failure.value)
    assert "debugfs may not be mounted" in message
    assert "debugfs=off on the kernel command line" in message


def test_modern_kernel_missing_mount_point_counts_as_legacy(tmp_path):
    tree = FakeTree(tmp_path, dirs=["/sys/kernel/debug"])  # no /sys/kernel/tracing
    with pytest.raises(PolicyError, match="/sys/kernel/tracing does not exist"):
        plan(policy(), facts_for(tree))


def test_modern_kernel_never_uses_debugfs_even_with_opt_in(modern):
    result = plan(policy(legacy_debugfs=True), facts_for(modern))
    assert result.via == "tracefs"


def test_apply_plan_calls_the_syscalls_in_order(modern, monkeypatch):
    calls = []
    monkeypatch.setattr(_mount_syscalls, "mount", lambda *args: calls.append(("mount",) + args))
    monkeypatch.setattr(_mount_syscalls, "remount", lambda *args: calls.append(("remount",) + args))
    monkeypatch.setattr(_mount_syscalls, "umount", lambda *args: calls.append(("umount",) + args))
    result = plan(policy(gid=5), facts_for(modern))
    done = apply_plan(result)
    assert calls == [
        (
            "mount",
            "tracefs",
            "/sys/kernel/tracing",
            "tracefs",
            _mount_syscalls.MS_NOSUID | _mount_syscalls.MS_NODEV | _mount_syscalls.MS_NOEXEC,
            "gid=5",
        )
    ]
    assert done == ["mount tracefs on /sys/kernel/tracing (gid=5)"]


@pytest.mark.parametrize(
    "options, error",
    [
        (["bogus"], "unsupported mount option 'bogus'"),
        (["mode=0755"], "belongs in the mode option"),
        (["noatime", "relatime"], "at most one of"),
        (["ro", "rw"], "contradict"),
        (["nosuid", "suid"], "'nosuid' and 'suid' contradict each other"),
        (["nodev,dev"], "'nodev' and 'dev' contradict each other"),
        (["noexec", "exec"], "contradict"),
        (["nosuid\n"], "unsupported mount option 'nosuid\\\\n'"),  # no newline stripped
        (["\tnosuid"], "unsupported mount option"),
        ([""], "unsupported mount option ''"),
        (["nosuid,"], "unsupported mount option ''"),
        (["gid=0"], "belongs in the gid option"),
        (["uid=0,nosuid"], "belongs in the uid option"),
        (["size=1M"], "unsupported mount option 'size=1M'"),
    ],
)
def test_split_options_rejects(options, error):
    with pytest.raises(_mount_syscalls.OptionError, match=error):
        _mount_syscalls.split_options(options)


def test_split_options_normalises():
    assert _mount_syscalls.split_options([" nosuid", "nodev", "nosuid", "rw"]) == ["nosuid", "nodev", "rw"]
    assert _mount_syscalls.split_options(["nosuid, nodev", "noexec"]) == ["nosuid", "nodev", "noexec"]


# -- #12.14: never mount over a populated directory


@pytest.mark.parametrize("path", ["/etc", "/sys/kernel", "/srv/data"])
def test_a_populated_directory_is_refused(modern, path):
    for name in ("a", "b", "c", "d"):
        os.makedirs(modern.real(path + "/" + name), exist_ok=True)
    with pytest.raises(PolicyError) as error:
        plan(policy(path=path), facts_for(modern))
    assert str(error.value).startswith("%s is not empty (" % path)
    assert "mounting tracefs there would hide them" in str(error.value)


def test_the_message_names_a_few_entries(modern):
    os.makedirs(modern.real("/srv/x/passwd"))
    with pytest.raises(PolicyError, match=r"^/srv/x is not empty \(1 entry: passwd\)"):
        plan(policy(path="/srv/x"), facts_for(modern))


def test_an_empty_directory_or_a_new_path_is_fine(modern):
    os.makedirs(modern.real("/mnt/empty"))
    assert [a.kind for a in plan(policy(path="/mnt/empty"), facts_for(modern)).actions] == ["mount"]
    assert [a.kind for a in plan(policy(path="/mnt/new"), facts_for(modern)).actions] == ["mkdir", "mount"]


def test_the_kernels_own_mount_points_are_not_listed(modern):
    """/sys/kernel/debug/tracing is an automount: listing it would mount tracefs."""
    plan(policy(), facts_for(modern))
    assert modern.listed == []


def test_a_populated_tracefs_mount_is_not_refused(modern, tmp_path):
    tree = FakeTree(tmp_path, dirs=["/sys/kernel/tracing", "/srv/trace/events"])
    mountinfo = "37 21 0:12 / /srv/trace rw,nosuid,nodev,noexec,relatime - tracefs tracefs rw\n"
    assert plan(policy(path="/srv/trace"), facts_for(tree, mountinfo)).actions == []
    assert plan(policy(path="/srv/trace", state="unmounted"), facts_for(tree, mountinfo)).actions[0].kind == "umount"


def test_unmounting_a_populated_directory_is_a_no_op(modern):
    os.makedirs(modern.real("/etc/x"))
    assert plan(policy(path="/etc", state="unmounted"), facts_for(modern)).actions == []


def test_unmounting_another_filesystem_is_refused(modern):
    mountinfo = "50 21 0:40 / /srv rw - ext4 /dev/sdb1 rw\n"
    with pytest.raises(PolicyError, match="^/srv is a ext4 mount, not tracefs; not unmounting it"):
        plan(policy(path="/srv", state="unmounted"), facts_for(modern, mountinfo))


# -- #12.11: a failed mount leaves no directory behind


def test_a_refused_mount_removes_the_directories_it_created(tmp_path, monkeypatch):
    def refuse(*args):
        raise _mount_syscalls.MountError("mount -t tracefs", args[1], 16)

    monkeypatch.setattr(_mount_syscalls, "mount", refuse)
    (tmp_path / "mnt").mkdir()
    target = str(tmp_path / "mnt" / "a" / "b")
    result = Plan("tracefs", target, target)
    result.actions = [Action("mkdir", target), Action("mount", target, "tracefs")]
    with pytest.raises(_mount_syscalls.MountError):
        apply_plan(result)
    assert os.listdir(tmp_path / "mnt") == []


def test_a_made_mount_keeps_its_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(_mount_syscalls, "mount", lambda *args: None)
    target = str(tmp_path / "a" / "b")
    result = Plan("tracefs", target, target)
    result.actions = [Action("mkdir", target), Action("mount", target, "tracefs")]
    assert apply_plan(result) == ["create directory %s" % target, "mount tracefs on %s" % target]
    assert os.path.isdir(target)


def test_a_failed_rmdir_does_not_hide_the_mount_error(tmp_path, monkeypatch):
    def refuse(*args):
        raise _mount_syscalls.MountError("mount -t tracefs", args[1], 16)

    def rmdir_fails(path):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(_mount_syscalls, "mount", refuse)
    monkeypatch.setattr(os, "rmdir", rmdir_fails)
    target = str(tmp_path / "a")
    result = Plan("tracefs", target, target)
    result.actions = [Action("mkdir", target), Action("mount", target, "tracefs")]
    with pytest.raises(_mount_syscalls.MountError, match="Device or resource busy"):
        apply_plan(result)


# -- debugfs: unmounted

SYSFS = "21 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw\n"
DEBUGFS = "38 21 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime - debugfs debugfs rw\n"
AUTOMOUNT = "90 38 0:12 / /sys/kernel/debug/tracing rw,nosuid,nodev,noexec,relatime - tracefs tracefs rw\n"
# debugfs mounted a second time over the first, and once more in a chroot.
STACKED = "91 38 0:7 / /sys/kernel/debug rw,relatime - debugfs debugfs rw\n"
CHROOT = "95 21 0:7 / /srv/jail/sys/kernel/debug rw,relatime - debugfs debugfs rw\n"


def umounts(result):
    return [(action.kind, action.target, action.fstype, action.reason) for action in result.actions]


@pytest.mark.parametrize(
    "mountinfo, expected",
    [
        ("", []),
        (SYSFS + SYSTEMD_TRACEFS, []),
        (SYSFS + DEBUGFS, [("umount", "/sys/kernel/debug", "debugfs", "debugfs=unmounted")]),
        (
            SYSFS + DEBUGFS + AUTOMOUNT,
            [
                ("umount", "/sys/kernel/debug/tracing", "tracefs", "inside debugfs at /sys/kernel/debug"),
                ("umount", "/sys/kernel/debug", "debugfs", "debugfs=unmounted"),
            ],
        ),
        (
            SYSFS + DEBUGFS + AUTOMOUNT + STACKED + CHROOT,
            [
                ("umount", "/sys/kernel/debug", "debugfs", "debugfs=unmounted"),  # the one on top
                ("umount", "/sys/kernel/debug/tracing", "tracefs", "inside debugfs at /sys/kernel/debug"),
                ("umount", "/sys/kernel/debug", "debugfs", "debugfs=unmounted"),
                ("umount", "/srv/jail/sys/kernel/debug", "debugfs", "debugfs=unmounted"),
            ],
        ),
    ],
)
def test_debugfs_unmounted_plans_innermost_first(modern, mountinfo, expected):
    result = plan(policy(debugfs="unmounted"), facts_for(modern, SYSTEMD_TRACEFS + mountinfo))
    assert umounts(result) == expected
    outermost = sorted({target for _kind, target, fstype, _reason in expected if fstype == "debugfs"})
    assert sorted(result.debugfs_mount_points) == outermost
    assert result.before["debugfs"] == {"mounted": result.debugfs_mount_points}
    assert result.after["debugfs"] == {"mounted": []}
    assert result.changed == bool(expected)


def test_debugfs_unmounts_come_before_the_tracefs_work(modern):
    result = plan(policy(debugfs="unmounted", mode=0o750), facts_for(modern, SYSFS + DEBUGFS + SYSTEMD_TRACEFS))
    assert [action.kind for action in result.actions] == ["umount", "remount"]
    assert result.before["mounted"] is True and "debugfs" in result.before


def test_debugfs_unmanaged_plans_nothing_for_debugfs(modern):
    result = plan(policy(), facts_for(modern, SYSFS + DEBUGFS + AUTOMOUNT + SYSTEMD_TRACEFS))
    assert result.actions == [] and "debugfs" not in result.before


def test_force_marks_the_debugfs_unmounts_for_detaching(modern):
    result = plan(policy(debugfs="unmounted", debugfs_force=True), facts_for(modern, SYSFS + DEBUGFS + AUTOMOUNT))
    assert [action.detach_if_busy for action in result.actions if action.kind == "umount"] == [True, True]


@pytest.mark.parametrize(
    "path, message",
    [
        ("/sys/kernel/debug/tracing", "path=/sys/kernel/debug/tracing lies inside debugfs (/sys/kernel/debug/tracing)"),
        ("/sys/kernel/debug", "path=/sys/kernel/debug lies inside debugfs"),
        ("/srv/jail/sys/kernel/debug/t", "lies inside debugfs (/srv/jail/sys/kernel/debug)"),
    ],
)
def test_a_tracefs_path_inside_debugfs_is_refused(modern, path, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(policy(debugfs="unmounted", path=path), facts_for(modern, SYSFS + DEBUGFS + AUTOMOUNT + CHROOT))


def test_legacy_debugfs_contradicts_debugfs_unmounted(tmp_path):
    tree = FakeTree(tmp_path, dirs=["/sys/kernel/debug"])
    with pytest.raises(PolicyError, match="debugfs=unmounted contradicts legacy_debugfs=true"):
        plan(policy(debugfs="unmounted", legacy_debugfs=True), facts_for(tree, SYSFS + DEBUGFS, PRE_4_1))


class Busy:
    def __init__(self, busy):
        self.busy = busy
        self.calls = []

    def umount(self, target, detach=False):
        self.calls.append((target, detach))
        if target in self.busy and not detach:
            raise _mount_syscalls.MountError("umount", target, errno.EBUSY)


@pytest.mark.parametrize("force", [False, True])
def test_a_busy_unmount_detaches_only_when_forced(modern, monkeypatch, force):
    kernel = Busy({"/sys/kernel/debug"})
    monkeypatch.setattr(_mount_syscalls, "umount", kernel.umount)
    result = plan(
        policy(debugfs="unmounted", debugfs_force=force), facts_for(modern, SYSFS + DEBUGFS + SYSTEMD_TRACEFS)
    )
    if not force:
        with pytest.raises(_mount_syscalls.MountError) as error:
            apply_plan(result)
        assert error.value.errno == errno.EBUSY and kernel.calls == [("/sys/kernel/debug", False)]
        return
    assert apply_plan(result) == ["detach /sys/kernel/debug lazily, it is busy: debugfs=unmounted"]
    assert kernel.calls == [("/sys/kernel/debug", False), ("/sys/kernel/debug", True)]


def test_other_errors_are_never_detached(modern, monkeypatch):
    def refuse(target, detach=False):
        raise _mount_syscalls.MountError("umount", target, errno.EPERM)

    monkeypatch.setattr(_mount_syscalls, "umount", refuse)
    result = plan(policy(debugfs="unmounted", debugfs_force=True), facts_for(modern, SYSFS + DEBUGFS + SYSTEMD_TRACEFS))
    with pytest.raises(_mount_syscalls.MountError, match="needs root"):
        apply_plan(result)
