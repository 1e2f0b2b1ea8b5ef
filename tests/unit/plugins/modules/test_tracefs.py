from __future__ import annotations

import errno
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import (
    _atomicfile,
    _fstab,
    _ledger,
    _locate,
    _mount_syscalls,
)
from ansible_collections.tracefleet.ftrace.plugins.modules import tracefs


@pytest.fixture
def kernel(fake_host, monkeypatch):
    """Fake mount syscalls that update the fake mount table like the kernel would."""
    calls = []

    def fake_mount(source, target, fstype, flags, data):
        calls.append(("mount", target, flags, data))
        options = ",".join(
            ["rw"]
            + [name for name, bit in _mount_syscalls.FLAG_OPTIONS.items() if flags & bit and name != "ro"]
            + ["relatime"]
        )
        fake_host.mount_tracefs(options=options)

    def fake_remount(target, flags, data):
        calls.append(("remount", target, flags, data))

    def fake_umount(target):
        calls.append(("umount", target))
        fake_host.mountinfo("")

    monkeypatch.setattr(_mount_syscalls, "mount", fake_mount)
    monkeypatch.setattr(_mount_syscalls, "remount", fake_remount)
    monkeypatch.setattr(_mount_syscalls, "umount", fake_umount)
    host = _locate.Host
    monkeypatch.setattr(_locate, "Host", lambda: host(str(fake_host.root)))
    return calls


@pytest.fixture
def run(capsys, tmp_path):
    def run_module(args) -> dict:
        args = dict({"ledger_path": str(tmp_path / "ledger.json")}, **args)
        with patch_module_args(args), pytest.raises(SystemExit):
            tracefs.main()
        return json.loads(capsys.readouterr().out)

    return run_module


def test_check_mode_predicts_and_does_nothing(run, kernel, fake_host):
    fake_host.tracing.mkdir()
    result = run({"path": str(fake_host.tracing), "_ansible_check_mode": True, "_ansible_diff": True})
    assert result["changed"] is True
    assert kernel == []
    assert result["actions"] == ["mount tracefs on %s" % fake_host.tracing]
    assert result["diff"]["before"] == {"mounted": False}
    assert result["diff"]["after"]["mounted"] is True
    assert result["usable"] is None


def test_apply_mounts_with_policy_flags(run, kernel, fake_host, tmp_path):
    result = run({"path": str(fake_host.tracing), "gid": 0, "mode": "0750", "session": "s1"})
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert [(e["kind"], e["path"], e["session"]) for e in ledger["entries"]] == [
        ("mount", str(fake_host.tracing), "s1")
    ]
    assert result["changed"] is True
    assert kernel == [
        (
            "mount",
            str(fake_host.tracing),
            _mount_syscalls.MS_NOSUID | _mount_syscalls.MS_NODEV | _mount_syscalls.MS_NOEXEC,
            "gid=0,mode=750",
        )
    ]
    assert result["mounted"] is True and result["usable"] is True
    assert result["via"] == "tracefs" and result["path"] == str(fake_host.tracing)
    assert "uid" not in result and "owner" not in result  # no add_path_info noise


def test_already_matching_is_not_a_change(run, kernel, fake_host):
    fake_host.mount_tracefs()
    result = run({"path": str(fake_host.tracing)})
    assert result["changed"] is False and kernel == [] and result["actions"] == []


def test_persistent_writes_fstab_atomically_with_backup(run, kernel, fake_host, tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("proc /proc proc defaults 0 0\n")
    fake_host.mount_tracefs()
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab), "backup": True, "gid": 7})
    line = "tracefs %s tracefs nosuid,nodev,noexec,gid=7 0 0" % fake_host.tracing
    assert result["changed"] is True
    assert fstab.read_text() == "proc /proc proc defaults 0 0\n" + line + "\n"
    assert result["fstab"] == line
    assert result["backup_file"].startswith(str(fstab))
    again = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert again["changed"] is True  # gid no longer in the policy: the line changes
    assert list(tmp_path.glob(".fstab.*")) == []  # no temp files left


