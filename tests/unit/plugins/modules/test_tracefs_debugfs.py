"""tracefs with debugfs: unmounted, on a fake systemd host: debugfs (and the tracing
automount inside it) unmounted, the fstab's debugfs lines commented out byte for byte,
sys-kernel-debug.mount masked; check mode, diff, idempotence, busy refusal and force.
And debugfs: disallowed: debugfs=off on the next boot's command line (/etc/kernel/cmdline
or GRUB), reboot_required, taken back by unmounted, refusals before any change."""

from __future__ import annotations

import errno
import json
import os
import shutil

import bad_input_cases
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _fstab, _locate, _mount_syscalls
from ansible_collections.tracefleet.ftrace.plugins.modules import tracefs

DEBUGFS = "38 21 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:16 - debugfs debugfs rw\n"
AUTOMOUNT = "90 38 0:12 / /sys/kernel/debug/tracing rw,nosuid,nodev,noexec,relatime - tracefs tracefs rw\n"
FSTAB_LINE = b"debugfs\t/sys/kernel/debug  debugfs defaults 0 0"
# Someone else's lines, one of them not UTF-8, and the debugfs line last without a newline.
FSTAB = b"# /etc/fstab\nUUID=\xff\xfe / ext4 errors=remount-ro 0 1\n" + FSTAB_LINE
MASK = "etc/systemd/system/sys-kernel-debug.mount"


@pytest.fixture
def host(fake_host, tmp_path):
    """A systemd host: tracefs at fake_host.tracing, debugfs with the automount triggered."""
    fake_host.mount_tracefs()
    tracefs_line = "37 21 0:12 / %s rw,nosuid,nodev,noexec,relatime - tracefs tracefs rw\n" % fake_host.tracing
    fake_host.mountinfo(tracefs_line + DEBUGFS + AUTOMOUNT)
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    (tmp_path / "fstab").write_bytes(FSTAB)
    return fake_host


@pytest.fixture
def kernel(host, monkeypatch):
    """umount2 that takes the topmost mount at the target out of the fake mount table,
    refusing with EBUSY (unless detaching) for the targets in `busy`."""
    calls: list[tuple] = []
    busy: set[str] = set()
    mountinfo = host.root / "proc/self/mountinfo"

    def fake_umount(target, detach=False):
        calls.append(("umount", target, detach))
        if target in busy and not detach:
            raise _mount_syscalls.MountError("umount", target, errno.EBUSY)
        lines = mountinfo.read_text().splitlines(keepends=True)
        top = max(i for i, line in enumerate(lines) if line.split(" ")[4] == target)
        mountinfo.write_text("".join(lines[:top] + lines[top + 1 :]))

    def refuse(*args):
        raise AssertionError("unexpected mount call %r" % (args,))

    monkeypatch.setattr(_mount_syscalls, "umount", fake_umount)
    monkeypatch.setattr(_mount_syscalls, "mount", refuse)
    monkeypatch.setattr(_mount_syscalls, "remount", refuse)
    real_host = _locate.Host
    monkeypatch.setattr(_locate, "Host", lambda: real_host(str(host.root)))
    return calls, busy


@pytest.fixture
def run(capsys, tmp_path, host):
    def run_module(extra=None, check=False) -> dict:
        args = {
            "path": str(host.tracing),
            "debugfs": "unmounted",
            "fstab": str(tmp_path / "fstab"),
            "ledger_path": str(tmp_path / "ledger.json"),
            "_ansible_check_mode": check,
            "_ansible_diff": True,
        }
        args.update(extra or {})
        with patch_module_args(args), pytest.raises(SystemExit):
            tracefs.main()
        return json.loads(capsys.readouterr().out)

    return run_module


def planned(tmp_path):
    return [
        "unmount /sys/kernel/debug/tracing: inside debugfs at /sys/kernel/debug",
        "unmount /sys/kernel/debug: debugfs=unmounted",
        "comment out %s in %s" % (FSTAB_LINE.decode().replace("\t", "\\t"), tmp_path / "fstab"),
        "mask sys-kernel-debug.mount (%s -> /dev/null)" % (tmp_path / MASK),
    ]


