# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the next boot mounts at the tracefs mount point, read from a fake tree (/etc/fstab,
systemd's unit directories and drop-ins, /run/systemd/system) and compared with a fake
mount table; and the option vocabulary it shares with the audit."""

from __future__ import annotations

import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _mount_syscalls, _tracefs_boot
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import parse_mountinfo

TRACING = "/sys/kernel/tracing"
UNIT = "sys-kernel-tracing.mount"
ADMIN_UNIT = "etc/systemd/system/" + UNIT
VENDOR_UNIT = "lib/systemd/system/" + UNIT
# systemd's own unit and the link that starts it at boot, as Debian 12 ships them.
VENDOR_TEXT = """[Unit]
Description=Kernel Trace File System
ConditionPathExists=/sys/kernel/tracing

[Mount]
What=tracefs
Where=/sys/kernel/tracing
Type=tracefs
Options=nosuid,nodev,noexec
"""
POLICY_LINE = "tracefs /sys/kernel/tracing tracefs nosuid,nodev,noexec,gid=1001,mode=0750 0 0\n"


def live(options="rw,nosuid,nodev,noexec,relatime", super_options="rw,gid=1001,mode=750", point=TRACING):
    return parse_mountinfo("37 21 0:12 / %s %s - tracefs tracefs %s\n" % (point, options, super_options))


def write(root, relative, text=""):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def link(root, relative, target):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def systemd(root, wanted=True):
    """A host where systemd is PID 1 and ships its tracefs unit."""
    (root / "run/systemd/system").mkdir(parents=True, exist_ok=True)
    write(root, VENDOR_UNIT, VENDOR_TEXT)
    if wanted:
        link(root, "lib/systemd/system/sysinit.target.wants/" + UNIT, "../" + UNIT)


def facts(root, mounts=None, path=TRACING, cmdline=None):
    mounts = live() if mounts is None else mounts
    return _tracefs_boot.boot_facts(str(root), mounts, path, cmdline or {})


def picked(result, *keys):
    return {key: result[key] for key in keys}


# ---------------------------------------------------------------- /etc/fstab


def test_fstab_matches_the_live_mount(tmp_path):
    write(tmp_path, "etc/fstab", "# static\nUUID=1 / ext4 defaults 0 1\n" + POLICY_LINE)
    result = facts(tmp_path)
    assert result == {
        "mount_point": TRACING,
        "unit": UNIT,
        "systemd": False,
        "source": "fstab",
        "file": "/etc/fstab",
        "dropins": [],
        "options_file": "/etc/fstab",
        "mounted": True,
        "fstype": "tracefs",
        "configured_options": ["nosuid", "nodev", "noexec", "gid=1001", "mode=0750"],
        "options": ["rw", "nosuid", "nodev", "noexec", "relatime"],
        "gid": 1001,
        "mode": "0750",
        "agrees": True,
        "differences": [],
        "error": None,
    }


@pytest.mark.parametrize(
    "options, differences",
    [
        # options: noexec on now, off at boot
        ("nosuid,nodev,gid=1001,mode=0750", [{"setting": "noexec", "live": "on", "boot": "off"}]),
        # a later default cancels an earlier flag, as mount(8) reads the line
        ("nosuid,nodev,noexec,exec,gid=1001,mode=0750", [{"setting": "noexec", "live": "on", "boot": "off"}]),
        ("ro,nosuid,nodev,noexec,gid=1001,mode=0750", [{"setting": "ro", "live": "off", "boot": "on"}]),
        # an atime option is compared when the configuration gives one
        ("nosuid,nodev,noexec,noatime,gid=1001,mode=0750", [{"setting": "noatime", "live": "off", "boot": "on"}]),
        # gid: none given is root's group
        ("nosuid,nodev,noexec,mode=0750", [{"setting": "gid", "live": "1001", "boot": "0"}]),
        ("nosuid,nodev,noexec,gid=5,mode=0750", [{"setting": "gid", "live": "1001", "boot": "5"}]),
        # mode: none given is tracefs's 0700
        ("nosuid,nodev,noexec,gid=1001", [{"setting": "mode", "live": "0750", "boot": "0700"}]),
        ("nosuid,nodev,noexec,gid=1001,mode=750", []),
        ("nosuid,nodev,noexec,gid=tracing,mode=0750", [{"setting": "gid", "live": "1001", "boot": "gid=tracing"}]),
        ("defaults,nosuid,nodev,noexec,gid=1001,mode=0750,x-systemd.automount,nofail", []),
    ],
)
def test_fstab_differs(tmp_path, options, differences):
    write(tmp_path, "etc/fstab", "tracefs /sys/kernel/tracing/ tracefs %s 0 0\n" % options)
    result = facts(tmp_path)
    assert result["source"] == "fstab" and result["mounted"] is True
    assert result["differences"] == differences
    assert result["agrees"] is (not differences)


def test_fstab_line_of_another_filesystem(tmp_path):
    write(tmp_path, "etc/fstab", "none /sys/kernel/tracing tmpfs nosuid,nodev,noexec 0 0\n")
    result = facts(tmp_path)
    assert result["fstype"] == "tmpfs"
    assert {"setting": "fstype", "live": "tracefs", "boot": "tmpfs"} in result["differences"]


def test_no_fstab_entry_while_the_live_mount_is_compliant(tmp_path):
    """The finding this exists for: mounted with the policy now, by nothing at boot."""
    write(tmp_path, "etc/fstab", "UUID=1 / ext4 defaults 0 1\n")
    result = facts(tmp_path)
    assert picked(result, "systemd", "source", "file", "mounted", "agrees") == {
        "systemd": False,
        "source": "none",
        "file": None,
        "mounted": False,
        "agrees": False,
    }
    assert result["differences"] == [{"setting": "mounted", "live": "mounted", "boot": "not mounted"}]
    assert result["options"] is None and result["gid"] is None


def test_nothing_mounted_and_nothing_at_boot_agree(tmp_path):
    result = facts(tmp_path, mounts=[])
    assert picked(result, "source", "mounted", "agrees", "differences") == {
        "source": "none",
        "mounted": False,
        "agrees": True,
        "differences": [],
    }


def test_not_mounted_now_but_at_boot(tmp_path):
    write(tmp_path, "etc/fstab", POLICY_LINE)
    result = facts(tmp_path, mounts=[], path=None)
    assert result["mount_point"] == TRACING
    assert result["differences"] == [{"setting": "mounted", "live": "not mounted", "boot": "mounted"}]


def test_noauto_without_systemd_is_not_mounted_at_boot(tmp_path):
    write(tmp_path, "etc/fstab", POLICY_LINE.replace("mode=0750", "mode=0750,noauto"))
    result = facts(tmp_path)
    assert picked(result, "source", "mounted", "agrees") == {"source": "fstab", "mounted": False, "agrees": False}


def test_the_first_fstab_line_counts(tmp_path):
    write(tmp_path, "etc/fstab", POLICY_LINE + POLICY_LINE.replace("gid=1001", "gid=7"))
    assert facts(tmp_path)["gid"] == 1001


def test_another_mount_point(tmp_path):
    point = "/srv/my trace"
    write(tmp_path, "etc/fstab", POLICY_LINE.replace(TRACING, "/srv/my\\040trace"))
    result = facts(tmp_path, mounts=live(point="/srv/my\\040trace"), path=point)
    assert result["mount_point"] == point and result["unit"] == "srv-my\\x20trace.mount"
    assert result["source"] == "fstab" and result["agrees"] is True


def test_the_debugfs_automount_is_not_a_boot_configuration(tmp_path):
    automount = live(point="/sys/kernel/debug/tracing")
    result = facts(tmp_path, mounts=automount, path="/sys/kernel/debug/tracing")
    assert result["mount_point"] == TRACING
    assert picked(result, "source", "agrees") == {"source": "none", "agrees": True}


@pytest.mark.parametrize("bad", ["directory", "fifo"])
def test_unreadable_fstab_is_reported_not_fatal(tmp_path, bad):
    fstab = tmp_path / "etc/fstab"
    fstab.parent.mkdir(parents=True)
    if bad == "directory":
        fstab.mkdir()
    else:
        os.mkfifo(fstab)  # must not hang
    result = facts(tmp_path)
    assert "is not a regular file" in result["error"]
    assert picked(result, "source", "mounted", "agrees") == {"source": None, "mounted": None, "agrees": None}


# ---------------------------------------------------------------- systemd


def test_systemd_own_unit_only(tmp_path):
    systemd(tmp_path)
    result = facts(tmp_path, live(super_options="rw"))
    assert picked(result, "systemd", "source", "file", "mounted", "options", "gid", "mode", "agrees") == {
        "systemd": True,
        "source": "systemd",
        "file": "/" + VENDOR_UNIT,
        "mounted": True,
        "options": ["rw", "nosuid", "nodev", "noexec", "relatime"],
        "gid": 0,
        "mode": "0700",
        "agrees": True,
    }


def test_systemd_own_unit_after_a_remount_by_hand(tmp_path):
    """Compliant now (gid and mode set by a remount), not after the next boot."""
    systemd(tmp_path)
    result = facts(tmp_path)
    assert result["source"] == "systemd" and result["agrees"] is False
    assert result["differences"] == [
        {"setting": "gid", "live": "1001", "boot": "0"},
        {"setting": "mode", "live": "0750", "boot": "0700"},
    ]


def test_fstab_overrides_systemds_own_unit(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE)
    result = facts(tmp_path)
    assert picked(result, "source", "file", "agrees") == {"source": "fstab", "file": "/etc/fstab", "agrees": True}


def test_fstab_options_replace_the_units_whole(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", "tracefs /sys/kernel/tracing tracefs gid=1001,mode=0750 0 0\n")
    result = facts(tmp_path)
    assert result["options"] == ["rw", "relatime"]
    assert [item["setting"] for item in result["differences"]] == ["nosuid", "nodev", "noexec"]


def test_noauto_fstab_line_is_still_started_by_systemds_link(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE.replace("mode=0750", "mode=0750,noauto"))
    result = facts(tmp_path)
    assert picked(result, "source", "mounted", "agrees") == {"source": "fstab", "mounted": True, "agrees": True}


def test_fstab_no_on_the_command_line(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE)
    assert facts(tmp_path, cmdline={"fstab": "no"})["source"] == "systemd"
    assert facts(tmp_path, cmdline={"fstab": "1"})["source"] == "fstab"


def test_mount_unit_override_beats_fstab(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE)
    write(
        tmp_path,
        ADMIN_UNIT,
        "# the admin's own\n[Unit]\nOptions=ignored\n[Mount]\nWhat=tracefs\nWhere=/sys/kernel/tracing\n"
        "Type=tracefs\nOptions=nosuid,nodev,\\\n  noexec,gid=1001,mode=0750\n",
    )
    result = facts(tmp_path)
    assert picked(result, "source", "file", "options_file", "configured_options", "agrees") == {
        "source": "unit",
        "file": "/" + ADMIN_UNIT,
        "options_file": "/" + ADMIN_UNIT,
        "configured_options": ["nosuid", "nodev", "noexec", "gid=1001", "mode=0750"],
        "agrees": True,
    }


def test_mount_unit_override_without_the_policy(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE)
    write(tmp_path, ADMIN_UNIT, "[Mount]\nWhat=tracefs\nWhere=/sys/kernel/tracing\nType=tracefs\nOptions=nosuid\n")
    result = facts(tmp_path)
    assert result["source"] == "unit"
    assert [item["setting"] for item in result["differences"]] == ["nodev", "noexec", "gid", "mode"]


def test_mount_unit_override_that_nothing_starts(tmp_path):
    systemd(tmp_path, wanted=False)
    write(tmp_path, ADMIN_UNIT, "[Mount]\nWhat=tracefs\nWhere=/sys/kernel/tracing\nType=tracefs\n")
    assert picked(facts(tmp_path), "source", "mounted") == {"source": "unit", "mounted": False}
    link(tmp_path, "etc/systemd/system/local-fs.target.wants/" + UNIT, "/" + ADMIN_UNIT)  # systemctl enable
    assert facts(tmp_path)["mounted"] is True


def test_a_linked_unit_is_followed_inside_the_root(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "srv/units/" + UNIT, VENDOR_TEXT.replace("noexec", "noexec,gid=1001,mode=0750"))
    link(tmp_path, ADMIN_UNIT, "/srv/units/" + UNIT)
    result = facts(tmp_path)
    assert picked(result, "source", "file", "agrees") == {"source": "unit", "file": "/" + ADMIN_UNIT, "agrees": True}


@pytest.mark.parametrize("mask", ["link", "empty"])
def test_masked_unit_beats_fstab(tmp_path, mask):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE)
    if mask == "link":
        link(tmp_path, ADMIN_UNIT, "/dev/null")
    else:
        write(tmp_path, ADMIN_UNIT, "")
    result = facts(tmp_path)
    assert picked(result, "source", "file", "mounted", "agrees") == {
        "source": "masked",
        "file": "/" + ADMIN_UNIT,
        "mounted": False,
        "agrees": False,
    }


def test_systemd_without_any_unit(tmp_path):
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    assert picked(facts(tmp_path), "systemd", "source", "mounted") == {
        "systemd": True,
        "source": "none",
        "mounted": False,
    }


def test_dropin_options(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/systemd/system/%s.d/50-group.conf" % UNIT, "[Mount]\nOptions=nosuid,nodev,noexec,gid=1001\n")
    result = facts(tmp_path)
    dropin = "/etc/systemd/system/%s.d/50-group.conf" % UNIT
    assert picked(result, "source", "file", "dropins", "options_file", "gid", "mode") == {
        "source": "systemd",
        "file": "/" + VENDOR_UNIT,
        "dropins": [dropin],
        "options_file": dropin,
        "gid": 1001,
        "mode": "0700",
    }
    assert result["differences"] == [{"setting": "mode", "live": "0750", "boot": "0700"}]


def test_dropins_apply_to_the_fstab_unit_too(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE)
    write(tmp_path, "etc/systemd/system/%s.d/override.conf" % UNIT, "[Mount]\nOptions=\n")
    result = facts(tmp_path)
    assert result["source"] == "fstab" and result["configured_options"] == []
    assert [item["setting"] for item in result["differences"]] == ["nosuid", "nodev", "noexec", "gid", "mode"]


def test_dropin_order_and_precedence(tmp_path):
    systemd(tmp_path)
    etc, lib = "etc/systemd/system/", "lib/systemd/system/"
    # Same file name: /etc's wins over /lib's; the more specific directory over the prefix one.
    write(tmp_path, lib + UNIT + ".d/20-mode.conf", "[Mount]\nOptions=nosuid\n")
    write(tmp_path, etc + UNIT + ".d/20-mode.conf", "[Mount]\nOptions=nosuid,nodev,noexec,mode=0750\n")
    write(tmp_path, etc + "sys-kernel-.mount.d/20-mode.conf", "[Mount]\nOptions=ro\n")
    # Applied by file name, whatever the directory: 10 first, then 20, then 30.
    write(tmp_path, etc + "sys-.mount.d/10-early.conf", "[Mount]\nOptions=ro\n")
    write(tmp_path, lib + "mount.d/30-type.conf", "[Mount]\nWhat=tracefs\n")
    # A masked drop-in is not applied; a drop-in without [Mount] changes nothing here.
    link(tmp_path, etc + UNIT + ".d/40-masked.conf", "/dev/null")
    write(tmp_path, lib + UNIT + ".d/40-masked.conf", "[Mount]\nOptions=ro\n")
    write(tmp_path, etc + UNIT + ".d/50-unit.conf", "[Unit]\nDescription=x\n")
    result = facts(tmp_path)
    assert result["dropins"] == [
        "/etc/systemd/system/sys-.mount.d/10-early.conf",
        "/etc/systemd/system/%s.d/20-mode.conf" % UNIT,
        "/lib/systemd/system/mount.d/30-type.conf",
    ]
    assert result["options_file"] == "/etc/systemd/system/%s.d/20-mode.conf" % UNIT
    assert result["configured_options"] == ["nosuid", "nodev", "noexec", "mode=0750"]


def test_unit_files_that_cannot_be_read(tmp_path):
    systemd(tmp_path)
    (tmp_path / ADMIN_UNIT).mkdir(parents=True)
    assert "is not a regular file" in facts(tmp_path)["error"]


def test_no_systemd_ignores_units_it_would_read(tmp_path):
    """Without systemd (no /run/systemd/system, no unit of that name) drop-ins mean nothing."""
    write(tmp_path, "etc/systemd/system/%s.d/x.conf" % UNIT, "[Mount]\nOptions=ro\n")
    write(tmp_path, "etc/fstab", POLICY_LINE)
    result = facts(tmp_path)
    assert picked(result, "systemd", "source", "dropins", "agrees") == {
        "systemd": False,
        "source": "fstab",
        "dropins": [],
        "agrees": True,
    }


def test_reading_changes_nothing(tmp_path):
    systemd(tmp_path)
    write(tmp_path, "etc/fstab", POLICY_LINE)
    write(tmp_path, "etc/systemd/system/%s.d/x.conf" % UNIT, "[Mount]\nOptions=ro\n")
    before = sorted((str(path), path.lstat().st_mtime_ns) for path in tmp_path.rglob("*"))
    facts(tmp_path)
    assert sorted((str(path), path.lstat().st_mtime_ns) for path in tmp_path.rglob("*")) == before


# ---------------------------------------------------------------- the pieces


@pytest.mark.parametrize(
    "point, name",
    [
        ("/sys/kernel/tracing", "sys-kernel-tracing.mount"),
        ("/sys/kernel/tracing/", "sys-kernel-tracing.mount"),
        ("//srv//my-trace", "srv-my\\x2dtrace.mount"),
        ("/", "-.mount"),
        ("/.hidden/a.b", "\\x2ehidden-a.b.mount"),
        ("/mnt/\u00fc", "mnt-\\xc3\\xbc.mount"),
    ],
)
def test_unit_name(point, name):
    assert _tracefs_boot.unit_name(point) == name


def test_dropin_dirs():
    assert _tracefs_boot.dropin_dirs(UNIT) == [
        "sys-kernel-tracing.mount.d",
        "sys-kernel-.mount.d",
        "sys-.mount.d",
        "mount.d",
    ]
    assert _tracefs_boot.dropin_dirs("-.mount") == ["-.mount.d", "mount.d"]


def test_parse_unit():
    text = (
        "[Mount]\n; comment\nOptions = a,\\\n# a comment inside the continuation is dropped\n  b\n"
        "Type=tracefs\nType=\nWhat=x\n[Install]\nWhat=y\n"
    )
    assert _tracefs_boot.parse_unit(text) == {"Options": "a, b", "Type": "", "What": "x"}


@pytest.mark.parametrize(
    "options, flags",
    [
        (["nosuid", "nodev", "noexec"], ["nosuid", "nodev", "noexec"]),
        (["noexec", "exec", "ro", "rw"], []),
        (["noatime", "relatime", "strictatime"], ["strictatime"]),
        (["defaults", "gid=5", "noauto", "x-systemd.automount", "bogus"], []),
        ([" nosuid "], ["nosuid"]),
    ],
)
def test_flags_in_effect(options, flags):
    assert _mount_syscalls.flags_in_effect(options) == flags


@pytest.mark.parametrize(
    "options, gid, mode",
    [
        ([], 0, 0o700),
        (["rw", "gid=1001", "mode=750"], 1001, 0o750),
        (["gid=1", "gid=2"], 2, 0o700),  # the kernel takes the last
    ],
)
def test_tracefs_gid_and_mode(options, gid, mode):
    assert _mount_syscalls.tracefs_gid(options) == gid
    assert _mount_syscalls.tracefs_mode(options) == mode


@pytest.mark.parametrize("options", [["gid=x"], ["gid="], ["gid=+1"], ["gid=1_0"], ["mode=0800"], ["mode="]])
def test_tracefs_gid_and_mode_refuse_garbage(options):
    with pytest.raises(ValueError):
        _mount_syscalls.tracefs_gid(options) if options[0].startswith("gid") else _mount_syscalls.tracefs_mode(options)