def test_unmount_and_remove_fstab_line(run, kernel, fake_host, tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("tracefs %s tracefs nosuid 0 0\n" % fake_host.tracing)
    fake_host.mount_tracefs()
    result = run({"path": str(fake_host.tracing), "state": "unmounted", "persistent": True, "fstab": str(fstab)})
    assert result["changed"] is True and kernel == [("umount", str(fake_host.tracing))]
    assert not (tmp_path / "ledger.json").exists() or "mount" not in (tmp_path / "ledger.json").read_text()
    assert fstab.read_text() == ""
    assert result["mounted"] is False


def test_lockdown_warns_by_name(run, kernel, fake_host, monkeypatch):
    fake_host.write("proc/cmdline", "lockdown=confidentiality\n")
    fake_host.tracing.mkdir()
    # Under lockdown confidentiality the kernel mounts tracefs without any files.
    monkeypatch.setattr(_mount_syscalls, "mount", lambda *args: fake_host.mount_tracefs(files={}))
    result = run({"path": str(fake_host.tracing)})
    assert result["changed"] is True and result["mounted"] is True
    assert result["usable"] is False
    assert result["lockdown"] == "confidentiality"
    # The raw module output carries warnings as structured events (ansible-core 2.19).
    assert "kernel lockdown (confidentiality)" in json.dumps(result["warnings"])


@pytest.mark.parametrize(
    "args, message",
    [
        ({"mode": "abc"}, "mode='abc' is not an octal mode"),
        ({"mode": "0799"}, "mode='0799'"),
        ({"mode": 70000}, "mode=70000 is out of range"),
        ({"mode": True}, "mode=True"),
        ({"gid": "no-such-group-tf"}, "gid='no-such-group-tf': no such group"),
        ({"gid": ""}, "gid=''"),
        ({"options": ["nosuid", "uid=0"]}, "options=['nosuid', 'uid=0']"),
        ({"path": "relative"}, "path='relative' is not an absolute path"),
        (
            {"session": "tracefs\n"},
            "session='tracefs\\n': it holds the non-printable character '\\n' at position 7; nothing was changed",
        ),
        ({"session": "s\x1b[2J"}, "session='s\\x1b[2J': it holds the non-printable character '\\x1b'"),
    ],
)
def test_bad_input_fails_and_changes_nothing(run, kernel, fake_host, args, message):
    args = dict({"path": str(fake_host.tracing)}, **args)
    result = run(args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert kernel == []


def test_path_that_is_a_file(run, kernel, fake_host):
    target = fake_host.write("etc/hostname", "lab\n")
    result = run({"path": str(target)})
    assert result["failed"] is True
    assert result["msg"] == "path=%s: %s exists and is not a directory" % (target, target)
    assert kernel == []


def test_fstab_modes_kept_or_0644_for_a_new_one(run, kernel, fake_host, tmp_path):
    fake_host.mount_tracefs()
    new = tmp_path / "new-fstab"
    assert run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(new)})["changed"] is True
    assert oct(new.stat().st_mode & 0o7777) == oct(0o644)
    existing = tmp_path / "fstab"
    existing.write_text("proc /proc proc defaults 0 0\n")
    existing.chmod(0o600)
    run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(existing)})
    assert oct(existing.stat().st_mode & 0o7777) == oct(0o600)
    assert existing.read_text().endswith("tracefs %s tracefs nosuid,nodev,noexec 0 0\n" % fake_host.tracing)


def test_fstab_diff_and_check_mode(run, kernel, fake_host, tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("tracefs %s tracefs nosuid 0 0\n" % fake_host.tracing)
    fake_host.mount_tracefs()
    args = {"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab), "_ansible_diff": True}
    result = run(dict(args, _ansible_check_mode=True))
    line = "tracefs %s tracefs nosuid,nodev,noexec 0 0" % fake_host.tracing
    assert result["changed"] is True and result["fstab"] == line
    assert result["diff"]["before"]["fstab"] == "tracefs %s tracefs nosuid 0 0" % fake_host.tracing
    assert result["diff"]["after"]["fstab"] == line
    assert result["actions"] == ["write %s in %s" % (line, fstab)]
    assert fstab.read_text() == "tracefs %s tracefs nosuid 0 0\n" % fake_host.tracing


def test_unreadable_fstab(run, kernel, fake_host, tmp_path):
    fake_host.mount_tracefs()
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(tmp_path)})
    assert result["failed"] is True
    assert result["msg"] == "fstab=%s is not a regular file" % tmp_path
    assert kernel == []


def test_unwritable_fstab_fails_cleanly(run, kernel, fake_host, tmp_path, monkeypatch):
    def refuse(path, data, mode=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_atomicfile, "replace", refuse)
    fake_host.mount_tracefs()
    fstab = tmp_path / "fstab"
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert result["failed"] is True
    assert result["msg"] == "fstab=%s: cannot write it: [Errno 13] Permission denied" % fstab


