# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The window's wall-clock anchor: which trace-clock time was which time of day.

A process cannot read a buffer's trace clock (`local` is the kernel's per-CPU
sched_clock), but the buffer can: a write to `trace_marker` becomes an event
stamped with it. So, as `trace-cmd record --date` does, the capture writes markers,
each between two reads of CLOCK_REALTIME, and finds them in the ring buffer later.
Unlike trace-cmd it does not empty the buffer for each try: all SAMPLES markers go
into the window's own data (pinned to one CPU, so they are in that CPU's pages,
which the reader parses as they pass until it has seen them), and the sample with
the narrowest bracket wins. Each marker carries the time of day read just before
it: `tracefleet-anchor <n> wall_ns=<ns since the epoch>`.

The anchor: `wall_ns` the middle of the winning bracket, `trace_ns` its marker's
timestamp, `uncertainty_ns` the bracket's width (the true time of day of the marker
is within it). A trace.dat carries `wall_ns - trace_ns` as its DATE option, which
`trace-cmd report` adds to every timestamp.

Only clocks that count nanoseconds (NS_CLOCKS) can be anchored; with another
(`counter`, `uptime`, `x86-tsc`) the markers are still written, but the anchor has
no trace time and the file no DATE.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import re
import struct
import sys
import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

SAMPLES = 16
MARKER = b"tracefleet-anchor"
NS_CLOCKS = frozenset(("local", "global", "perf", "mono", "mono_raw", "boot", "tai"))
_TEXT_MARKER = re.compile(rb"tracefleet-anchor (\d+) wall_ns=(\d+)")
# Ring-buffer event header types (include/linux/ring_buffer.h).
_PADDING, _TIME_EXTEND, _TIME_STAMP = 29, 30, 31
_TS_MSB = 0xF8 << 56
_TEXT_LINE = re.compile(rb"\s(\d+)\.(\d+): tracing_mark_write: tracefleet-anchor (\d+) wall_ns=(\d+)")


