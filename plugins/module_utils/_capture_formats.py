# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a capture's file is made of, one class per `format`.

`DatCapture` (format=dat) drains the per-CPU ring buffers during the window, one
compressor per CPU, prepares the trace.dat's first part (formats, kallsyms) while
the workload runs, and writes the rest when the window has closed; the parts are
concatenated into one compressed file that unpacks to the whole trace.dat.
`TextCapture` (format=text) copies the kernel's text rendering (`trace`) once the
window has closed, and compresses it.

Both have the same steps, called in this order by `_capture_run`:
  start()            window open, before the workload starts
  prepare(events)    while the workload runs (counted as `during`)
  drain              a callable for `wait_window`, or None
  window_closed()    recording off, before each CPU's stats are read
  close_reader()     with tracing_on restored, whatever happened
  pack(stats, packed) the file the controller fetches; returns (bytes stored, compressor CPU seconds)
  abort()            on the way out, whatever happened
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture, _compress, _tracedat_writer
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

READ_SIZE = 1 << 20


def opening_layout(buffer: TracingDir, events: list, kallsyms: bool) -> _tracedat_writer.DatLayout:
    """What a trace.dat needs that does not change during a window: page size, headers,
    the ftrace formats and those of `events`, kallsyms. `closing` adds the rest."""
    ftrace = []
    ftrace_dir = buffer.path("events", "ftrace")
    for name in sorted(os.listdir(ftrace_dir)) if os.path.isdir(ftrace_dir) else []:
        data = buffer.read_bytes("events", "ftrace", name, "format")
        if data:
            ftrace.append(data)
    systems: dict = {}
    for entry in events:
        system, _sep, event = entry.partition(":")
        if system == "ftrace":
            continue
        fmt = _capture.event_format(buffer, system, event)
        if fmt:
            systems.setdefault(system, []).append(fmt)
    return _tracedat_writer.DatLayout(
        page_size=os.sysconf("SC_PAGE_SIZE"),
        header_page=buffer.read_bytes("events", "header_page") or b"",
        header_event=buffer.read_bytes("events", "header_event") or b"",
        ftrace_formats=ftrace,
        systems=sorted(systems.items()),
        kallsyms=_read_bytes("/proc/kallsyms") if kallsyms else b"",
        printk_formats=b"",
        cmdlines=b"",
        cpu_stats=[],
        trace_clock=b"",
        uname=b"",
    )


def closing(layout: _tracedat_writer.DatLayout, buffer: TracingDir, cpu_stats: list) -> None:
    """Fill in what is read when the window has closed: printk formats, the saved
    cmdlines (the window's processes), per-CPU stats, the trace clock, uname."""
    top = buffer.top()
    uname = os.uname()
    layout.printk_formats = top.read_bytes("printk_formats") or b""
    layout.cmdlines = top.read_bytes("saved_cmdlines") or b""
    layout.cpu_stats = cpu_stats
    layout.trace_clock = (buffer.read("trace_clock") or "").strip().encode()
    layout.uname = " ".join((uname.sysname, uname.nodename, uname.release, uname.version, uname.machine)).encode()


def copy_text(buffer: TracingDir, path: str) -> int:
    """Copy the buffer's `trace` file (formatted by the kernel, not consumed)."""
    with open(buffer.path("trace"), "rb") as source, open(path, "wb") as out:
        while True:
            data = source.read(READ_SIZE)
            if not data:
                return out.tell()
            out.write(data)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


class CaptureFormat:
    """The steps every format has; a format overrides those it needs."""

    suffix = ""
    consumes = False  # whether reading the window takes the events out of the buffer

    def __init__(self, buffer: TracingDir, cpus: list, method: str, parts_dir: str, plain: str, kallsyms: bool) -> None:
        self.buffer = buffer
        self.cpus = cpus
        self.method = method
        self.parts_dir = parts_dir
        self.plain = plain
        self.kallsyms = kallsyms

    def start(self) -> None:
        """The window is open; the workload starts next."""

    def prepare(self, events: list) -> None:
        """While the workload runs, with the events enabled when the window opened."""

    @property
    def drain(self) -> Callable[[], object] | None:
        """What `wait_window` calls between its checks, if anything."""
        return None

    @property
    def busy(self) -> float:
        """Seconds spent reading the buffer during the window."""
        return 0.0

    def window_closed(self) -> None:
        """Recording is off; each CPU's stats are read next."""

    def close_reader(self) -> None:
        """tracing_on is back as it was: release the buffer's files."""

    def pack(self, cpu_stats: list, packed: str) -> tuple[int, float]:
        """Write the file to fetch at `packed`; returns (bytes it unpacks to, compressor CPU seconds)."""
        raise NotImplementedError

    def abort(self) -> None:
        """On the way out, whatever happened: stop what is still running."""

    def no_events_warning(self, where: str) -> str | None:
        """The warning for a window with no event enabled, if it deserves one."""
        return None


