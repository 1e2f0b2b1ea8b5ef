# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whether debugfs comes back at boot, and keeping it from coming back.

Two things mount debugfs at boot on a distribution host: systemd's
`sys-kernel-debug.mount` unit and a debugfs line in the fstab. The tracefs module's
`debugfs: unmounted` masks the unit (`Mask`: the symlink `systemctl mask` makes,
without running systemctl) and comments the fstab lines out (`_fstab.comment_out`);
tracefs_info reports both (`boot_facts`). Neither is recorded in the ledger: teardown
leaves them in place.

`root` relocates /etc, /lib, /usr/lib and /run, for tests on a fake tree.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _fstab
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

UNIT = "sys-kernel-debug.mount"
# Where `systemctl mask` puts a mask: the admin's unit directory, ahead of the
# vendor's and of the fstab generator's units.
UNIT_DIR = "/etc/systemd/system"
VENDOR_UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system")
# Exists when systemd is PID 1 (sd_booted(3)).
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
MASK_TARGET = "/dev/null"
FSTAB = "/etc/fstab"

# The unit's states as this module reports them.
MASKED = "masked"
UNMASKED = "unmasked"
# A unit file of the admin's own in UNIT_DIR (not a mask): not ours to replace.
OVERRIDDEN = "overridden"


class DebugfsBootError(TracefleetError):
    """debugfs cannot be kept from mounting at boot; nothing was changed."""


def _at(root: str, absolute: str) -> str:
    return os.path.join(root, absolute.lstrip("/"))


def unit_path(root: str = "/") -> str:
    return _at(root, UNIT_DIR + "/" + UNIT)


def unit_state(root: str = "/") -> str | None:
    """MASKED, UNMASKED, OVERRIDDEN, or None where no systemd would mount debugfs (not
    PID 1, and no vendor unit). systemd takes a symlink to /dev/null or an empty file
    as a mask."""
    path = unit_path(root)
    if os.path.islink(path):
        with contextlib.suppress(OSError):
            if os.readlink(path) == MASK_TARGET:
                return MASKED
        return OVERRIDDEN
    if os.path.lexists(path):
        with contextlib.suppress(OSError):
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                return MASKED
        return OVERRIDDEN
    systemd = os.path.isdir(_at(root, SYSTEMD_RUNTIME_DIR)) or any(
        os.path.lexists(_at(root, directory + "/" + UNIT)) for directory in VENDOR_UNIT_DIRS
    )
    return UNMASKED if systemd else None


class Mask:
    """Masking `sys-kernel-debug.mount`, worked out before anything is applied.
    Refuses (DebugfsBootError) a unit file of the admin's own in UNIT_DIR."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.path = unit_path(root)
        self.before = unit_state(root)
        if self.before == OVERRIDDEN:
            raise DebugfsBootError(
                "debugfs=unmounted: %s is a unit of its own, not a mask; not replacing it. "
                "Remove it, or mask the unit yourself (systemctl mask --force %s)" % (self.path, UNIT)
            )
        self.changed = self.before == UNMASKED
        self.after = MASKED if self.before is not None else None

    def describe(self) -> str:
        return "mask %s (%s -> %s)" % (UNIT, self.path, MASK_TARGET)

    def check_writable(self) -> None:
        """Refuse before any change when the mask cannot be made."""
        directory = os.path.dirname(self.path)
        while not os.path.lexists(directory) and os.path.dirname(directory) != directory:
            directory = os.path.dirname(directory)
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
            raise DebugfsBootError(
                "debugfs=unmounted: cannot mask %s: %s is not a writable directory" % (UNIT, directory)
            )

    def apply(self) -> None:
        """Make the symlink (under a temporary name first, then renamed: no half state)."""
        directory = os.path.dirname(self.path)
        temporary = os.path.join(directory, ".%s.tracefleet-%d" % (UNIT, os.getpid()))
        try:
            os.makedirs(directory, 0o755, exist_ok=True)
            os.symlink(MASK_TARGET, temporary)
            os.rename(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise DebugfsBootError("debugfs=unmounted: cannot mask %s: %s" % (UNIT, exc)) from None


def boot_facts(root: str = "/", policy: str | None = None) -> dict:
    """Whether debugfs is kept from mounting at boot: the unit's state, the fstab's
    active debugfs lines (mount points; those with `noauto` do not mount at boot), and
    `kept_unmounted`: true when the kernel disallows mounting (`policy` off or no-mount)
    or neither systemd nor the fstab would mount it; null when that cannot be told
    (an unreadable fstab, a unit of the admin's own)."""
    state = unit_state(root)
    try:
        entries: list[_fstab.FstabEntry] | None = _fstab.entries_of_type(_fstab.read(_at(root, FSTAB)), "debugfs")
    except _fstab.FstabError:
        entries = None
    if policy in ("off", "no-mount"):
        kept: bool | None = True
    elif state == UNMASKED or (entries is not None and any("noauto" not in e.options for e in entries)):
        kept = False
    elif state == OVERRIDDEN or entries is None:
        kept = None
    else:
        kept = True
    return {
        "systemd_unit": state,
        "fstab_mount_points": None if entries is None else [_fstab.printable(e.mount_point) for e in entries],
        "kept_unmounted": kept,
    }