def current_cpu() -> int | None:
    """The CPU this process last ran on (/proc/self/stat, field 39)."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[36])
    except (OSError, IndexError, ValueError):
        return None


def take_samples(buffer: TracingDir, cpus: list, samples: int = SAMPLES) -> tuple[dict | None, str | None]:
    """Write the markers into the buffer, pinned to one of `cpus` (the CPUs being
    captured). Returns ({cpu, samples: [[before, after], ...]}, None), or (None, why
    not)."""
    allowed = os.sched_getaffinity(0)
    here = current_cpu()
    choices = [cpu for cpu in cpus if cpu in allowed]
    if not choices:
        return None, "this process may not run on any captured CPU"
    cpu: int = here if here is not None and here in choices else choices[0]
    try:
        fd = os.open(buffer.path("trace_marker"), os.O_WRONLY)
    except OSError as exc:
        return None, "cannot open %s: %s" % (buffer.path("trace_marker"), exc.strerror)
    brackets = []
    try:
        os.sched_setaffinity(0, {cpu})
        try:
            for index in range(samples):
                before = time.clock_gettime_ns(time.CLOCK_REALTIME)
                os.write(fd, b"%s %d wall_ns=%d" % (MARKER, index, before))
                brackets.append([before, time.clock_gettime_ns(time.CLOCK_REALTIME)])
        finally:
            os.sched_setaffinity(0, allowed)
    except OSError as exc:
        return None, "writing %s failed: %s (options/markers off?)" % (buffer.path("trace_marker"), exc.strerror)
    finally:
        os.close(fd)
    return dict(cpu=cpu, samples=brackets), None


def anchor(samples: dict | None, found: dict, clock: str, extra_ns: int = 0) -> dict:
    """The anchor from the samples and the markers' trace timestamps (`found`: sample
    number -> timestamp). `extra_ns` widens the uncertainty (timestamps read from text,
    rounded to microseconds). Every field is None when nothing was found."""
    result: dict = dict(wall=None, trace=None, clock=clock, wall_ns=None, trace_ns=None, uncertainty_ns=None)
    if not samples:
        return result
    brackets = samples.get("samples") or []
    best = None
    for index, stamp in sorted(found.items()):
        if not 0 <= index < len(brackets):
            continue
        before, after = brackets[index]
        if best is None or after - before < best[1] - best[0]:
            best = (before, after, stamp)
    if best is None:
        # No marker found: the time of day of the first sample, with no trace time.
        before, after = brackets[0]
        result.update(wall_ns=before + (after - before) // 2, wall=(before + (after - before) // 2) / 1e9)
        return result
    before, after, stamp = best
    wall_ns = before + (after - before) // 2
    result.update(wall_ns=wall_ns, wall=wall_ns / 1e9, uncertainty_ns=after - before + extra_ns)
    if clock in NS_CLOCKS:
        result.update(trace_ns=stamp, trace=stamp / 1e9)
    return result


class MarkerFinder:
    """Finds the anchor markers in ring-buffer pages as they are read (the pages of
    the CPU the markers were written on, from the start of the window)."""

    def __init__(self, buffer: TracingDir, page_size: int, count: int) -> None:
        self.page_size = page_size
        self.count = count
        self.found: dict = {}
        fmt = buffer.read("events", "ftrace", "print", "format") or ""
        event_id = re.search(r"^ID:\s*(\d+)", fmt, re.M)
        field = re.search(r"field:char buf\[\];\s*offset:(\d+);", fmt)
        self.print_id = int(event_id.group(1)) if event_id else None
        self.buf_offset = int(field.group(1)) if field else None
        header = buffer.read("events", "header_page") or ""
        commit = re.search(r"field: local_t commit;\s*offset:(\d+);\s*size:(\d+);", header)
        self.commit_size = int(commit.group(2)) if commit else 8
        self.data_offset = 8 + self.commit_size
        self.order = "<" if sys.byteorder == "little" else ">"

    @property
    def done(self) -> bool:
        return self.print_id is None or len(self.found) >= self.count

    def feed(self, data: bytes) -> bool:
        """Parse whole pages; True once every marker has been seen."""
        for start in range(0, len(data) - self.page_size + 1, self.page_size):
            if self.done:
                break
            self._page(data[start : start + self.page_size])
        return self.done

    def _page(self, page: bytes) -> None:
        order = self.order
        (stamp,) = struct.unpack_from(order + "Q", page, 0)
        commit = int.from_bytes(page[8 : 8 + self.commit_size], sys.byteorder) & 0x0FFFFFFF
        pos, end = self.data_offset, min(len(page), self.data_offset + commit)
        while pos + 4 <= end:
            (head,) = struct.unpack_from(order + "I", page, pos)
            kind, delta = head & 0x1F, head >> 5
            if kind == _PADDING:
                if delta == 0:
                    return  # the rest of the page is empty
                (length,) = struct.unpack_from(order + "I", page, pos + 4)
                stamp += delta
                pos += 4 + length
                continue
            if kind in (_TIME_EXTEND, _TIME_STAMP):
                (high,) = struct.unpack_from(order + "I", page, pos + 4)
                value = (high << 27) | delta
                if kind == _TIME_EXTEND:
                    stamp += value
                else:
                    if stamp & _TS_MSB:
                        value |= stamp & _TS_MSB
                        if value < stamp:
                            value += 1 << 59
                    stamp = value
                pos += 8
                continue
            if kind == 0:
                (length,) = struct.unpack_from(order + "I", page, pos + 4)
                length -= 4
                data = pos + 8
            else:
                length = kind * 4
                data = pos + 4
            stamp += delta
            self._event(page[data : data + length], stamp)
            pos = data + ((length + 3) & ~3)

    def _event(self, data: bytes, stamp: int) -> None:
        if len(data) < 2 or self.buf_offset is None:
            return
        (event_type,) = struct.unpack_from(self.order + "H", data, 0)
        if event_type != self.print_id:
            return
        text = data[self.buf_offset :].split(b"\0", 1)[0]
        match = _TEXT_MARKER.match(text)
        if match:
            self.found.setdefault(int(match.group(1)), stamp)


def find_in_text(path: str, count: int) -> dict:
    """The markers' timestamps (ns, from microseconds) in the kernel's text rendering
    of the buffer (format=text)."""
    found: dict = {}
    with open(path, "rb") as handle:
        for line in handle:
            if MARKER not in line:
                continue
            match = _TEXT_LINE.search(line)
            if match and int(match.group(3)) < count:
                seconds, fraction = match.group(1), match.group(2)
                stamp = int(seconds) * 10**9 + int(fraction.ljust(9, b"0")[:9])
                found.setdefault(int(match.group(3)), stamp)
    return found