class DatCapture(CaptureFormat):
    """format=dat: a trace-cmd trace.dat from the raw ring buffer."""

    suffix = ".dat"
    consumes = True  # the reads take the events out of the buffer

    def __init__(self, buffer: TracingDir, cpus: list, method: str, parts_dir: str, plain: str, kallsyms: bool) -> None:
        super().__init__(buffer, cpus, method, parts_dir, plain, kallsyms)
        self.cpu_streams: list = []
        self.opening: _compress.Stream | None = None
        self.closing: _compress.Stream | None = None
        self.drainer: _capture.Drainer | None = None
        self.layout: _tracedat_writer.DatLayout | None = None
        self.opening_size = 0

    def _part(self, name: str) -> _compress.Stream:
        # Parts are named in the order they are concatenated.
        return _compress.Stream(self.method, os.path.join(self.parts_dir, name))

    def start(self) -> None:
        self.cpu_streams = [self._part("%d-cpu%d" % (2 + cpu, cpu)) for cpu in self.cpus]
        self.drainer = _capture.Drainer(self.buffer, self.cpus, self.cpu_streams)
        # Started now, fed when the window has closed: one process less to start then.
        self.closing = self._part("1-close")

    def prepare(self, events: list) -> None:
        """The formats and kallsyms, prepared while the workload runs."""
        self.layout = opening_layout(self.buffer, events, self.kallsyms)
        data = _tracedat_writer.opening_bytes(self.layout)
        self.opening_size = len(data)
        self.opening = self._part("0-open")
        self.opening.write(data)
        self.opening.finish()

    @property
    def drain(self) -> Callable[[], object] | None:
        return self.drainer.drain if self.drainer is not None else None

    @property
    def busy(self) -> float:
        return self.drainer.busy if self.drainer is not None else 0.0

    def window_closed(self) -> None:
        if self.drainer is None:
            raise AssertionError("the window was not opened")
        self.drainer.drain(final=True)

    def close_reader(self) -> None:
        if self.drainer is not None:
            self.drainer.close()

    def pack(self, cpu_stats: list, packed: str) -> tuple[int, float]:
        if self.layout is None or self.opening is None or self.closing is None:
            raise AssertionError("the window was not opened")
        _compress.finish_all(self.cpu_streams)
        closing(self.layout, self.buffer, cpu_stats)
        sizes = [stream.raw_bytes for stream in self.cpu_streams]
        _tracedat_writer.check_pages(self.layout, sizes)
        self.closing.write(_tracedat_writer.closing_bytes(self.layout, self.opening_size, sizes))
        self.closing.finish()
        streams = [self.opening, self.closing] + self.cpu_streams
        _compress.concatenate([stream.path for stream in streams], packed)
        return sum(stream.raw_bytes for stream in streams), sum(stream.cpu_seconds for stream in streams)

    def abort(self) -> None:
        for stream in [self.opening, self.closing] + self.cpu_streams:
            if stream is not None:
                stream.abort()

    def no_events_warning(self, where: str) -> str | None:
        return "no events are enabled in %s: the capture holds only what a tracer recorded" % where


class TextCapture(CaptureFormat):
    """format=text: the kernel's text rendering of the buffer, copied at the end."""

    suffix = ".txt"
    consumes = False  # `trace` is read without taking the events out

    def window_closed(self) -> None:
        # Copied while recording is off: our own reads are not traced.
        copy_text(self.buffer, self.plain)

    def pack(self, cpu_stats: list, packed: str) -> tuple[int, float]:
        stored = os.path.getsize(self.plain)
        if packed != self.plain:
            _compress.compress(self.method, self.plain, packed)
            os.unlink(self.plain)
        return stored, 0.0


FORMATS: dict[str, type[CaptureFormat]] = {"dat": DatCapture, "text": TextCapture}
