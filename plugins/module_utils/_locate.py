# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where tracefs (and debugfs) are: from the mount table, never by mounting.

Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

from ansible_collections.tracefleet.ftrace.plugins.module_utils._mounts import (
    MountEntry,
    mounts_of_type,
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


def debugfs_state(mounts: list[MountEntry], filesystems: dict[str, bool],
                  mount_point_exists: bool) -> dict:
    """debugfs as the kernel reports it. With debugfs=off it is not even registered,
    and when mounting is disallowed /sys/kernel/debug does not exist."""
    debugfs_mounts = mounts_of_type(mounts, "debugfs")
    return {
        "registered": "debugfs" in filesystems,
        "mounted": bool(debugfs_mounts),
        "mount_point_exists": mount_point_exists,
        "mountpoints": [entry.as_dict() for entry in debugfs_mounts],
    }
