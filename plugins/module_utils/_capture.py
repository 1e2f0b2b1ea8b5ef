# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capturing a window of one tracing buffer on the traced host.

A window: empty the buffer (unless told not to), turn recording on, wait for a
duration or a workload, turn recording off, take everything out, and put
tracing_on back the way it was. For `format: dat` the per-CPU ring buffers are
drained *during* the window too (per_cpu/cpuN/trace_pipe_raw, non-blocking,
whole pages, no formatting in the kernel), so a window longer than the buffer
holds loses nothing as long as the reader keeps up; the pages land in one file
per CPU, which `_tracedat_writer` turns into a trace.dat. For `format: text` the
instance's `trace` file is copied at the end.

Loss comes from per_cpu/cpuN/stats before and after: overrun + commit overrun +
dropped events. The event count is the kernel's own: "read events" that our
reads consumed, plus any entries still in the buffer.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import signal
import sys
import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _instance, _tracedat_writer
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Control

READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in Python 3.10+
F_GETPIPE_SZ = 1032
PAGE_HEADER = 16  # u64 timestamp + commit (a long) on 64-bit kernels
FULL_PAGE_SLACK = 512  # a page whose data ends this close to its end counts as full
LOSS_FIELDS = ("overrun", "commit overrun", "dropped events")


class CaptureError(Exception):
    pass


def parse_stats(text: str | None) -> dict:
    """per_cpu/cpuN/stats -> {field: number}; timestamps stay floats (seconds)."""
    stats = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        try:
            stats[key.strip()] = float(value) if "." in value else int(value)
        except ValueError:
            continue
    return stats


class Buffer:
    """One tracing buffer: the top level (instance None) or an instance."""

    def __init__(self, control: Control, instance: str | None) -> None:
        self.control = control
        self.instance = instance

    def rel(self, *parts: str) -> str:
        return _instance.relative(self.instance, *parts)

    def path(self, *parts: str) -> str:
        return self.control.path(self.rel(*parts))

    def cpus(self) -> list:
        names = []
        try:
            names = os.listdir(self.path("per_cpu"))
        except OSError as exc:
            raise CaptureError("cannot list %s: %s" % (self.path("per_cpu"), exc.strerror))
        cpus = sorted(int(name[3:]) for name in names if re.match(r"^cpu\d+$", name))
        # trace.dat numbers CPUs 0..n-1: a gap (an impossible CPU) gets an empty slot.
        return list(range(cpus[-1] + 1)) if cpus else []

    def stats(self, cpus: list) -> dict:
        return {cpu: parse_stats(self.stats_text(cpu).decode()) for cpu in cpus}

    def stats_text(self, cpu: int) -> bytes:
        return (self.control.read(self.rel("per_cpu", "cpu%d" % cpu, "stats")) or "").encode()

    def tracing_on(self) -> bool:
        return (self.control.read(self.rel("tracing_on")) or "0").strip() == "1"

    def clock(self) -> str:
        text = self.control.read(self.rel("trace_clock")) or ""
        match = re.search(r"\[(\S+)\]", text)
        return match.group(1) if match else "local"

    def clear(self) -> None:
        """Empty every CPU's buffer: an open with O_TRUNC on `trace`."""
        path = self.path("trace")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            os.close(fd)
        except OSError as exc:
            raise CaptureError("emptying the buffer (%s) failed: %s" % (path, exc.strerror))

    def enabled_events(self) -> list:
        """'system:event' for every event enabled in this buffer (set_event)."""
        return [event for event in _instance.enabled_events(self.control, self.instance) if ":" in event]

    def summarise_events(self, events: list) -> list:
        """The enabled events, with a fully enabled system as 'system:*'."""
        systems = {}
        for event in events:
            systems.setdefault(event.partition(":")[0], []).append(event)
        summary = []
        for system, members in systems.items():
            whole = (self.control.read(self.rel("events", system, "enable")) or "").strip() == "1"
            summary.extend([system + ":*"] if whole and len(members) > 1 else members)
        return summary

    def event_format(self, system: str, event: str) -> bytes:
        return _read_bytes(self.path("events", system, event, "format"))