def test_bad_ledger_fails_before_mounting(run, kernel, fake_host, tmp_path):
    (tmp_path / "ledger.json").write_text("{not json")
    fake_host.tracing.mkdir()
    result = run({"path": str(fake_host.tracing)})
    assert result["failed"] is True and "cannot read the ledger" in result["msg"]
    assert kernel == []


def test_kernel_refusal_names_path_errno_and_actions(run, kernel, fake_host, monkeypatch):
    def busy(source, target, fstype, flags, data):
        raise _mount_syscalls.MountError("mount -t %s" % fstype, target, errno.EBUSY)

    monkeypatch.setattr(_mount_syscalls, "mount", busy)
    fake_host.tracing.mkdir()
    result = run({"path": str(fake_host.tracing)})
    assert result["failed"] is True
    assert result["msg"] == (
        "path=%s: mount -t tracefs %s failed: [Errno 16] Device or resource busy "
        "(something is mounted there already, or files in it are open)" % (fake_host.tracing, fake_host.tracing)
    )
    assert result["actions"] == ["mount tracefs on %s" % fake_host.tracing]


def test_policy_refusal_reports_lockdown_and_debugfs(run, kernel, fake_host):
    fake_host.write("proc/filesystems", "nodev\tsysfs\nnodev\tdebugfs\n")  # a kernel older than 4.1
    result = run({"path": str(fake_host.tracing)})
    assert result["failed"] is True
    assert result["msg"].startswith("path=%s: tracefs cannot be mounted here" % fake_host.tracing)
    assert "legacy_debugfs=true" in result["msg"]
    assert result["lockdown"] == "unknown" and result["debugfs"]["registered"] is True
    assert kernel == []


def test_unreadable_mount_table(run, kernel, fake_host):
    fake_host.mountinfo("garbage line without separator\n")
    result = run({"path": str(fake_host.tracing)})
    assert result["failed"] is True
    assert result["msg"].startswith("cannot read the kernel's mount facts: no '-' separator")


# -- #12.14: one canonical mount point; never over a populated directory


def test_a_path_through_a_symlink_is_mounted_once_and_recorded_canonically(run, kernel, fake_host, tmp_path):
    fake_host.tracing.mkdir()
    link = tmp_path / "link"
    link.symlink_to(fake_host.tracing)
    result = run({"path": str(link)})
    assert result["changed"] is True and result["path"] == str(fake_host.tracing)
    assert [call[:2] for call in kernel] == [("mount", str(fake_host.tracing))]
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert [e["path"] for e in ledger["entries"]] == [str(fake_host.tracing)]
    again = run({"path": str(link) + "/"})
    assert again["changed"] is False and len(kernel) == 1


@pytest.mark.parametrize("populated", ["etc", "sys/kernel"])
def test_a_populated_directory_is_refused_and_nothing_changes(run, kernel, fake_host, tmp_path, populated):
    directory = tmp_path / populated
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    fstab = tmp_path / "fstab"
    fstab.write_text("proc /proc proc defaults 0 0\n")
    result = run({"path": str(directory), "persistent": True, "fstab": str(fstab)})
    assert result["failed"] is True
    assert result["msg"].startswith("path=%s: %s is not empty (" % (directory, directory))
    assert kernel == [] and not (tmp_path / "ledger.json").exists()
    assert fstab.read_text() == "proc /proc proc defaults 0 0\n" and not (tmp_path / "fstab.lock").exists()


@pytest.mark.parametrize(
    "path, message",
    [
        ("/sys/kernel/tracing/../../../etc", "contains '..'"),
        ("/mnt/trace\nx", "contains a control character"),
    ],
)
def test_bad_paths_fail_before_anything(run, kernel, fake_host, tmp_path, path, message):
    result = run({"path": path})
    assert result["failed"] is True and message in result["msg"] and "exception" not in result
    assert kernel == [] and not (tmp_path / "ledger.json").exists()


# -- #12.11: the ledger cannot be written: fail before mounting, change nothing