def test_check_mode_predicts_and_changes_nothing(run, kernel, host, tmp_path):
    calls, _busy = kernel
    before = (host.root / "proc/self/mountinfo").read_text()
    result = run(check=True)
    assert result["changed"] is True
    assert result["actions"] == planned(tmp_path)
    assert calls == []
    assert (host.root / "proc/self/mountinfo").read_text() == before
    assert (tmp_path / "fstab").read_bytes() == FSTAB
    assert not os.path.lexists(tmp_path / MASK)
    assert result["diff"]["before"]["debugfs"] == {
        "mounted": ["/sys/kernel/debug"],
        "fstab": [_fstab.printable(FSTAB_LINE.decode("utf-8", "surrogateescape"))],
        "systemd_unit": "unmasked",
    }
    assert result["diff"]["after"]["debugfs"] == {"mounted": [], "fstab": [], "systemd_unit": "masked"}


def test_apply_unmounts_comments_out_masks_and_is_idempotent(run, kernel, host, tmp_path):
    calls, _busy = kernel
    result = run()
    assert result["changed"] is True
    assert result["actions"] == planned(tmp_path)
    # The automount inside debugfs goes first; tracefs at its own mount point stays.
    assert calls == [("umount", "/sys/kernel/debug/tracing", False), ("umount", "/sys/kernel/debug", False)]
    mountinfo = (host.root / "proc/self/mountinfo").read_text()
    assert " - debugfs " not in mountinfo and str(host.tracing) in mountinfo
    assert result["debugfs"]["mounted"] is False
    # Byte for byte: the other lines untouched, the debugfs line whole after the mark.
    assert (tmp_path / "fstab").read_bytes() == FSTAB.replace(FSTAB_LINE, _fstab.DEBUGFS_COMMENT.encode() + FSTAB_LINE)
    assert os.readlink(tmp_path / MASK) == "/dev/null"
    assert result["diff"]["after"]["debugfs"] == {"mounted": [], "fstab": [], "systemd_unit": "masked"}
    # Nothing for teardown to undo: no ledger entry remounts debugfs or unmasks the unit.
    ledger = tmp_path / "ledger.json"
    assert not ledger.exists() or json.loads(ledger.read_text())["entries"] == []

    again = run()
    assert again["changed"] is False and again["actions"] == []
    assert len(calls) == 2
    check_again = run(check=True)
    assert check_again["changed"] is False


def test_the_default_leaves_debugfs_alone(run, kernel, host, tmp_path):
    calls, _busy = kernel
    result = run({"debugfs": "unmanaged", "persistent": False})
    assert result["changed"] is False and calls == []
    assert "debugfs" not in result["diff"]["before"]
    assert (tmp_path / "fstab").read_bytes() == FSTAB
    assert not os.path.lexists(tmp_path / MASK)


def test_backup_is_kept_for_the_debugfs_lines(run, kernel, host, tmp_path):
    result = run({"backup": True})
    assert open(result["backup_file"], "rb").read() == FSTAB


def busy_process(host, pid="812", command="cat\n", target="/sys/kernel/debug/tracing/trace_pipe"):
    proc = host.root / "proc" / pid
    (proc / "fd").mkdir(parents=True)
    (proc / "comm").write_text(command)
    os.symlink(target, proc / "fd" / "3")
    os.symlink("/root", proc / "cwd")


def test_a_busy_debugfs_is_refused_by_pid_and_command_before_anything(run, kernel, host, tmp_path):
    calls, _busy = kernel
    busy_process(host)
    for check in (True, False):
        result = run(check=check)
        assert result["failed"] is True
        assert (
            "debugfs at /sys/kernel/debug is in use by pid 812 (cat: fd 3 /sys/kernel/debug/tracing/trace_pipe)"
            in result["msg"]
        )
        assert "debugfs_force=true" in result["msg"] and "nothing was changed" in result["msg"]
        assert result["users"] == [
            {"pid": 812, "command": "cat", "uses": ["fd 3 /sys/kernel/debug/tracing/trace_pipe"]}
        ]
    assert calls == []
    assert (tmp_path / "fstab").read_bytes() == FSTAB
    assert not os.path.lexists(tmp_path / MASK)


