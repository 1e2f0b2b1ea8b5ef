# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""mount(2) and umount2(2) through libc, and the mount option vocabulary.

Calling the system calls directly gives exact flags (no merging with fstab or the
mount table, which mount(8) does on remount) and the kernel's own errno.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

# <linux/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
# umount2(2): detach now, finish the unmount when the last user lets go ("lazy").
MNT_DETACH = 2

# Per-mount options tracefleet manages, and their flag bits.
FLAG_OPTIONS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
# Options that only restate a default: accepted, no flag.
NEUTRAL_OPTIONS = ("rw", "suid", "dev", "exec", "defaults")
ATIME_OPTIONS = ("noatime", "relatime", "strictatime")
# Security-relevant flags compared on every run; atime flags only when asked for.
ALWAYS_COMPARED = ("ro", "nosuid", "nodev", "noexec")
# Filesystem options with dedicated module options.
DATA_OPTIONS = ("uid", "gid", "mode")


class MountError(TracefleetError, OSError):
    """A failed mount(2)/umount2(2), with the operation spelled out (an OSError too, with
    the kernel's errno)."""

    def __init__(self, operation: str, target: str, err: int) -> None:
        super().__init__(err, os.strerror(err))
        self.operation = operation
        self.target = target

    def __str__(self) -> str:
        hint = ""
        if self.errno == errno.EBUSY:
            hint = " (something is mounted there already, or files in it are open)"
        elif self.errno == errno.EPERM:
            hint = " (needs root: use become)"
        elif self.errno == errno.ENODEV:
            hint = " (the kernel does not know this filesystem type)"
        return "%s %s failed: [Errno %s] %s%s" % (self.operation, self.target, self.errno, self.strerror, hint)


class OptionError(TracefleetError, ValueError):
    """A mount option tracefleet does not accept."""


# Options that cancel each other: the flag and the default it overrides.
CONTRADICTIONS = (("ro", "rw"), ("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"))


def split_options(options: list[str]) -> list[str]:
    """Validate per-mount options; return them normalised (order kept, no duplicates).

    An element may hold several options separated by commas, as in fstab
    ("nosuid,nodev"); spaces around an option are dropped, anything else (a newline,
    a tab) makes the option unknown. The vocabulary is closed: an option is exactly
    one of the names below, or it is refused."""
    result: list[str] = []
    for element in options:
        for option in element.split(","):
            option = option.strip(" ")
            name = option.split("=", 1)[0]
            if name in DATA_OPTIONS:
                raise OptionError("%r belongs in the %s option, not in options" % (option, name))
            if option not in FLAG_OPTIONS and option not in NEUTRAL_OPTIONS:
                raise OptionError(
                    "unsupported mount option %r; supported: %s"
                    % (option, ", ".join(sorted(set(FLAG_OPTIONS) | set(NEUTRAL_OPTIONS))))
                )
            if option not in result:
                result.append(option)
    if len([opt for opt in result if opt in ATIME_OPTIONS]) > 1:
        raise OptionError("at most one of %s may be given" % ", ".join(ATIME_OPTIONS))
    for first, second in CONTRADICTIONS:
        if first in result and second in result:
            raise OptionError("%r and %r contradict each other" % (first, second))
    return result


# What a tracefs superblock has when no mount gave gid= or mode= (fs/tracefs/inode.c:
# TRACEFS_DEFAULT_MODE, and root's group); mountinfo shows gid= and mode= only when
# they differ from these.
TRACEFS_DEFAULT_GID = 0
TRACEFS_DEFAULT_MODE = 0o700
# The default that cancels each flag of CONTRADICTIONS (`exec` cancels `noexec`).
_CANCELS = {default: flag for flag, default in CONTRADICTIONS}


def flags_in_effect(options: list[str]) -> list[str]:
    """The per-mount flags a mount given `options` ends up with, read left to right as
    mount(8) reads an fstab line or a unit's Options=: a later default cancels an earlier
    flag (`noexec,exec` is exec), the last atime option wins. Anything that is not a flag
    (`defaults`, `gid=`, `noauto`, `x-systemd.*`) is left out; unlike `split_options`,
    nothing is refused. In FLAG_OPTIONS order."""
    on: set[str] = set()
    for option in options:
        option = option.strip(" ")
        if option in FLAG_OPTIONS:
            if option in ATIME_OPTIONS:
                on.difference_update(ATIME_OPTIONS)
            on.add(option)
        elif option in _CANCELS:
            on.discard(_CANCELS[option])
    return [option for option in FLAG_OPTIONS if option in on]


def option_value(options: list[str], name: str) -> str | None:
    """The value of `name=` in `options` (the last one: the kernel takes the last), or None."""
    value = None
    for option in options:
        key, separator, text = option.strip(" ").partition("=")
        if separator and key == name:
            value = text
    return value


def tracefs_gid(options: list[str]) -> int:
    """The group a tracefs mount with `options` (mountinfo's super options, an fstab
    line's options) has: its gid=, else TRACEFS_DEFAULT_GID. ValueError when gid= is
    not a number."""
    value = option_value(options, "gid")
    if value is None:
        return TRACEFS_DEFAULT_GID
    if not value or value.strip("0123456789"):
        raise ValueError("gid=%s is not a number" % value)
    return int(value, 10)


def tracefs_mode(options: list[str]) -> int:
    """The mode a tracefs mount with `options` has: its mode= (octal), else
    TRACEFS_DEFAULT_MODE. ValueError when mode= is not octal."""
    value = option_value(options, "mode")
    if value is None:
        return TRACEFS_DEFAULT_MODE
    if not value or value.strip("01234567"):
        raise ValueError("mode=%s is not octal" % value)
    return int(value, 8)


def flags_for(options: list[str]) -> int:
    flags = 0
    for option in options:
        flags |= FLAG_OPTIONS.get(option, 0)
    return flags


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
    return libc


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    result = _libc().mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data) if data else None)
    if result != 0:
        raise MountError("mount -t %s" % fstype, target, ctypes.get_errno())


def remount(target: str, flags: int, data: str) -> None:
    result = _libc().mount(None, _bytes(target), None, flags | MS_REMOUNT, _bytes(data) if data else None)
    if result != 0:
        raise MountError("remount", target, ctypes.get_errno())


def umount(target: str, detach: bool = False) -> None:
    if _libc().umount2(_bytes(target), MNT_DETACH if detach else 0) != 0:
        raise MountError("umount -l" if detach else "umount", target, ctypes.get_errno())
