# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One tracing buffer during a capture: what the window reads and how it drains.

The buffer is a `_tracingdir.TracingDir` (the top level or an instance); the
functions here read what a capture needs from it (CPUs, per-CPU stats, the trace
clock, the enabled events and their formats) and empty it. For `format: dat` the
per-CPU ring buffers are drained *during* the window (per_cpu/cpuN/trace_pipe_raw,
non-blocking, whole pages, no formatting in the kernel) by a `Drainer`, so a window
longer than the buffer holds loses nothing as long as the reader keeps up.

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
import sys
import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _instance
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in Python 3.10+
PAGE_HEADER = 16  # u64 timestamp + commit (a long) on 64-bit kernels
FULL_PAGE_SLACK = 512  # a page whose data ends this close to its end counts as full
LOSS_FIELDS = ("overrun", "commit overrun", "dropped events")


class CaptureError(TracefleetError):
    """A capture that cannot go on (the buffer, the workload, the window)."""


def parse_stats(text: str | None) -> dict:
    """per_cpu/cpuN/stats -> {field: number}; timestamps stay floats (seconds)."""
    stats: dict = {}
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


def where(buffer: TracingDir) -> str:
    """The buffer, as messages name it."""
    return "instance %s" % buffer.instance if buffer.instance else "the top level"


def cpus(buffer: TracingDir) -> list:
    """The buffer's CPUs, 0..n-1 (trace.dat numbers them so: a gap gets an empty slot)."""
    try:
        names = os.listdir(buffer.path("per_cpu"))
    except OSError as exc:
        raise CaptureError("cannot list %s: %s" % (buffer.path("per_cpu"), exc.strerror)) from None
    numbers = sorted(int(name[3:]) for name in names if re.match(r"^cpu\d+$", name))
    return list(range(numbers[-1] + 1)) if numbers else []


def stats_text(buffer: TracingDir, cpu: int) -> bytes:
    """per_cpu/cpuN/stats as the kernel wrote it (it goes into a trace.dat as it is)."""
    return (buffer.read("per_cpu", "cpu%d" % cpu, "stats") or "").encode()


def stats(buffer: TracingDir, cpu_list: list) -> dict:
    return {cpu: parse_stats(stats_text(buffer, cpu).decode()) for cpu in cpu_list}


def tracing_on(buffer: TracingDir) -> bool:
    return (buffer.read("tracing_on") or "0").strip() == "1"


def set_tracing_on(buffer: TracingDir, on: bool) -> None:
    buffer.write("tracing_on", "1" if on else "0")


def clock(buffer: TracingDir) -> str:
    """The buffer's trace clock (the bracketed one of trace_clock)."""
    match = re.search(r"\[(\S+)\]", buffer.read("trace_clock") or "")
    return match.group(1) if match else "local"


def clear(buffer: TracingDir) -> None:
    """Empty every CPU's buffer: an open with O_TRUNC on `trace`."""
    path = buffer.path("trace")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
    except OSError as exc:
        raise CaptureError("emptying the buffer (%s) failed: %s" % (path, exc.strerror)) from None


def enabled_events(buffer: TracingDir) -> list:
    """'system:event' for every event enabled in this buffer (set_event)."""
    return [event for event in _instance.enabled_events(buffer) if ":" in event]


def summarise_events(buffer: TracingDir, events: list) -> list:
    """The enabled events, with a fully enabled system as 'system:*'."""
    systems: dict = {}
    for event in events:
        systems.setdefault(event.partition(":")[0], []).append(event)
    summary: list = []
    for system, members in systems.items():
        whole = (buffer.read("events", system, "enable") or "").strip() == "1"
        summary.extend([system + ":*"] if whole and len(members) > 1 else members)
    return summary


def event_format(buffer: TracingDir, system: str, event: str) -> bytes:
    """events/SYSTEM/EVENT/format, or b"" when there is none."""
    return buffer.read_bytes("events", system, event, "format") or b""


class Drainer:
    """Consuming, non-blocking reads of every CPU's trace_pipe_raw into one sink per
    CPU (a `_compress.Stream`).

    Full pages move with splice(2), straight into a compressor's pipe or through a
    pipe of our own into a file (no copy through this process, and the kernel hands
    out only full pages); read(2) takes what is left at the end, including the last,
    partly filled page. Without os.splice (Python < 3.10) every page is read(2).
    """

    def __init__(self, buffer: TracingDir, cpu_list: list, sinks: list) -> None:
        self.sinks = list(sinks)
        self.fds: list[int | None] = []
        self.busy = 0.0
        self.pipe: tuple[int, int] | None = None
        self.splice = hasattr(os, "splice")
        try:
            for cpu in cpu_list:
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
        if sink.is_pipe:
            target, pipe_out = sink.fd, -1
        else:
            if self.pipe is None:  # made in __init__ when a sink is not a pipe
                raise AssertionError("no pipe for splice")
            pipe_out, target = self.pipe
        while True:
            try:
                moved = os.splice(fd, target, PIPE_SIZE)  # novermin (only when hasattr(os, "splice"))
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
                    left -= os.splice(pipe_out, sink.fd, left)  # novermin
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
