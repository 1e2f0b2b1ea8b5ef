# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the kernel itself shows about debugfs, independent of tracefleet's code.

Prints one JSON object: debugfs in /proc/filesystems, /sys/kernel/debug present,
debugfs in /proc/self/mountinfo, the `debugfs=` kernel parameter, and the errno of a
mount(2) of debugfs on a fresh empty directory (0: the mount worked and was undone).
"""

import ctypes
import errno
import json
import os
import tempfile


def filesystems():
    with open("/proc/filesystems") as handle:
        return any(line.split()[-1] == "debugfs" for line in handle if line.split())


def mounted():
    with open("/proc/self/mountinfo") as handle:
        return any(line.split(" - ", 1)[1].split()[0] == "debugfs" for line in handle if " - " in line)


def cmdline():
    with open("/proc/cmdline") as handle:
        for word in handle.read().split():
            if word.startswith("debugfs="):
                return word.split("=", 1)[1]
    return None


def try_mount():
    libc = ctypes.CDLL(None, use_errno=True)
    target = tempfile.mkdtemp(prefix="debugfs-evidence-", dir="/run")
    try:
        if libc.mount(b"debugfs", target.encode(), b"debugfs", 0, None) != 0:
            code = ctypes.get_errno()
            return errno.errorcode.get(code, str(code))
        if libc.umount2(target.encode(), 0) != 0:
            raise OSError(ctypes.get_errno(), "umount2 " + target)
        return "0"
    finally:
        os.rmdir(target)


print(
    json.dumps(
        {
            "filesystems": filesystems(),
            "mount_point": os.path.isdir("/sys/kernel/debug"),
            "mounted": mounted(),
            "cmdline": cmdline(),
            "mount_errno": try_mount(),
        }
    )
)
