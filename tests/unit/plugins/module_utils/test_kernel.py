from __future__ import annotations

import gzip

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _kernel


@pytest.mark.parametrize(
    "text, expected",
    [
        ("console=ttyS0 debugfs=off quiet\n", {"console": "ttyS0", "debugfs": "off", "quiet": None}),
        ("debugfs=on debugfs=no-mount", {"debugfs": "no-mount"}),
        ('root=/dev/vda1 dyndbg="file foo.c +p" ro', {"root": "/dev/vda1", "dyndbg": "file foo.c +p", "ro": None}),
        ("lockdown=integrity -- debugfs=off", {"lockdown": "integrity"}),
        ("", {}),
        ('unbalanced="quote debugfs=off', {"unbalanced": '"quote', "debugfs": "off"}),
    ],
)
def test_parse_cmdline(text, expected):
    assert _kernel.parse_cmdline(text) == expected


def test_parse_kconfig():
    text = (
        "#\n# Automatically generated\nCONFIG_DEBUG_FS=y\nCONFIG_DEBUG_FS_ALLOW_ALL=y\n"
        '# CONFIG_DEBUG_FS_DISALLOW_MOUNT is not set\nCONFIG_LSM="lockdown,yama"\n'
    )
    config = _kernel.parse_kconfig(text)
    assert config["CONFIG_DEBUG_FS"] == "y"
    assert config["CONFIG_DEBUG_FS_DISALLOW_MOUNT"] == "n"
    assert config["CONFIG_LSM"] == "lockdown,yama"


def test_read_kconfig_prefers_proc_config_gz(tmp_path):
    gz = tmp_path / "config.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write("CONFIG_DEBUG_FS_ALLOW_NONE=y\n")
    (tmp_path / "config-6.1.0-test").write_text("CONFIG_DEBUG_FS_ALLOW_ALL=y\n")
    config, source = _kernel.read_kconfig("6.1.0-test", str(tmp_path), str(gz))
    assert source == str(gz) and config == {"CONFIG_DEBUG_FS_ALLOW_NONE": "y"}


def test_read_kconfig_falls_back_to_boot(tmp_path):
    (tmp_path / "config-6.1.0-test").write_text("CONFIG_DEBUG_FS_ALLOW_ALL=y\n")
    config, source = _kernel.read_kconfig("6.1.0-test", str(tmp_path), str(tmp_path / "none.gz"))
    assert source.endswith("config-6.1.0-test") and config["CONFIG_DEBUG_FS_ALLOW_ALL"] == "y"


def test_read_kconfig_unreadable(tmp_path):
    assert _kernel.read_kconfig("x", str(tmp_path), str(tmp_path / "none.gz")) == (None, None)


@pytest.mark.parametrize(
    "text, mode",
    [
        ("[none] integrity confidentiality\n", "none"),
        ("none integrity [confidentiality]", "confidentiality"),
        ("none [integrity] confidentiality", "integrity"),
        ("garbage", "unknown"),
    ],
)
def test_parse_lockdown(text, mode):
    assert _kernel.parse_lockdown(text) == mode


def test_lockdown_prefers_securityfs_then_cmdline(tmp_path):
    lockdown = tmp_path / "lockdown"
    lockdown.write_text("none [integrity] confidentiality\n")
    assert _kernel.lockdown_mode({"lockdown": "confidentiality"}, str(lockdown)) == ("integrity", "securityfs")
    missing = str(tmp_path / "missing")
    assert _kernel.lockdown_mode({"lockdown": "confidentiality"}, missing) == ("confidentiality", "cmdline")
    assert _kernel.lockdown_mode({"lockdown": "bogus"}, missing) == ("unknown", "none")
    assert _kernel.lockdown_mode({}, missing) == ("unknown", "none")


KCONFIG_ALL = {"CONFIG_DEBUG_FS": "y", "CONFIG_DEBUG_FS_ALLOW_ALL": "y"}
KCONFIG_NO_MOUNT = {"CONFIG_DEBUG_FS": "y", "CONFIG_DEBUG_FS_DISALLOW_MOUNT": "y"}
KCONFIG_NONE = {"CONFIG_DEBUG_FS": "y", "CONFIG_DEBUG_FS_ALLOW_NONE": "y"}


@pytest.mark.parametrize(
    "cmdline, kconfig, registered, expected",
    [
        ({}, KCONFIG_ALL, True, {"mode": "on", "mount_allowed": True, "source": "kconfig"}),
        ({}, KCONFIG_NO_MOUNT, True, {"mode": "no-mount", "mount_allowed": False, "source": "kconfig"}),
        ({}, KCONFIG_NONE, False, {"mode": "off", "mount_allowed": False, "source": "kconfig"}),
        ({"debugfs": "off"}, KCONFIG_ALL, False, {"mode": "off", "mount_allowed": False, "source": "cmdline"}),
        ({"debugfs": "no-mount"}, KCONFIG_ALL, True, {"mode": "no-mount", "mount_allowed": False, "source": "cmdline"}),
        ({"debugfs": "on"}, KCONFIG_NO_MOUNT, True, {"mode": "on", "mount_allowed": True, "source": "cmdline"}),
        ({"debugfs": "bogus"}, None, True, {"mode": "on", "mount_allowed": True, "source": "default"}),
        ({}, None, False, {"mode": "off", "mount_allowed": False, "source": "filesystems"}),
        ({}, {"CONFIG_DEBUG_FS": "n"}, False, {"mode": "off", "mount_allowed": False, "source": "kconfig"}),
    ],
)
def test_debugfs_policy(cmdline, kconfig, registered, expected):
    assert _kernel.debugfs_policy(cmdline, kconfig, registered) == expected
