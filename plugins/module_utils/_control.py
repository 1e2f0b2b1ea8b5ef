# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way tracefleet writes a tracefs control file.

Every write goes through `Control.write`: open, one write(2), close; O_APPEND for
the shared list files, never O_TRUNC on them. A failed write becomes a
`ControlError` naming the path, the value, errno and the `error_log` lines the
write caused (with the kernel's caret under the bad token).

One value is one command: the kernel splits a write to `dynamic_events`,
`set_event` or `set_ftrace_filter` at each newline and runs every line, so a
value holding a newline (or a NUL, or any other control character) would write
commands nobody asked for. `Control.write` refuses such a value before opening
the file (`UnsafeValue`), whatever the caller checked before.

`Transaction` keeps an undo action for each write of a task, so a task that
fails half-way (a filter the kernel rejects on the third event) can put back
what it already changed: bad input changes nothing on the host.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import errno
import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

# Files where a truncating write would wipe other users' entries. `trigger` is one
# of them: opening an event's trigger file with O_TRUNC unregisters its hist
# triggers (seen on the lab's 6.1 kernel), so triggers are always appended too.
SHARED_LISTS = frozenset(
    (
        "kprobe_events",
        "uprobe_events",
        "dynamic_events",
        "set_event",
        "set_event_pid",
        "set_event_notrace_pid",
        "set_ftrace_filter",
        "set_ftrace_notrace",
        "set_graph_function",
        "set_graph_notrace",
        "set_ftrace_pid",
        "set_ftrace_notrace_pid",
        "trigger",
    )
)


class ControlError(TracefleetError):
    """A tracefs write the kernel refused."""

    def __init__(self, path: str, value: str, err: int, error_log: list[str]) -> None:
        super().__init__(path, value, err)
        self.path = path
        self.value = value
        self.errno = err
        self.error_log = error_log

    def __str__(self) -> str:
        text = "writing %r to %s failed: [Errno %d] %s" % (self.value, self.path, self.errno, os.strerror(self.errno))
        if self.error_log:
            text += "; the kernel's error_log says:\n" + "\n".join(self.error_log)
        return text


class UnsafeValue(ControlError):
    """A value `Control.write` refuses to write: it would be more than one command."""

    def __init__(self, path: str, value: str, problem: str) -> None:
        super().__init__(path, value, errno.EINVAL, [])
        self.problem = problem

    def __str__(self) -> str:
        return "refusing to write %r to %s: %s; the kernel would take it as more than one command" % (
            self.value,
            self.path,
            self.problem,
        )


def control_character(text: str) -> str | None:
    """A description of the first control character in `text` (newline, NUL, ESC, DEL,
    Unicode line separators...), or None. Tabs are allowed: the kernel reads them as
    spaces."""
    for index, char in enumerate(text):
        if char != "\t" and not char.isprintable():
            return "it holds the non-printable character %r at position %d" % (char, index)
    return None


def single_command(path: str, value: str) -> str:
    """`value` as the one line a control-file write sends (a trailing newline added),
    or UnsafeValue when it holds a newline, NUL or another control character."""
    text = value[:-1] if value.endswith("\n") else value
    problem = control_character(text)
    if problem is not None:
        raise UnsafeValue(path, value, problem)
    return text + "\n"


class Control:
    """Reads and writes control files under one tracefs root."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, relative: str) -> str | None:
        try:
            with open(self.path(relative), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def exists(self, relative: str) -> bool:
        return os.path.exists(self.path(relative))

    def _error_logs(self, relative: str) -> list[str]:
        """error_log files a write to `relative` can report into: the top level's, and
        the instance's own when the file is inside an instance."""
        logs = ["error_log"]
        parts = relative.split(os.sep)
        if len(parts) > 2 and parts[0] == "instances":
            logs.append(os.path.join("instances", parts[1], "error_log"))
        return [log for log in logs if self.exists(log)]

    def _log_lines(self, logs: list[str]) -> dict[str, list[str]]:
        return {log: (self.read(log) or "").splitlines() for log in logs}

    def write(self, relative: str, value: str, append: bool | None = None) -> None:
        """Write `value` to a control file in a single write(2).

        Shared list files are always opened with O_APPEND (a truncating open would
        clear everyone's entries); other files are opened for a plain write, which
        is what the kernel expects for a knob.
        """
        name = os.path.basename(relative)
        if append is None:
            append = name in SHARED_LISTS
        if name in SHARED_LISTS and not append:
            raise ValueError("refusing a truncating write to the shared list %s" % relative)
        data = single_command(self.path(relative), value).encode()
        logs = self._error_logs(relative)
        before = self._log_lines(logs)
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        self._write_once(relative, value, flags, data, logs, before)

    def _write_once(
        self, relative: str, value: str, flags: int, data: bytes, logs: list[str], before: dict[str, list[str]]
    ) -> None:
        """open, one write(2) (none when `data` is empty), close; a failure of either is
        a ControlError, and a failing close never hides the write's own error."""
        try:
            fd = os.open(self.path(relative), flags)
        except OSError as exc:
            raise ControlError(self.path(relative), value, exc.errno or errno.EIO, []) from None
        try:
            if data:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.EIO, "short write (%d of %d bytes)" % (written, len(data)))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise ControlError(
                self.path(relative), value, exc.errno or errno.EIO, self._new_lines(before, self._log_lines(logs))
            ) from None
        try:
            os.close(fd)
        except OSError as exc:
            raise ControlError(
                self.path(relative), value, exc.errno or errno.EIO, self._new_lines(before, self._log_lines(logs))
            ) from None

    @staticmethod
    def _new_lines(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
        """Lines that appeared in the error logs (each keeps only the last 8 errors)."""
        new: list[str] = []
        for log, lines in after.items():
            old = before.get(log, [])
            # The log is a window: find the longest tail of `old` that is a head of `lines`.
            overlap = 0
            for size in range(min(len(old), len(lines)), 0, -1):
                if old[-size:] == lines[:size]:
                    overlap = size
                    break
            new.extend(line for line in lines[overlap:] if line.strip())
        return new

    def replace_list(self, relative: str, entries: str) -> None:
        """Rewrite a pid list in one all-or-nothing write. The pid files have no removal
        syntax, so removing one pid means writing back all the others; this is the only
        truncating write tracefleet makes to a list file."""
        pid_lists = ("set_event_pid", "set_ftrace_pid", "set_event_notrace_pid", "set_ftrace_notrace_pid")
        if os.path.basename(relative) not in pid_lists:
            raise ValueError("replace_list is only for pid lists, not %s" % relative)
        data = single_command(self.path(relative), entries.strip()).encode() if entries.strip() else b""
        logs = self._error_logs(relative)
        before = self._log_lines(logs)
        self._write_once(relative, entries, os.O_WRONLY | os.O_TRUNC, data, logs, before)

    def mkdir(self, relative: str) -> None:
        try:
            os.mkdir(self.path(relative))
        except OSError as exc:
            raise ControlError(self.path(relative), "mkdir", exc.errno or errno.EIO, []) from None

    def rmdir(self, relative: str) -> None:
        try:
            os.rmdir(self.path(relative))
        except OSError as exc:
            raise ControlError(self.path(relative), "rmdir", exc.errno or errno.EIO, []) from None


class Transaction:
    """Writes with undo: `rollback()` reverts, newest first, what this task changed."""

    def __init__(self, control: Control, dry_run: bool = False) -> None:
        self.control = control
        self.dry_run = dry_run
        self.undo: list[tuple[str, str]] = []
        self.done: list[str] = []

    def write(
        self,
        relative: str,
        value: str,
        undo_value: str | None = None,
        note: str | None = None,
        undo_if_failed: bool = False,
    ) -> None:
        """Write (unless dry-run) and remember how to put it back (`undo_value`).

        `undo_if_failed` is for files a failed write still changes: a rejected event
        filter disables the event's filter and leaves the error text in its place.
        """
        if not self.dry_run:
            try:
                self.control.write(relative, value)
            except ControlError:
                if undo_if_failed and undo_value is not None:
                    self.undo.append((relative, undo_value))
                raise
            if undo_value is not None:
                self.undo.append((relative, undo_value))
        self.done.append(note or "%s <- %s" % (relative, value.strip()))

    def replace_list(self, relative: str, entries: str, undo_entries: str) -> None:
        if not self.dry_run:
            self.control.replace_list(relative, entries)
            self.undo.append((relative, "\0replace:" + undo_entries))
        self.done.append("%s <- [%s]" % (relative, entries))

    def rollback(self) -> list[str]:
        """Best effort: a failure here is reported, not raised, so every undo is tried."""
        problems = []
        while self.undo:
            relative, value = self.undo.pop()
            try:
                if value.startswith("\0replace:"):
                    self.control.replace_list(relative, value[len("\0replace:") :])
                else:
                    self.control.write(relative, value)
            except ControlError as exc:
                problems.append(str(exc))
        return problems