def test_an_unwritable_ledger_fails_before_mounting(run, kernel, fake_host, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    target = tmp_path / "mnt" / "trace"
    result = run({"path": str(target), "ledger_path": str(blocker / "ledger.json")})
    assert result["failed"] is True and "exception" not in result
    assert result["msg"].startswith("ledger_path=%s/ledger.json: cannot record" % blocker)
    assert result["msg"].endswith("; nothing was changed")
    assert kernel == [] and not (tmp_path / "mnt").exists()


def test_a_ledger_that_cannot_be_saved_fails_before_mounting(run, kernel, fake_host, tmp_path, monkeypatch):
    def read_only(self):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(_ledger.Ledger, "_save", read_only)
    fake_host.tracing.mkdir()
    result = run({"path": str(fake_host.tracing)})
    assert result["failed"] is True
    assert "[Errno 30] Read-only file system; nothing was changed" in result["msg"]
    assert kernel == []


def test_a_refused_mount_takes_its_ledger_entry_back_and_its_directory(run, kernel, fake_host, tmp_path, monkeypatch):
    def refuse(source, target, fstype, flags, data):
        raise _mount_syscalls.MountError("mount -t %s" % fstype, target, errno.EINVAL)

    monkeypatch.setattr(_mount_syscalls, "mount", refuse)
    target = tmp_path / "mnt" / "trace"
    result = run({"path": str(target), "session": "s1"})
    assert result["failed"] is True and "[Errno 22]" in result["msg"]
    assert json.loads((tmp_path / "ledger.json").read_text())["entries"] == []
    assert not (tmp_path / "mnt").exists()


def test_remount_does_not_need_the_ledger(run, kernel, fake_host, tmp_path):
    fake_host.mount_tracefs(options="rw,relatime")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = run({"path": str(fake_host.tracing), "ledger_path": str(blocker / "ledger.json")})
    assert result["changed"] is True and [call[0] for call in kernel] == ["remount"]


# -- #12.11, #12.13: the fstab: any bytes, one entry per mount point, locked, no leftovers


def test_non_utf8_fstab_in_check_mode_and_for_real(run, kernel, fake_host, tmp_path):
    fake_host.mount_tracefs()
    fstab = tmp_path / "fstab"
    raw = b"# \xe9t\xe9\nLABEL=\xff /data ext4 defaults 0 2\n"
    fstab.write_bytes(raw)
    args = {"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab), "_ansible_diff": True}
    predicted = run(dict(args, _ansible_check_mode=True))
    assert predicted["changed"] is True and fstab.read_bytes() == raw
    result = run(args)
    line = "tracefs %s tracefs nosuid,nodev,noexec 0 0\n" % fake_host.tracing
    assert result["changed"] is True and fstab.read_bytes() == raw + line.encode()
    assert run(dict(args, state="unmounted"))["changed"] is True
    assert fstab.read_bytes() == raw


def test_an_entry_with_a_trailing_slash_is_not_duplicated(run, kernel, fake_host, tmp_path):
    fake_host.mount_tracefs()
    fstab = tmp_path / "fstab"
    existing = "tracefs %s/ tracefs nosuid,nodev,noexec 0 0\n" % fake_host.tracing
    fstab.write_text(existing)
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert result["changed"] is False and fstab.read_text() == existing
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab), "gid": 7})
    assert fstab.read_text() == "tracefs %s tracefs nosuid,nodev,noexec,gid=7 0 0\n" % fake_host.tracing


def test_another_filesystems_fstab_entry_is_refused_before_mounting(run, kernel, fake_host, tmp_path):
    fake_host.tracing.mkdir()
    fstab = tmp_path / "fstab"
    existing = "/dev/sdb1 %s ext4 defaults 0 2\n" % fake_host.tracing
    fstab.write_text(existing)
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert result["failed"] is True
    assert result[
        "msg"
    ] == "fstab=%s: line 1 mounts ext4 on %s; not adding a tracefs entry for the same mount point" % (
        fstab,
        fake_host.tracing,
    )
    assert kernel == [] and fstab.read_text() == existing
    # unmounting leaves the other filesystem's line alone
    result = run({"path": str(fake_host.tracing), "state": "unmounted", "persistent": True, "fstab": str(fstab)})
    assert result["changed"] is False and fstab.read_text() == existing


def test_an_fstab_that_is_a_fifo_is_refused_without_hanging(run, kernel, fake_host, tmp_path):
    fake_host.tracing.mkdir()
    fifo = tmp_path / "fstab"
    os.mkfifo(fifo)
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fifo)})
    assert result["msg"] == "fstab=%s is not a regular file" % fifo and kernel == []


def test_an_unwritable_fstab_directory_is_refused_before_mounting(run, kernel, fake_host, tmp_path, monkeypatch):
    fake_host.tracing.mkdir()
    fstab = tmp_path / "etc" / "fstab"
    fstab.parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: False if str(path) == str(fstab.parent) else real_access(path, mode)
    )
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert result["failed"] is True and "cannot write it: %s is not writable" % fstab.parent in result["msg"]
    assert kernel == [] and os.listdir(fstab.parent) == []


