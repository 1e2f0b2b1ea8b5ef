# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mount table and filesystem registry, read from the kernel's own files.

Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

MOUNTINFO = "/proc/self/mountinfo"
FILESYSTEMS = "/proc/filesystems"
PROC = "/proc"
# What readlink(2) appends to a /proc link whose file was removed.
_DELETED = " (deleted)"
# How many uses of one process a message names.
MAX_USES = 4

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


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # the process ended, or the link is not ours to read
        return None


def _inside(target: str | None, mount_point: str) -> bool:
    if not target:
        return False
    if target.endswith(_DELETED):
        target = target[: -len(_DELETED)]
    return target == mount_point or target.startswith(mount_point.rstrip("/") + "/")


def _mapped(maps: str) -> list[str]:
    """The file names in a /proc/PID/maps text (the sixth field, when there is one)."""
    names = []
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5] not in names:
            names.append(fields[5])
    return names


def _shown(text: str) -> str:
    """A process's name or file name, safe in a message (control characters as '?')."""
    return "".join(char if char.isprintable() else "?" for char in text)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def users_of(mount_point: str, proc: str = PROC) -> list[dict]:
    """The processes that keep `mount_point` (or a mount inside it) busy, the way fuser -m
    finds them: a working directory, root directory, executable, open file or mapped
    file under it, read from /proc/PID/{cwd,root,exe,fd/*,maps}. Each is a dict with
    `pid`, `command` (/proc/PID/comm) and `uses` (at most MAX_USES, e.g. "fd 3 <path>").
    Only processes this one may inspect and that see the mount point under the same
    name (this mount namespace) are found; a process that ends meanwhile is skipped."""
    try:
        pids = sorted((name for name in os.listdir(proc) if name.isdigit()), key=int)
    except OSError:
        return []
    found = []
    for pid in pids:
        base = os.path.join(proc, pid)
        uses = []
        for link in ("cwd", "root", "exe"):
            target = _readlink(os.path.join(base, link))
            if _inside(target, mount_point):
                uses.append("%s %s" % (link, _shown(target or "")))
        try:
            fds = sorted(os.listdir(os.path.join(base, "fd")), key=lambda fd: int(fd) if fd.isdigit() else -1)
        except OSError:
            fds = []
        for fd in fds:
            target = _readlink(os.path.join(base, "fd", fd))
            if _inside(target, mount_point):
                uses.append("fd %s %s" % (fd, _shown(target or "")))
        maps = _mapped(_read_text(os.path.join(base, "maps")))
        uses += ["mapped %s" % _shown(name) for name in maps if _inside(name, mount_point)]
        if uses:
            command = _shown(_read_text(os.path.join(base, "comm")).strip()) or "?"
            found.append({"pid": int(pid), "command": command, "uses": uses[:MAX_USES]})
    return found


def describe_users(users: list[dict]) -> str:
    """`users_of`'s result in words: "pid 812 (cat: fd 3 /sys/kernel/debug/x), ..."."""
    return ", ".join("pid %d (%s: %s)" % (user["pid"], user["command"], "; ".join(user["uses"])) for user in users)