def test_force_detaches_a_busy_debugfs_lazily_and_warns(run, kernel, host, tmp_path):
    calls, busy = kernel
    busy_process(host)
    busy.add("/sys/kernel/debug/tracing")
    result = run({"debugfs_force": True})
    assert result["changed"] is True
    assert calls == [
        ("umount", "/sys/kernel/debug/tracing", False),
        ("umount", "/sys/kernel/debug/tracing", True),
        ("umount", "/sys/kernel/debug", False),
    ]
    assert (
        result["actions"][0]
        == "detach /sys/kernel/debug/tracing lazily, it is busy: inside debugfs at /sys/kernel/debug"
    )
    warnings = json.dumps(result["warnings"])  # structured events (ansible-core 2.19)
    assert "in use by pid 812 (cat: fd 3" in warnings and "detached lazily" in warnings


def test_busy_at_unmount_time_names_what_it_can(run, kernel, host, tmp_path):
    calls, busy = kernel
    busy.add("/sys/kernel/debug")
    result = run()
    assert result["failed"] is True
    assert result["msg"].startswith("debugfs=unmounted: umount /sys/kernel/debug failed: [Errno %d]" % errno.EBUSY)
    assert "no process on this host holds it" in result["msg"]
    assert "debugfs_force=true" in result["msg"]
    assert (tmp_path / "fstab").read_bytes() == FSTAB  # the fstab and the mask come after the unmounts
    assert not os.path.lexists(tmp_path / MASK)


def test_no_mask_where_systemd_would_not_mount_debugfs(run, kernel, host, tmp_path):
    (tmp_path / "run/systemd/system").rmdir()
    result = run()
    assert result["changed"] is True
    assert not any(action.startswith("mask") for action in result["actions"])
    assert not os.path.lexists(tmp_path / MASK)
    assert result["diff"]["after"]["debugfs"]["systemd_unit"] is None


def test_an_admins_own_unit_file_is_refused_before_anything(run, kernel, host, tmp_path):
    calls, _busy = kernel
    (tmp_path / MASK).parent.mkdir(parents=True)
    (tmp_path / MASK).write_text("[Mount]\nWhat=debugfs\n")
    result = run()
    assert result["failed"] is True
    assert "is a unit of its own, not a mask; not replacing it" in result["msg"]
    assert calls == [] and (tmp_path / "fstab").read_bytes() == FSTAB


def test_an_unwritable_unit_directory_is_refused_before_anything(run, kernel, host, tmp_path, monkeypatch):
    calls, _busy = kernel
    real_access = os.access
    unit_dir = str(tmp_path / "etc")
    monkeypatch.setattr(os, "access", lambda path, mode: False if path == unit_dir else real_access(path, mode))
    (tmp_path / "etc").mkdir()
    result = run()
    assert result["failed"] is True
    assert "cannot mask sys-kernel-debug.mount: %s is not a writable directory" % unit_dir in result["msg"]
    assert calls == [] and (tmp_path / "fstab").read_bytes() == FSTAB


def test_already_masked_and_commented_is_only_the_unmount(run, kernel, host, tmp_path):
    (tmp_path / MASK).parent.mkdir(parents=True)
    os.symlink("/dev/null", tmp_path / MASK)
    commented = FSTAB.replace(FSTAB_LINE, b"# " + FSTAB_LINE)
    (tmp_path / "fstab").write_bytes(commented)
    result = run()
    assert result["actions"] == planned(tmp_path)[:2]
    assert (tmp_path / "fstab").read_bytes() == commented


def test_with_persistent_both_fstab_edits_happen_in_one_write(run, kernel, host, tmp_path):
    result = run({"persistent": True})
    text = (tmp_path / "fstab").read_bytes()
    assert _fstab.DEBUGFS_COMMENT.encode() + FSTAB_LINE in text
    assert text.endswith(("tracefs %s tracefs nosuid,nodev,noexec 0 0\n" % host.tracing).encode())
    assert result["fstab"] == "tracefs %s tracefs nosuid,nodev,noexec 0 0" % host.tracing


def test_a_tracefs_path_inside_debugfs_is_refused(run, kernel, host):
    result = run({"path": "/sys/kernel/debug/tracing"})
    assert result["failed"] is True
    assert "path=/sys/kernel/debug/tracing lies inside debugfs" in result["msg"]


def _bad_input_cases():
    cases = bad_input_cases.load("mount")["bad_input_cases_debugfs"]
    return [pytest.param(case, id=case["name"]) for case in cases]


