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
SYSFS_CPU = "/sys/devices/system/cpu"


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
    """The buffer's CPU slots, 0..n-1 for every possible CPU (trace.dat numbers them so:
    a CPU that is not captured gets an empty slot)."""
    try:
        names = os.listdir(buffer.path("per_cpu"))
    except OSError as exc:
        raise CaptureError("cannot list %s: %s" % (buffer.path("per_cpu"), exc.strerror)) from None
    numbers = sorted(int(name[3:]) for name in names if re.fullmatch(r"cpu\d+", name))
    return list(range(numbers[-1] + 1)) if numbers else []


def parse_cpulist(text: str) -> set:
    """`0-3,5` (the kernel's CPU list format) -> {0, 1, 2, 3, 5}."""
    found: set = set()
    for part in text.strip().split(","):
        if part:
            low, _sep, high = part.partition("-")
            found.update(range(int(low), int(high or low) + 1))
    return found


def online_cpus() -> set | None:
    """The CPUs online now (SYSFS_CPU/online), or None when that cannot be read."""
    try:
        with open(os.path.join(SYSFS_CPU, "online"), encoding="ascii") as handle:
            return parse_cpulist(handle.read())
    except (OSError, ValueError):
        return None


def capturable(slots: list) -> tuple:
    """(the CPUs to read, the others) among the buffer's slots.

    A ring buffer exists for each CPU that has been online since the buffer was made;
    reading one that never was gives ENODEV (the Drainer also copes with that). The
    capture reads the CPUs online when the window opens: emptying the buffer resets
    only those, so an offline CPU's buffer can hold only pages from before the window.
    """
    online = online_cpus()
    if online is None:
        return list(slots), []
    return [cpu for cpu in slots if cpu in online], [cpu for cpu in slots if cpu not in online]


def page_size(buffer: TracingDir) -> int:
    """The size of the ring buffer's pages (sub-buffers), which trace_pipe_raw hands
    out and a trace.dat declares: buffer_subbuf_size_kb where the kernel has it (6.8+,
    where it can differ from the memory page size), else the memory page size.
    events/header_page must agree, or a trace.dat would be unreadable."""
    text = buffer.read("buffer_subbuf_size_kb")
    try:
        size = int(text) * 1024 if text is not None else os.sysconf("SC_PAGE_SIZE")
    except ValueError:
        raise CaptureError("%s: %r is not a number of KiB" % (buffer.path("buffer_subbuf_size_kb"), text)) from None
    match = re.search(r"field: char data;\s*offset:(\d+);\s*size:(\d+);", buffer.read("events", "header_page") or "")
    if match and int(match.group(1)) + int(match.group(2)) != size:
        raise CaptureError(
            "the ring buffer's pages are %d bytes (buffer_subbuf_size_kb, or the memory page size) but "
            "events/header_page describes %d-byte pages: a trace.dat cannot be written for this kernel"
            % (size, int(match.group(1)) + int(match.group(2)))
        )
    return size


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
    """The enabled events as 'system/event' (as tracefs_info and trace_event name
    them), with a fully enabled system as 'system/*'."""
    systems: dict = {}
    for event in events:
        systems.setdefault(event.partition(":")[0], []).append(event.replace(":", "/", 1))
    summary: list = []
    for system, members in systems.items():
        whole = (buffer.read("events", system, "enable") or "").strip() == "1"
        summary.extend([system + "/*"] if whole and len(members) > 1 else members)
    return summary


def event_format(buffer: TracingDir, system: str, event: str) -> bytes:
    """events/SYSTEM/EVENT/format, or b"" when there is none."""
    return buffer.read_bytes("events", system, event, "format") or b""