class Drainer:
    """Consuming, non-blocking reads of every CPU's trace_pipe_raw into one sink per
    CPU (a `_compress.Stream`).

    Full pages move with splice(2), straight into a compressor's pipe or through a
    pipe of our own into a file (no copy through this process, and the kernel hands
    out only full pages); read(2) takes what is left at the end, including the last,
    partly filled page. Without os.splice (Python < 3.10) every page is read(2).
    """

    def __init__(self, buffer: Buffer, cpus: list, sinks: list) -> None:
        self.sinks = list(sinks)
        self.fds = []
        self.busy = 0.0
        self.pipe = None
        self.splice = hasattr(os, "splice")
        try:
            for cpu in cpus:
                path = buffer.path("per_cpu", "cpu%d" % cpu, "trace_pipe_raw")
                try:
                    self.fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise CaptureError("opening %s failed: %s" % (path, exc.strerror))
                    self.fds.append(None)  # a possible CPU that is not there
            if self.splice and not all(sink.is_pipe for sink in sinks):
                self.pipe = os.pipe()
                try:
                    fcntl.fcntl(self.pipe[1], F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:
                    pass  # the default pipe size works, in smaller steps
        except Exception:
            self.close()
            raise

    def _splice(self, fd: int, sink) -> int:
        total = 0
        target = sink.fd if sink.is_pipe else self.pipe[1]
        while True:
            try:
                moved = os.splice(fd, target, PIPE_SIZE)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                if exc.errno == errno.EINVAL:  # no splice for this file here
                    self.splice = False
                    break
                raise CaptureError("reading the ring buffer failed: %s" % exc.strerror)
            if not moved:
                break
            if not sink.is_pipe:
                left = moved
                while left:
                    left -= os.splice(self.pipe[0], sink.fd, left)
            total += moved
        sink.raw_bytes += total
        return total

    def _read(self, fd: int, sink, final: bool) -> int:
        total = 0
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    return total
                raise CaptureError("reading the ring buffer failed: %s" % exc.strerror)
            if not data:
                return total
            sink.write(data)
            total += len(data)
            if not final and page_data_size(data) < len(data) - FULL_PAGE_SLACK:
                return total

    def drain(self, final: bool = False) -> int:
        """Move the pages there are now; returns the bytes moved.

        While recording is on, only full pages are taken: the writer's page stays,
        because the reads themselves (when syscalls are traced) keep adding events to
        it, so reading it would never end. The final drain, with recording off,
        takes everything.
        """
        started = time.monotonic()
        total = 0
        for fd, sink in zip(self.fds, self.sinks):
            if fd is None:
                continue
            if self.splice:
                total += self._splice(fd, sink)
            if final or not self.splice:
                total += self._read(fd, sink, final)
        self.busy += time.monotonic() - started
        return total

    def close(self) -> None:
        for fd in self.fds + list(self.pipe or ()):
            if fd is not None:
                os.close(fd)
        self.fds, self.pipe = [], None


def page_data_size(page: bytes) -> int:
    """Bytes of event data in a ring-buffer page (64-bit layout): the low bits of
    `commit`, past the header; the top bits are the missed-events flags."""
    if len(page) < PAGE_HEADER:
        return 0
    # The missed-events flags are added as a signed int: only the low 32 bits count.
    commit = int.from_bytes(page[8:16], sys.byteorder) & 0x0FFFFFFF
    return PAGE_HEADER + commit


class Abandoned(CaptureError):
    """The controller went away while the window was open."""


def controller_gone(fd: int = 1) -> bool:
    """True when nobody reads our standard output any more: the connection that ran
    this module closed (a killed ansible-playbook, a lost controller). The write end
    of a pipe whose reader has gone polls as an error."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError):
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _fd, mask in events)


def wait_window(
    duration: float | None,
    process,
    drainer: Drainer | None,
    deadline: float | None,
    interval: float = 0.25,
    gone=controller_gone,
) -> bool:
    """Wait out the window, draining as we go. Returns False when `deadline` passed
    first (the workload is still running). Raises Abandoned when the controller went
    away, so that the window is closed and the host put back without waiting for the
    workload."""
    end = time.monotonic() + duration if duration is not None else None
    while True:
        now = time.monotonic()
        if process is not None and process.poll() is not None:
            return True
        if end is not None and now >= end:
            return True
        if deadline is not None and now >= deadline:
            return False
        if gone():
            raise Abandoned(
                "the controller's connection closed while the window was open; "
                "the window was closed and tracing_on put back"
            )
        if drainer is not None:
            drainer.drain()
        pause = interval
        if end is not None:
            pause = min(pause, max(0.0, end - time.monotonic()))
        if process is not None:
            try:
                process.wait(timeout=pause)
            except Exception:  # subprocess.TimeoutExpired
                pass
        else:
            time.sleep(pause)


def stop_workload(process) -> None:
    """Kill the workload and everything it started (it runs in a session of its own)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.wait()


def loss(before: dict, after: dict) -> dict:
    """Events lost per CPU in the window, from the stats before and after."""
    lost = {}
    for cpu, stats in after.items():
        old = before.get(cpu, {})
        lost[cpu] = sum(max(0, stats.get(field, 0) - old.get(field, 0)) for field in LOSS_FIELDS)
    return lost


def kernel_events(before: dict, after: dict, consumed: bool) -> dict:
    """Events the kernel says the capture holds, per CPU."""
    counts = {}
    for cpu, stats in after.items():
        if consumed:
            counts[cpu] = max(0, stats.get("read events", 0) - before.get(cpu, {}).get("read events", 0)) + stats.get(
                "entries", 0
            )
        else:
            counts[cpu] = stats.get("entries", 0)
    return counts


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def opening_layout(buffer: Buffer, events: list, kallsyms: bool) -> _tracedat_writer.DatLayout:
    """What a trace.dat needs that does not change during a window: page size, headers,
    the ftrace formats and those of `events`, kallsyms. `closing` adds the rest."""
    ftrace = []
    ftrace_dir = buffer.path("events", "ftrace")
    for name in sorted(os.listdir(ftrace_dir)) if os.path.isdir(ftrace_dir) else []:
        data = _read_bytes(os.path.join(ftrace_dir, name, "format"))
        if data:
            ftrace.append(data)
    systems = {}
    for entry in events:
        system, _sep, event = entry.partition(":")
        if system == "ftrace":
            continue
        fmt = buffer.event_format(system, event)
        if fmt:
            systems.setdefault(system, []).append(fmt)
    return _tracedat_writer.DatLayout(
        page_size=os.sysconf("SC_PAGE_SIZE"),
        header_page=_read_bytes(buffer.path("events", "header_page")),
        header_event=_read_bytes(buffer.path("events", "header_event")),
        ftrace_formats=ftrace,
        systems=sorted(systems.items()),
        kallsyms=_read_bytes("/proc/kallsyms") if kallsyms else b"",
        printk_formats=b"",
        cmdlines=b"",
        cpu_stats=[],
        trace_clock=b"",
        uname=b"",
    )


def closing(layout: _tracedat_writer.DatLayout, buffer: Buffer, cpu_stats: list) -> None:
    """Fill in what is read when the window has closed: printk formats, the saved
    cmdlines (the window's processes), per-CPU stats, the trace clock, uname."""
    control = buffer.control
    uname = os.uname()
    layout.printk_formats = _read_bytes(control.path("printk_formats"))
    layout.cmdlines = _read_bytes(control.path("saved_cmdlines"))
    layout.cpu_stats = cpu_stats
    layout.trace_clock = (control.read(buffer.rel("trace_clock")) or "").strip().encode()
    layout.uname = " ".join((uname.sysname, uname.nodename, uname.release, uname.version, uname.machine)).encode()


def copy_text(buffer: Buffer, path: str) -> int:
    """Copy the buffer's `trace` file (formatted by the kernel, not consumed)."""
    with open(buffer.path("trace"), "rb") as source, open(path, "wb") as out:
        while True:
            data = source.read(READ_SIZE)
            if not data:
                return out.tell()
            out.write(data)
