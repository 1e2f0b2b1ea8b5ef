# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Editing /etc/fstab for one mount point, as text in and text out (see fstab(5)).

Only lines whose mount point is the one managed are touched; comments, blank lines
and every other entry stay byte for byte, whatever their encoding: the file is read as
bytes and decoded with `surrogateescape`, so a byte that is not UTF-8 comes back out
exactly as it went in. Lines end at `\\n` only, fields are separated by spaces and tabs
(what libmount does), and mount points are compared canonically (`/sys/kernel/tracing/`
and `/sys/kernel/tracing` are one mount point).

`read` and `write` handle the file itself (a regular file only; written atomically,
keeping its mode); `locked` serialises editors; a backup copy is the caller's job.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import posixpath
import re
import stat
import time
from typing import Iterator

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import unescape

# The mode of an fstab this module creates (mount(8) and systemd read it as anyone).
NEW_FILE_MODE = 0o644
# The lock file next to the fstab (libmount's name for the flock of a file it
# updates: "<file>.lock"), root's alone so no other user can hold it.
LOCK_SUFFIX = ".lock"
LOCK_FILE_MODE = 0o600
# How long `locked` waits for another editor (libmount waits 30 s for its mtab lock).
LOCK_TIMEOUT = 30.0
# No real fstab comes near this; a bigger "fstab" is the wrong file.
MAX_SIZE = 4 * 1024 * 1024
ENCODING = "utf-8"
ERRORS = "surrogateescape"
_FIELD_SEPARATOR = re.compile(r"[ \t]+")


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
        """Equal for mount(8): option order and the spelling of the mount point do not matter."""
        return (
            self.spec == other.spec
            and canonical(self.mount_point) == canonical(other.mount_point)
            and self.fstype == other.fstype
            and set(self.options) == set(other.options)
            and self.freq == other.freq
            and self.passno == other.passno
        )


def canonical(mount_point: str) -> str:
    """The mount point as a path compares: `/sys/kernel/tracing/`, `//sys/kernel/tracing`
    and `/sys/kernel/./tracing` are `/sys/kernel/tracing`. Lexical only (no symlink is
    followed: an fstab names mount points that may not exist, or sit on a dead NFS
    server); `none` and `swap` stay as they are."""
    if not mount_point.startswith("/"):
        return mount_point
    return "/" + posixpath.normpath(mount_point).lstrip("/")


