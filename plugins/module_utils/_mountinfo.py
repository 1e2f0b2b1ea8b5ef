# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mount table and filesystem registry, read from the kernel's own files.

Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

MOUNTINFO = "/proc/self/mountinfo"
FILESYSTEMS = "/proc/filesystems"

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes in mount table fields (space is \\040, etc.)."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


class MountEntry:
    """One line of /proc/self/mountinfo (see proc(5))."""

    __slots__ = (
        "mount_id",
        "parent_id",
        "device",
        "root",
        "mount_point",
        "options",
        "optional_fields",
        "fstype",
        "source",
        "super_options",
    )

    def __init__(
        self,
        mount_id: int,
        parent_id: int,
        device: str,
        root: str,
        mount_point: str,
        options: list[str],
        optional_fields: list[str],
        fstype: str,
        source: str,
        super_options: list[str],
    ) -> None:
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.device = device
        self.root = root
        self.mount_point = mount_point
        self.options = options
        self.optional_fields = optional_fields
        self.fstype = fstype
        self.source = source
        self.super_options = super_options

    def as_dict(self) -> dict:
        return {
            "mount_point": self.mount_point,
            "source": self.source,
            "fstype": self.fstype,
            "options": list(self.options),
            "super_options": list(self.super_options),
            "root": self.root,
            "mount_id": self.mount_id,
        }

    def __repr__(self) -> str:
        return "MountEntry(%r on %r type %r)" % (self.source, self.mount_point, self.fstype)


class MountinfoError(TracefleetError, ValueError):
    """A mountinfo line that does not have the documented shape."""


def parse_mountinfo_line(line: str) -> MountEntry:
    fields = line.split(" ")
    try:
        separator = fields.index("-", 6)
    except ValueError:
        raise MountinfoError("no '-' separator in mountinfo line: %r" % line) from None
    if separator < 6 or len(fields) < separator + 3:
        raise MountinfoError("too few fields in mountinfo line: %r" % line)
    try:
        mount_id = int(fields[0])
        parent_id = int(fields[1])
    except ValueError:
        raise MountinfoError("non-numeric mount id in mountinfo line: %r" % line) from None
    super_options = fields[separator + 3] if len(fields) > separator + 3 else ""
    return MountEntry(
        mount_id=mount_id,
        parent_id=parent_id,
        device=fields[2],
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=fields[5].split(","),
        optional_fields=fields[6:separator],
        fstype=unescape(fields[separator + 1]),
        source=unescape(fields[separator + 2]),
        super_options=[opt for opt in super_options.split(",") if opt],
    )


def parse_mountinfo(text: str) -> list[MountEntry]:
    return [parse_mountinfo_line(line) for line in text.splitlines() if line.strip()]


def read_mountinfo(path: str = MOUNTINFO) -> list[MountEntry]:
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return parse_mountinfo(handle.read())


def visible_mounts(entries: list[MountEntry]) -> list[MountEntry]:
    """Drop entries hidden by a later mount on the same mount point (the last one wins)."""
    latest: dict[str, MountEntry] = {}
    for entry in entries:
        latest[entry.mount_point] = entry
    return [entry for entry in entries if latest[entry.mount_point] is entry]


def mounts_of_type(entries: list[MountEntry], fstype: str) -> list[MountEntry]:
    return [entry for entry in visible_mounts(entries) if entry.fstype == fstype]


def parse_filesystems(text: str) -> dict[str, bool]:
    """Map each registered filesystem type to whether it needs a block device."""
    registered = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and parts[0] == "nodev":
            registered[parts[1]] = False
        else:
            registered[parts[-1]] = True
    return registered


def read_filesystems(path: str = FILESYSTEMS) -> dict[str, bool]:
    with open(path, encoding="utf-8") as handle:
        return parse_filesystems(handle.read())
