# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Editing /etc/fstab for one mount point, as text in and text out (see fstab(5)).

Only lines whose mount point is the one managed are touched; comments, blank lines
and every other entry stay byte for byte. `read` and `write` handle the file itself
(written atomically, keeping its mode); a backup copy is the caller's job.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import unescape

# The mode of an fstab this module creates (mount(8) and systemd read it as anyone).
NEW_FILE_MODE = 0o644


class FstabError(TracefleetError):
    """The fstab file could not be read or written."""


def escape(field: str) -> str:
    """fstab fields cannot hold whitespace or backslashes: octal-escape them."""
    out = []
    for char in field:
        if char in " \t\n\\":
            out.append("\\%03o" % ord(char))
        else:
            out.append(char)
    return "".join(out)


class FstabEntry:
    __slots__ = ("spec", "mount_point", "fstype", "options", "freq", "passno")

    def __init__(
        self, spec: str, mount_point: str, fstype: str, options: list[str], freq: str = "0", passno: str = "0"
    ) -> None:
        self.spec = spec
        self.mount_point = mount_point
        self.fstype = fstype
        self.options = options
        self.freq = freq
        self.passno = passno

    def render(self) -> str:
        return "%s %s %s %s %s %s" % (
            escape(self.spec),
            escape(self.mount_point),
            self.fstype,
            ",".join(self.options) or "defaults",
            self.freq,
            self.passno,
        )

    def same_as(self, other: FstabEntry) -> bool:
        """Equal for mount(8): option order does not matter."""
        return (
            self.spec == other.spec
            and self.mount_point == other.mount_point
            and self.fstype == other.fstype
            and set(self.options) == set(other.options)
            and self.freq == other.freq
            and self.passno == other.passno
        )


def parse_line(line: str) -> FstabEntry | None:
    """An entry, or None for comments, blank and malformed lines."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    fields = stripped.split()
    if len(fields) < 4:
        return None
    return FstabEntry(
        spec=unescape(fields[0]),
        mount_point=unescape(fields[1]),
        fstype=fields[2],
        options=fields[3].split(","),
        freq=fields[4] if len(fields) > 4 else "0",
        passno=fields[5] if len(fields) > 5 else "0",
    )


def entries_for(text: str, mount_point: str) -> list[FstabEntry]:
    found = []
    for line in text.splitlines():
        entry = parse_line(line)
        if entry is not None and entry.mount_point == mount_point:
            found.append(entry)
    return found


def update(text: str, mount_point: str, wanted: FstabEntry | None) -> tuple[str, bool]:
    """Make `mount_point` have exactly the entry `wanted` (or none); return (text, changed).

    The first existing entry for the mount point is replaced in place; further
    duplicates are dropped; with no existing entry the new one is appended.
    """
    lines = text.splitlines(keepends=True)
    result: list[str] = []
    placed = False
    changed = False
    for line in lines:
        entry = parse_line(line)
        if entry is None or entry.mount_point != mount_point:
            result.append(line)
            continue
        if wanted is not None and not placed:
            placed = True
            if entry.same_as(wanted):
                result.append(line)
            else:
                result.append(wanted.render() + "\n")
                changed = True
        else:
            changed = True  # a duplicate, or an entry that should not be there
    if wanted is not None and not placed:
        if result and not result[-1].endswith("\n"):
            result[-1] += "\n"
        result.append(wanted.render() + "\n")
        changed = True
    return "".join(result), changed


def policy_entry(fstype: str, mount_point: str, options: list[str], gid: int | None, mode: int | None) -> FstabEntry:
    """The line that mounts `fstype` at `mount_point` the way the mount policy asks:
    its per-mount options (without the no-op `defaults`), then gid= and mode=."""
    fs_options = [opt for opt in options if opt not in ("defaults",)]
    if gid is not None:
        fs_options.append("gid=%d" % gid)
    if mode is not None:
        fs_options.append("mode=%04o" % mode)
    return FstabEntry(fstype, mount_point, fstype, fs_options)


def read(path: str) -> str:
    """The file's text; a missing fstab reads as empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise FstabError("fstab=%s: cannot read it: %s" % (path, exc)) from None


def write(path: str, text: str) -> None:
    """Replace the file atomically, keeping its mode (NEW_FILE_MODE for a new file)."""
    try:
        _atomicfile.replace_text(path, text, None if os.path.exists(path) else NEW_FILE_MODE)
    except OSError as exc:
        raise FstabError("fstab=%s: cannot write it: %s" % (path, exc)) from None
