from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _locate, _mount_syscalls
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
    monkeypatch.setattr(tracefs, "Host", lambda: _locate.Host(str(fake_host.root)))
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


@pytest.mark.parametrize(
    "value, expected", [("0750", 0o750), ("750", 0o750), ("4755", 0o4755), (0o640, 0o640), (None, None)]
)
def test_parse_mode(value, expected):
    assert tracefs.parse_mode(value) == expected


@pytest.mark.parametrize("value, expected", [(0, 0), ("100", 100), (" 42 ", 42), (None, None), ("root", 0)])
def test_parse_gid(value, expected):
    assert tracefs.parse_gid(value) == expected