@pytest.mark.parametrize("case", _bad_input_cases())
def test_bad_input_suite_debugfs_cases(run, kernel, host, tmp_path, case):
    """The molecule bad-input suite's debugfs cases, here on a systemd host whose debugfs
    (and the tracing automount) a case that slipped through would unmount: each is
    refused with its message, and the mount table, fstab, unit and ledger stay as they were."""
    import re

    calls, _busy = kernel
    watched = [host.root / "proc/self/mountinfo", tmp_path / "fstab", tmp_path / MASK, tmp_path / "ledger.json"]

    def state():
        return [path.read_bytes() if os.path.lexists(path) else None for path in watched]

    before = state()
    # The case's own options, on this fake host's tracefs and fstab unless it names its own.
    result = run(dict({"debugfs": "unmanaged"}, **case["args"]))
    assert result.get("failed") is True and not result.get("changed"), result
    assert "exception" not in result and "MODULE FAILURE" not in result["msg"]
    assert re.search(case["msg"], result["msg"]), (case["msg"], result["msg"])
    assert calls == [] and state() == before


# -- debugfs: disallowed: debugfs=off on the next boot's kernel command line ------------

CMDLINE = "root=UUID=1234 ro quiet\n"
STATE = "etc/tracefleet/debugfs.json"


@pytest.fixture
def kernel_cmdline(host, tmp_path):
    """The next boot's command line in /etc/kernel/cmdline (kernel-install, systemd-boot)."""
    path = tmp_path / "etc/kernel/cmdline"
    path.parent.mkdir(parents=True)
    path.write_text(CMDLINE)
    return path


def boot_files(tmp_path):
    return [
        (tmp_path / name).read_bytes() if os.path.lexists(tmp_path / name) else None
        for name in ("etc/kernel/cmdline", "etc/default/grub", STATE)
    ]


def test_disallowed_check_mode_predicts_and_writes_nothing(run, kernel, host, tmp_path, kernel_cmdline):
    calls, _busy = kernel
    result = run({"debugfs": "disallowed"}, check=True)
    assert result["changed"] is True and result["reboot_required"] is True
    assert result["actions"] == [
        "unmount /sys/kernel/debug/tracing: inside debugfs at /sys/kernel/debug",
        "unmount /sys/kernel/debug: debugfs=disallowed",
        planned(tmp_path)[2],
        planned(tmp_path)[3],
        "write /etc/tracefleet/debugfs.json",
        "write /etc/kernel/cmdline",
    ]
    assert result["diff"]["before"]["debugfs"]["next_boot"] is None
    assert result["diff"]["after"]["debugfs"]["next_boot"] == "debugfs=off"
    assert calls == [] and boot_files(tmp_path) == [CMDLINE.encode(), None, None]


def test_disallowed_puts_debugfs_off_on_the_command_line_until_a_reboot(run, kernel, host, tmp_path, kernel_cmdline):
    result = run({"debugfs": "disallowed"})
    assert result["changed"] is True
    assert kernel_cmdline.read_text() == "root=UUID=1234 ro quiet debugfs=off\n"
    assert json.loads((tmp_path / STATE).read_text())["cmdline"]["words"] == ["debugfs=off"]
    # Everything `unmounted` does, too.
    assert os.readlink(tmp_path / MASK) == "/dev/null"
    assert " - debugfs " not in (host.root / "proc/self/mountinfo").read_text()
    # The running kernel still has debugfs (/proc/filesystems, /proc/cmdline): a reboot is due.
    assert result["reboot_required"] is True
    assert result["msg"].startswith("debugfs=off is on the next boot's command line (/etc/kernel/cmdline)")

    again = run({"debugfs": "disallowed"})
    assert again["changed"] is False and again["actions"] == []
    assert again["reboot_required"] is True  # until the reboot, whatever the run changed

    # After the reboot: the kernel says debugfs=off and has no debugfs.
    host.write("proc/cmdline", "root=UUID=1234 ro quiet debugfs=off\n")
    host.write("proc/filesystems", "nodev\tsysfs\nnodev\ttracefs\n")
    booted = run({"debugfs": "disallowed"})
    assert booted["changed"] is False and booted["reboot_required"] is False and "msg" not in booted
    assert booted["debugfs"]["policy"] == "off" and booted["debugfs"]["registered"] is False


