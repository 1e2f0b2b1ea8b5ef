# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where tracefs (and debugfs) are: from the mount table, never by mounting.

`read_host()` is the one way the modules gather a host's mount and kernel facts
(`Host`), turning an unreadable mount table into a HostFactsError.

Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import platform

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _kernel
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import (
    MountEntry,
    MountinfoError,
    mounts_of_type,
    read_filesystems,
    read_mountinfo,
)

TRACEFS_MOUNT_POINT = "/sys/kernel/tracing"
DEBUGFS_MOUNT_POINT = "/sys/kernel/debug"


def _preferred(mounts: list[MountEntry], preferred: str) -> MountEntry | None:
    for entry in mounts:
        if entry.mount_point == preferred:
            return entry
    return mounts[0] if mounts else None


def tracefs_state(mounts: list[MountEntry], filesystems: dict[str, bool]) -> dict:
    """tracefs as the kernel reports it: registered, mounted, where and how."""
    tracefs_mounts = mounts_of_type(mounts, "tracefs")
    chosen = _preferred(tracefs_mounts, TRACEFS_MOUNT_POINT)
    return {
        "registered": "tracefs" in filesystems,
        "mounted": bool(tracefs_mounts),
        "path": chosen.mount_point if chosen else None,
        "options": list(chosen.options) if chosen else [],
        "super_options": list(chosen.super_options) if chosen else [],
        "mountpoints": [entry.as_dict() for entry in tracefs_mounts],
    }


def debugfs_state(mounts: list[MountEntry], filesystems: dict[str, bool], mount_point_exists: bool) -> dict:
    """debugfs as the kernel reports it. With debugfs=off it is not even registered,
    and when mounting is disallowed /sys/kernel/debug does not exist."""
    debugfs_mounts = mounts_of_type(mounts, "debugfs")
    return {
        "registered": "debugfs" in filesystems,
        "mounted": bool(debugfs_mounts),
        "mount_point_exists": mount_point_exists,
        "mountpoints": [entry.as_dict() for entry in debugfs_mounts],
    }


class Host:
    """Everything the mount-related modules read from a host, gathered in one pass.

    `root` relocates /proc, /sys and /boot, for tests on a fake tree; mount points
    named in the mount table are used as they are.
    """

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.release = platform.release()
        self.mounts = read_mountinfo(self.path("/proc/self/mountinfo"))
        self.filesystems = read_filesystems(self.path("/proc/filesystems"))
        self.cmdline = _kernel.read_cmdline(self.path("/proc/cmdline"))
        self.kconfig, self.kconfig_source = _kernel.read_kconfig(
            self.release, self.path("/boot"), self.path("/proc/config.gz")
        )
        self.lockdown, self.lockdown_source = _kernel.lockdown_mode(
            self.cmdline, self.path("/sys/kernel/security/lockdown")
        )
        self.debugfs_mount_point_exists = os.path.isdir(self.path(DEBUGFS_MOUNT_POINT))
        self.debugfs_policy = _kernel.debugfs_policy(self.cmdline, self.kconfig, "debugfs" in self.filesystems)

    def path(self, absolute: str) -> str:
        return os.path.join(self.root, absolute.lstrip("/"))

    def tracefs(self) -> dict:
        return tracefs_state(self.mounts, self.filesystems)

    def debugfs(self) -> dict:
        state = debugfs_state(self.mounts, self.filesystems, self.debugfs_mount_point_exists)
        allowed = self.debugfs_policy["mount_allowed"] and self.debugfs_mount_point_exists
        state["mount_allowed"] = allowed
        state["policy"] = self.debugfs_policy["mode"]
        state["policy_source"] = self.debugfs_policy["source"]
        return state

    def debugfs_reason(self) -> str:
        """Why debugfs may not be mounted, in the words of the evidence."""
        policy = self.debugfs_policy
        if policy["source"] == "cmdline":
            return "debugfs=%s on the kernel command line" % policy["mode"]
        if policy["source"] == "kconfig":
            return "the kernel is built with debugfs mode '%s' (%s)" % (policy["mode"], self.kconfig_source)
        if policy["source"] == "filesystems":
            return "debugfs is not registered in /proc/filesystems"
        if not self.debugfs_mount_point_exists:
            return "%s does not exist" % DEBUGFS_MOUNT_POINT
        return "debugfs mounting is allowed"


class HostFactsError(TracefleetError):
    """The kernel's mount facts could not be read (/proc/self/mountinfo, /proc/filesystems)."""


def read_host(reading: str = "mount facts") -> Host:
    """The host's facts, gathered now. `reading` names what the caller needed, for the
    message: "cannot read the kernel's <reading>: <why>"."""
    try:
        return Host()
    except (OSError, MountinfoError) as exc:
        raise HostFactsError("cannot read the kernel's %s: %s" % (reading, exc)) from None


def usable(path: str | None) -> bool:
    """tracefs can be used: its control files are there and readable. Under lockdown
    confidentiality tracefs mounts but shows no files at all."""
    if not path:
        return False
    trace = os.path.join(path, "trace")
    return os.path.isfile(trace) and os.access(trace, os.R_OK)