def test_a_failed_fstab_write_leaves_no_temp_file_and_no_traceback(run, kernel, fake_host, tmp_path, monkeypatch):
    fake_host.mount_tracefs()
    fstab = tmp_path / "etc" / "fstab"
    fstab.parent.mkdir()
    fstab.write_text("proc /proc proc defaults 0 0\n")

    def disk_full(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert result["msg"] == "fstab=%s: cannot write it: [Errno 28] No space left on device" % fstab
    assert "exception" not in result
    assert sorted(os.listdir(fstab.parent)) == ["fstab", "fstab.lock"]
    assert fstab.read_text() == "proc /proc proc defaults 0 0\n"


def test_a_symlinked_fstab_keeps_its_link(run, kernel, fake_host, tmp_path):
    fake_host.mount_tracefs()
    target = tmp_path / "fstab.real"
    target.write_text("proc /proc proc defaults 0 0\n")
    link = tmp_path / "fstab"
    link.symlink_to(target)
    run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(link)})
    assert link.is_symlink()
    assert target.read_text().endswith("tracefs %s tracefs nosuid,nodev,noexec 0 0\n" % fake_host.tracing)


def test_the_fstab_is_read_again_under_its_lock(run, kernel, fake_host, tmp_path, monkeypatch):
    """An editor that wrote between our first read and the lock is not overwritten."""
    fake_host.mount_tracefs()
    fstab = tmp_path / "fstab"
    fstab.write_text("proc /proc proc defaults 0 0\n")
    real_locked = _fstab.locked

    def locked_after_another_edit(path, *args):
        with open(path, "a") as handle:
            handle.write("sysfs /sys sysfs defaults 0 0\n")
        return real_locked(path, *args)

    monkeypatch.setattr(_fstab, "locked", locked_after_another_edit)
    run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert fstab.read_text() == (
        "proc /proc proc defaults 0 0\nsysfs /sys sysfs defaults 0 0\n"
        "tracefs %s tracefs nosuid,nodev,noexec 0 0\n" % fake_host.tracing
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ({"gid": "\u00b2"}, "gid='\u00b2': no such group"),
        ({"gid": "0\n"}, "gid='0\\n' is neither a group name nor a number"),
        ({"gid": 4294967295}, "gid=4294967295 is out of range"),
        ({"mode": "0750\n"}, "mode='0750\\n' is not an octal mode"),
        ({"options": ["nosuid", "suid"]}, "'nosuid' and 'suid' contradict each other"),
        ({"options": ["nosuid\n"]}, "unsupported mount option 'nosuid\\n'"),
    ],
)
def test_more_bad_input_fails_cleanly(run, kernel, fake_host, tmp_path, args, message):
    result = run(dict({"path": str(fake_host.tracing)}, **args))
    assert result["failed"] is True and message in result["msg"] and "exception" not in result
    assert kernel == [] and not (tmp_path / "ledger.json").exists()


def test_a_failing_ledger_unlock_does_not_hide_the_kernels_refusal(run, kernel, fake_host, monkeypatch):
    def refuse(source, target, fstype, flags, data):
        raise _mount_syscalls.MountError("mount -t %s" % fstype, target, errno.EBUSY)

    def unlock_fails(self, *exc_info):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_mount_syscalls, "mount", refuse)
    monkeypatch.setattr(_ledger.Ledger, "__exit__", unlock_fails)
    fake_host.tracing.mkdir()
    result = run({"path": str(fake_host.tracing)})
    assert "[Errno 16] Device or resource busy" in result["msg"] and "exception" not in result


def test_an_fstab_write_failing_after_the_mount_says_what_was_done(run, kernel, fake_host, tmp_path, monkeypatch):
    fstab = tmp_path / "fstab"
    real_replace = _atomicfile.replace

    def fstab_disk_full(path, data, mode=None):
        if path == str(fstab):
            raise OSError(28, "No space left on device")
        real_replace(path, data, mode)

    monkeypatch.setattr(_atomicfile, "replace", fstab_disk_full)
    fake_host.tracing.mkdir()
    result = run({"path": str(fake_host.tracing), "persistent": True, "fstab": str(fstab)})
    assert result["msg"] == (
        "fstab=%s: cannot write it: [Errno 28] No space left on device; done: mount tracefs on %s"
        % (fstab, fake_host.tracing)
    )
    assert result["actions"] == ["mount tracefs on %s" % fake_host.tracing]
    assert [e["path"] for e in json.loads((tmp_path / "ledger.json").read_text())["entries"]] == [
        str(fake_host.tracing)
    ]