def test_unmounted_takes_back_the_word_disallowed_added(run, kernel, host, tmp_path, kernel_cmdline):
    run({"debugfs": "disallowed"})
    result = run({"debugfs": "unmounted"}, check=True)
    assert result["changed"] is True and result["actions"] == [
        "write /etc/kernel/cmdline",
        "remove /etc/tracefleet/debugfs.json",
    ]
    assert kernel_cmdline.read_text() == "root=UUID=1234 ro quiet debugfs=off\n"
    result = run({"debugfs": "unmounted"})
    assert result["changed"] is True
    assert kernel_cmdline.read_text() == CMDLINE and not os.path.lexists(tmp_path / STATE)
    # Taken back before any reboot: the running kernel never had it.
    assert result["reboot_required"] is False
    assert result["diff"]["after"]["debugfs"]["next_boot"] is None
    assert run({"debugfs": "unmounted"})["changed"] is False


def test_unmounted_after_a_reboot_with_debugfs_off_says_a_reboot_brings_debugfs_back(
    run, kernel, host, tmp_path, kernel_cmdline
):
    run({"debugfs": "disallowed"})
    host.write("proc/cmdline", "root=UUID=1234 ro quiet debugfs=off\n")
    host.write("proc/filesystems", "nodev\tsysfs\nnodev\ttracefs\n")
    result = run({"debugfs": "unmounted"})
    assert result["changed"] is True and kernel_cmdline.read_text() == CMDLINE
    assert result["reboot_required"] is True
    assert "no longer on the next boot's command line" in result["msg"]


def test_a_debugfs_word_tracefleet_did_not_add_is_refused_before_anything(run, kernel, host, tmp_path, kernel_cmdline):
    calls, _busy = kernel
    kernel_cmdline.write_text("root=UUID=1234 debugfs=on ro\n")
    before = boot_files(tmp_path)
    result = run({"debugfs": "disallowed"})
    assert result["failed"] is True
    assert result["msg"] == (
        "debugfs=disallowed: /etc/kernel/cmdline already has 'debugfs=on', which tracefleet did not add "
        "(the kernel takes the last debugfs= word); remove it; nothing was changed"
    )
    assert calls == [] and boot_files(tmp_path) == before
    assert (tmp_path / "fstab").read_bytes() == FSTAB and not os.path.lexists(tmp_path / MASK)


def test_debugfs_off_already_there_is_left_as_it_is_and_not_owned(run, kernel, host, tmp_path, kernel_cmdline):
    kernel_cmdline.write_text("debugfs=off root=UUID=1234\n")
    result = run({"debugfs": "disallowed"})
    assert result["changed"] is True  # the unmounts, the fstab, the mask
    assert not any("cmdline" in action or "tracefleet" in action for action in result["actions"])
    assert kernel_cmdline.read_text() == "debugfs=off root=UUID=1234\n" and not os.path.lexists(tmp_path / STATE)
    assert result["reboot_required"] is True
    # Not ours: `unmounted` leaves it.
    assert run({"debugfs": "unmounted"})["changed"] is False
    assert kernel_cmdline.read_text() == "debugfs=off root=UUID=1234\n"


def test_disallowed_is_refused_where_the_kernel_has_no_debugfs_parameter(
    run, kernel, host, tmp_path, kernel_cmdline, monkeypatch
):
    calls, _busy = kernel
    monkeypatch.setattr(_locate.platform, "release", lambda: "5.4.0-150-generic")
    result = run({"debugfs": "disallowed"})
    assert result["failed"] is True
    assert "kernel 5.4.0-150-generic has no debugfs= boot parameter (5.10 and newer have it)" in result["msg"]
    assert calls == [] and boot_files(tmp_path) == [CMDLINE.encode(), None, None]


def test_disallowed_is_refused_without_a_boot_loader_file(run, kernel, host, tmp_path):
    calls, _busy = kernel
    result = run({"debugfs": "disallowed"})
    assert result["failed"] is True
    assert "the next boot's command line is in neither /etc/kernel/cmdline nor /etc/default/grub" in result["msg"]
    assert calls == [] and not os.path.lexists(tmp_path / MASK)


GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="console=ttyS0"  # serial\n'


