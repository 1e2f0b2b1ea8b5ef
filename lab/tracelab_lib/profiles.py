"""VM profiles: a boot image plus kernel command line switches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    image: str
    init: str
    cmdline: tuple[str, ...]
    description: str

    @property
    def group(self) -> str:
        """Ansible inventory group for VMs of this profile (valid group name)."""
        return "tracelab_" + self.name.replace("-", "_")


PROFILES = {
    p.name: p
    for p in (
        Profile("default", "minimal", "/init", (), "minimal init; nothing mounts tracefs or debugfs at boot"),
        Profile(
            "debugfs-off",
            "minimal",
            "/init",
            ("debugfs=off",),
            "debugfs=off: no debugfs in /proc/filesystems, no /sys/kernel/debug",
        ),
        Profile(
            "debugfs-nomount",
            "minimal",
            "/init",
            ("debugfs=no-mount",),
            "debugfs=no-mount: the runtime form of CONFIG_DEBUG_FS_DISALLOW_MOUNT (debugfs API on, mounting refused)",
        ),
        Profile(
            "lockdown", "minimal", "/init", ("lockdown=confidentiality",), "kernel lockdown in confidentiality mode"
        ),
        Profile(
            "systemd",
            "systemd",
            "/sbin/init",
            (),
            "systemd as init: tracefs and debugfs mounted the way distributions do",
        ),
    )
}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError("unknown profile %r; choose one of: %s" % (name, ", ".join(sorted(PROFILES)))) from None