def lines_of(text: str) -> list[str]:
    """The lines of `text` with their `\\n`, split at `\\n` only: str.splitlines() would
    also split at \\r, \\f, \\x1c-\\x1e, \\x85 and U+2028 inside someone else's line."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def parse_line(line: str) -> FstabEntry | None:
    """An entry, or None for comments, blank and malformed lines."""
    stripped = line.strip(" \t\r\n")
    if not stripped or stripped.startswith("#"):
        return None
    fields = _FIELD_SEPARATOR.split(stripped)
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


def entries_for(text: str, mount_point: str, fstype: str | None = None) -> list[FstabEntry]:
    """The entries for `mount_point` (compared canonically), of `fstype` when given."""
    found = []
    wanted = canonical(mount_point)
    for line in lines_of(text):
        entry = parse_line(line)
        if entry is None or canonical(entry.mount_point) != wanted:
            continue
        if fstype is None or entry.fstype == fstype:
            found.append(entry)
    return found


def update(text: str, mount_point: str, wanted: FstabEntry | None, fstype: str | None = None) -> tuple[str, bool]:
    """Make `mount_point` have exactly the entry `wanted` (or none of `fstype`); return
    (text, changed).

    Only entries of the managed filesystem type (`wanted.fstype`, else `fstype`; any
    type when neither is given) are ours: the first is replaced in place (kept byte
    for byte when it already says the same), further ones are dropped; with none the
    new one is appended. An entry of another type for the same mount point is someone
    else's: removing leaves it alone, and adding refuses (FstabError) rather than make
    two filesystems claim one mount point.
    """
    managed = wanted.fstype if wanted is not None else fstype
    target = canonical(mount_point)
    result: list[str] = []
    placed = False
    changed = False
    for number, line in enumerate(lines_of(text), 1):
        entry = parse_line(line)
        if entry is None or canonical(entry.mount_point) != target:
            result.append(line)
            continue
        if managed is not None and entry.fstype != managed:
            if wanted is not None:
                raise FstabError(
                    "line %d mounts %s on %s; not adding a %s entry for the same mount point"
                    % (number, printable(entry.fstype), printable(entry.mount_point), managed)
                )
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


# The mark put before a debugfs line that `debugfs: unmounted` comments out; removing
# it gives the original line back byte for byte.
DEBUGFS_COMMENT = "# tracefleet: debugfs: unmounted: "


def entries_of_type(text: str, fstype: str) -> list[FstabEntry]:
    """The active (not commented out) entries of filesystem type `fstype`."""
    return [entry for entry in map(parse_line, lines_of(text)) if entry is not None and entry.fstype == fstype]


def comment_out(text: str, fstype: str, mark: str) -> tuple[str, list[str]]:
    """Comment out every active entry of `fstype`, each line kept whole after `mark`
    (its own bytes, its own line end); return (text, the lines commented out, without
    their line end). Every other line stays as it was."""
    result = []
    commented = []
    for line in lines_of(text):
        entry = parse_line(line)
        if entry is not None and entry.fstype == fstype:
            result.append(mark + line)
            commented.append(line.rstrip("\n"))
        else:
            result.append(line)
    return "".join(result), commented


def printable(text: str) -> str:
    """`text` safe to put in a message: bytes that were not UTF-8, and control
    characters, as escapes."""
    raw = text.encode(ENCODING, ERRORS).decode(ENCODING, "backslashreplace")
    return "".join(char if char.isprintable() or char == " " else repr(char)[1:-1] for char in raw)


def policy_entry(fstype: str, mount_point: str, options: list[str], gid: int | None, mode: int | None) -> FstabEntry:
    """The line that mounts `fstype` at `mount_point` the way the mount policy asks:
    its per-mount options (without the no-op `defaults`), then gid= and mode=."""
    fs_options = [opt for opt in options if opt not in ("defaults",)]
    if gid is not None:
        fs_options.append("gid=%d" % gid)
    if mode is not None:
        fs_options.append("mode=%04o" % mode)
    return FstabEntry(fstype, mount_point, fstype, fs_options)


def _open_regular(path: str) -> int | None:
    """A read-only descriptor of the regular file `path`, or None when it is missing.
    O_NONBLOCK: opening a FIFO put where the fstab should be must not hang."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FstabError("fstab=%s is not a regular file" % path)
        if info.st_size > MAX_SIZE:
            raise FstabError("fstab=%s is %d bytes, more than any fstab (%d)" % (path, info.st_size, MAX_SIZE))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read(path: str) -> str:
    """The file's text (bytes that are not UTF-8 kept as surrogate escapes); a missing
    fstab reads as empty. Raises FstabError for anything but a readable regular file."""
    try:
        fd = _open_regular(path)
        if fd is None:
            return ""
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_SIZE + 1)
    except OSError as exc:
        raise FstabError("fstab=%s: cannot read it: %s" % (path, exc)) from None
    return data.decode(ENCODING, ERRORS)


def check_writable(path: str) -> None:
    """Refuse early (before any change elsewhere) when the fstab cannot be replaced:
    its directory missing, read-only or not writable. Raises FstabError."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FstabError("fstab=%s: cannot write it: %s is not a directory" % (path, directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise FstabError(
            "fstab=%s: cannot write it: %s is not writable (%s)"
            % (path, directory, os.strerror(errno.EROFS if _read_only(directory) else errno.EACCES))
        )


def _read_only(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextlib.contextmanager
def locked(path: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the fstab's lock: flock(2) on `<path>.lock`, the lock file libmount uses
    for a file it updates (libmount's own fstab writer takes no lock, and neither do
    mount(8) or systemd, which only read the fstab). A sibling file rather than the
    fstab itself, because the fstab is replaced by a rename: a lock on the old inode
    would not stop an editor that opens the new one. The lock file is created 0600
    (root's, so no other user can hold it), never through a symlink, and left in
    place (removing it would let a third editor lock a new file while a second
    holds the old one). Raises FstabError after `timeout` seconds."""
    lock_path = path + LOCK_SUFFIX
    try:
        fd = os.open(
            lock_path,
            os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            LOCK_FILE_MODE,
        )
    except OSError as exc:
        raise FstabError("fstab=%s: cannot open its lock file: %s" % (path, exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FstabError("fstab=%s: its lock file %s is not a regular file" % (path, lock_path))
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise FstabError(
                        "fstab=%s: another editor has held %s for %g s; nothing was changed"
                        % (path, lock_path, timeout)
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing releases the flock


def write(path: str, text: str) -> None:
    """Replace the file atomically (fsync'd before the rename, no temp file left on an
    error), keeping its mode (NEW_FILE_MODE for a new file) and every byte `read` gave."""
    try:
        _atomicfile.replace(path, text.encode(ENCODING, ERRORS), None if os.path.exists(path) else NEW_FILE_MODE)
    except OSError as exc:
        raise FstabError("fstab=%s: cannot write it: %s" % (path, exc)) from None