@pytest.fixture
def grub(host, tmp_path, monkeypatch):
    """/etc/default/grub and an update-grub that records its runs (and fails on request)."""
    path = tmp_path / "etc/default/grub"
    path.parent.mkdir(parents=True)
    path.write_text(GRUB)
    runs = tmp_path / "update-grub.runs"
    script = tmp_path / "bin/update-grub"
    script.parent.mkdir()
    script.write_text(
        '#!/bin/sh\necho run >> %s\n[ ! -e %s.fail ] || { echo "grub.cfg: no space" >&2; exit 1; }\n' % (runs, runs)
    )
    script.chmod(0o755)
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: str(script) if name == "update-grub" else real_which(name, *a, **k)
    )
    return path, runs


def test_disallowed_on_grub_edits_the_value_and_runs_update_grub(run, kernel, host, tmp_path, grub):
    path, runs = grub
    result = run({"debugfs": "disallowed"})
    assert result["changed"] is True and result["reboot_required"] is True
    assert path.read_text() == 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="console=ttyS0 debugfs=off"  # serial\n'
    assert runs.read_text() == "run\n"
    assert run({"debugfs": "disallowed"})["changed"] is False and runs.read_text() == "run\n"
    run({"debugfs": "unmounted"})
    assert path.read_text() == GRUB and runs.read_text() == "run\nrun\n"


def test_a_failing_update_grub_puts_the_file_back(run, kernel, host, tmp_path, grub):
    path, runs = grub
    (tmp_path / "update-grub.runs.fail").write_text("")
    result = run({"debugfs": "disallowed"})
    assert result["failed"] is True
    assert "update-grub failed (exit 1): grub.cfg: no space; the files it needed were put back" in result["msg"]
    assert path.read_text() == GRUB


@pytest.mark.parametrize(
    "record",
    [
        "{not json",
        '{"format": 1, "cmdline": {"bootloader": "grub", "file": "/etc/kernel/cmdline", "words": ["debugfs=off"]}}',
        '{"format": 1, "cmdline": {"bootloader": "kernel-cmdline", "file": "/etc/kernel/cmdline", "words": ["quiet"]}}',
        '{"format": 1, "cmdline": {"bootloader": "kernel-cmdline", "file": "/etc/kernel/cmdline", "words": '
        '["debugfs=off"], "update_command": "rm -rf /"}}',
        '{"format": 2}',
    ],
)
def test_a_damaged_or_foreign_record_is_refused_before_anything(run, kernel, host, tmp_path, kernel_cmdline, record):
    calls, _busy = kernel
    (tmp_path / STATE).parent.mkdir(parents=True)
    (tmp_path / STATE).write_text(record)
    before = boot_files(tmp_path)
    for policy in ("disallowed", "unmounted"):
        result = run({"debugfs": policy})
        assert result["failed"] is True and "exception" not in result
        assert result["msg"].startswith("debugfs=%s: /etc/tracefleet/debugfs.json is " % policy), result["msg"]
        assert result["msg"].endswith("fix or remove it; nothing was changed")
    assert calls == [] and boot_files(tmp_path) == before


def test_a_record_of_another_file_is_taken_back_and_the_next_boot_read_from_the_target(
    run, kernel, host, tmp_path, grub, kernel_cmdline
):
    """The word was added to GRUB's value; /etc/kernel/cmdline has appeared since, with a
    debugfs=off of its own. The word goes from GRUB's file, the target is left as it is,
    and the next boot (the target's word) still disallows debugfs."""
    path, runs = grub
    path.write_text(GRUB.replace('"console=ttyS0"', '"console=ttyS0 debugfs=off"'))
    kernel_cmdline.write_text("debugfs=off root=UUID=1234\n")
    (tmp_path / STATE).parent.mkdir(parents=True)
    record = {"bootloader": "grub", "file": "/etc/default/grub", "update_command": None, "words": ["debugfs=off"]}
    (tmp_path / STATE).write_text(json.dumps({"format": 1, "cmdline": dict(record, replaced=[])}))
    result = run({"debugfs": "disallowed"})
    assert result["changed"] is True
    assert path.read_text() == GRUB and kernel_cmdline.read_text() == "debugfs=off root=UUID=1234\n"
    assert not os.path.lexists(tmp_path / STATE)
    assert result["diff"]["after"]["debugfs"]["next_boot"] == "debugfs=off"
    assert result["reboot_required"] is True  # the running kernel was booted without it