class Drainer:
    """Consuming, non-blocking reads of the captured CPUs' trace_pipe_raw, each into
    its sink (a `_compress.Stream` or `_compress.Spill`).

    While the window is open only whole pages are taken, never the page the kernel
    is still writing: a consuming read of that page would hand out what it holds so
    far, and the file would fill with mostly empty pages (4 a second per CPU).
    splice(2) asks the kernel for full pages only; they move straight into a
    compressor's pipe or, through a pipe of our own, into a file, with no copy
    through this process. Without os.splice (Python < 3.10) read(2) takes any page,
    so the reader first asks the CPU's stats how many bytes are unread: while the
    kernel writes on the page being read, all unread data is on that one page, so
    `bytes // (page data size)` pages can be read without reaching it. The final
    drain, with recording off, takes everything, the last partial pages included.

    `limit` caps the bytes one drain moves (whole pages), for the capture's budget.
    A sink with `room()` takes at most that many bytes (a version 7 chunk) and is
    told to `roll()` to its next chunk when it has less than a page of room left.
    A CPU the kernel has no ring buffer for (ENODEV: it never came online) is
    dropped and listed in `no_buffer`.

    `watch`: a CPU -> an object with `feed(data)` and `done` (the anchor's
    MarkerFinder): that CPU's pages are read with read(2), through this process, and
    fed to it until it is done.
    """

    def __init__(
        self, buffer: TracingDir, cpu_list: list, sinks: list, page_size: int, watch: dict | None = None
    ) -> None:
        self.buffer = buffer
        self.cpus = list(cpu_list)
        self.sinks = list(sinks)
        self.page_size = page_size
        self.watch = dict(watch or {})
        self.fds: list[int | None] = []
        self.no_buffer: list[int] = []
        self.busy = 0.0
        self.pipe: tuple[int, int] | None = None
        self.splice = hasattr(os, "splice")
        try:
            for cpu in self.cpus:
                path = buffer.path("per_cpu", "cpu%d" % cpu, "trace_pipe_raw")
                try:
                    self.fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise CaptureError("opening %s failed: %s" % (path, exc.strerror)) from None
                    self.fds.append(None)  # a possible CPU that is not there
            if self.splice and not all(sink.is_pipe for sink in self.sinks):
                self.pipe = os.pipe()
                try:
                    fcntl.fcntl(self.pipe[1], F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:
                    pass  # the default pipe size works, in smaller steps
        except Exception:
            self.close()
            raise

    def _pages(self, limit: int) -> int:
        """`limit` bytes, rounded down to whole pages."""
        return limit // self.page_size * self.page_size

    def _splice(self, fd: int, sink, limit: int) -> int:
        total = 0
        if sink.is_pipe:
            target = sink.fd
        else:
            if self.pipe is None:  # made in __init__ when a sink is not a pipe
                raise AssertionError("self.pipe is not None")
            target = self.pipe[1]
        while self._pages(limit - total):
            try:
                moved = os.splice(fd, target, min(PIPE_SIZE, self._pages(limit - total)))  # novermin (hasattr)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                if exc.errno == errno.EINVAL:  # no splice for this file here
                    self.splice = False
                    break
                if exc.errno == errno.EPIPE and sink.is_pipe:
                    raise sink.failed(exc) from None  # the compressor is gone
                raise
            if not moved:
                break
            if sink.is_pipe:
                sink.raw_bytes += moved
            else:
                if self.pipe is None:
                    raise AssertionError("self.pipe is not None")
                sink.take(self.pipe[0], moved)
            total += moved
        return total

    def _full_pages(self, cpu: int) -> int | None:
        """How many pages of this CPU can be read without reaching the one the kernel
        writes on (see the class), or None when the stats do not say."""
        unread = parse_stats(self.buffer.read("per_cpu", "cpu%d" % cpu, "stats")).get("bytes")
        if not isinstance(unread, int):
            return None
        return unread // (self.page_size - PAGE_HEADER)

    def _read(self, fd: int, sink, cpu: int, final: bool, limit: int, watcher=None) -> int:
        total = 0
        pages = None if final else self._full_pages(cpu)
        while self._pages(limit - total) and (pages is None or pages > 0):
            size = min(READ_SIZE, self._pages(limit - total), READ_SIZE if pages is None else pages * self.page_size)
            try:
                data = os.read(fd, size)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    return total
                raise
            if not data:
                return total
            sink.write(data)
            if watcher is not None and not watcher.done:
                watcher.feed(data)
            total += len(data)
            if pages is not None:
                pages -= max(1, len(data) // self.page_size)
            elif not final and page_data_size(data) < len(data) - FULL_PAGE_SLACK:
                return total  # stats without `bytes`: stop at the first page that is not full
        return total

    def drain(self, final: bool = False, limit: int | None = None) -> int:
        """Move the pages there are now, at most `limit` bytes; returns the bytes moved."""
        started = time.monotonic()
        total = 0
        budget = sys.maxsize if limit is None else limit
        for index, (cpu, fd, sink) in enumerate(zip(self.cpus, self.fds, self.sinks)):
            if fd is None:
                continue
            watcher = self.watch.get(cpu)
            try:
                while True:
                    cap = budget - total
                    if hasattr(sink, "room"):
                        cap = min(cap, sink.room())
                    watching = watcher is not None and not watcher.done
                    moved = 0
                    if self.splice and not watching:
                        moved += self._splice(fd, sink, cap)
                    if final or not self.splice or watching:
                        moved += self._read(fd, sink, cpu, final, cap - moved, watcher)
                    total += moved
                    if moved and hasattr(sink, "room") and sink.room() < self.page_size:
                        sink.roll()
                        continue
                    break
            except OSError as exc:
                if exc.errno != errno.ENODEV:
                    path = self.buffer.path("per_cpu", "cpu%d" % cpu, "trace_pipe_raw")
                    raise CaptureError("reading %s failed: %s" % (path, exc.strerror)) from None
                os.close(fd)
                self.fds[index] = None
                self.no_buffer.append(cpu)
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
