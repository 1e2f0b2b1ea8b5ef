# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a capture's file is made of, one class per `format`.

`DatCapture` (format=dat) drains the per-CPU ring buffers during the window,
prepares the trace.dat's first part (formats, kallsyms) while the workload runs,
and writes the rest when the window has closed; the parts are concatenated into one
compressed file that unpacks to the whole trace.dat. The first LIVE_COMPRESSORS
captured CPUs each stream into a compressor of their own during the window; the
pages of any further CPUs are spilled raw into a file per CPU and compressed after
the window by one compressor with a thread per core. So a host with hundreds of
CPUs needs a bounded number of processes, and about one file descriptor per CPU
(its trace_pipe_raw); the soft open-file limit is raised (up to the hard one) when
that is not enough, and a capture that cannot get them is refused before the
window opens.
`TextCapture` (format=text) copies the kernel's text rendering (`trace`) once the
window has closed, and compresses it.

A `Budget` caps what either writes on the target: at most `max_bytes` of
ring-buffer data or text (before compression), and never the last RESERVE of the
work directory's filesystem. When the budget is used up the window closes early.

`DatV7Capture` (format=dat, file_version=7, the default) reads the same way, but
writes a trace-cmd file version 7 with the compression inside (zstd, zlib or none),
which travels and is stored as it is: each CPU's pages go into chunks of at most
CHUNK_LIMIT bytes, each its own zstd frame (a compressor process per chunk) or zlib
stream (compressed in this process); the metadata sections are compressed when the
window has closed, kallsyms (most of it) while the window is open.

Every format has the same steps, called in this order by `_capture_run`:
  check()            before the window opens: refuse what cannot work here
  spawn()            before the window opens: start the helper processes; returns their pids
  start(watch)       window open, before the workload starts: open the readers
                     (`watch`: a CPU -> the anchor's MarkerFinder)
  prepare(events)    while the workload runs (counted as `during`)
  drain              a callable for `wait_window` (True: close the window early), or None
  window_closed()    recording off, before each CPU's stats are read
  close_reader()     with tracing_on restored, whatever happened
  pack(stats, packed, date) the file the controller fetches (`date`: the DATE option, or b"");
                     returns (bytes it unpacks to, compressor CPU seconds)
  abort()            on the way out, whatever happened
`started` (a callable taking a pid) is told of each helper process started while
the window is open.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import abc
import os
import resource
import zlib
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture, _compress, _tracedat_writer
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import CaptureError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

READ_SIZE = 1 << 20
LIVE_COMPRESSORS = 32  # CPUs that stream into a compressor of their own during the window
FD_SLACK = 64  # descriptors besides the per-CPU ones: ledger, pipes, the module's own
CHUNK_LIMIT = 256 << 20  # pages per chunk of a version 7 file: what a reader decompresses at once
RESERVE_MAX = 1 << 30  # free space a capture never uses: min(1 GiB, RESERVE_SHARE of the filesystem)
RESERVE_SHARE = 0.05


def mib(size: int) -> str:
    return "%.1f MiB" % (size / (1 << 20))


class Budget:
    """What a capture may write in its work directory: at most `max_bytes` of
    ring-buffer data or text (before compression), and never into the last
    min(RESERVE_MAX, RESERVE_SHARE) of the filesystem. `reached` says what stopped
    the capture early, if anything: "max_bytes" or "free_space"."""

    def __init__(self, max_bytes: int, work_dir: str) -> None:
        self.max_bytes = max_bytes
        self.work_dir = work_dir
        self.used = 0
        self.reached: str | None = None
        info = os.statvfs(work_dir)
        self.reserve = min(RESERVE_MAX, int(info.f_blocks * info.f_frsize * RESERVE_SHARE))

    def free(self) -> int:
        info = os.statvfs(self.work_dir)
        return info.f_bavail * info.f_frsize

    def check_start(self) -> None:
        """Refuse to start on a filesystem that is already down to its reserve."""
        free = self.free()
        if free <= self.reserve:
            raise CaptureError(
                "only %s free on %s (the work directory %s); a capture leaves at least %s free, "
                "so nothing was recorded"
                % (mib(free), _compress.mount_point(self.work_dir), self.work_dir, mib(self.reserve))
            )

    def left(self) -> int:
        return max(0, self.max_bytes - self.used)

    def charge(self, size: int, smallest: int) -> bool:
        """Count `size` bytes written; True when the capture must stop (less than
        `smallest` bytes of budget left, or the filesystem down to its reserve)."""
        self.used += size
        if self.reached is None:
            if self.left() < smallest:
                self.reached = "max_bytes"
            elif self.free() < self.reserve:
                self.reached = "free_space"
        return self.reached is not None

    def warning(self, where: str) -> str | None:
        if self.reached == "max_bytes":
            return (
                "%s: the capture reached max_bytes=%d (%s of trace data) and stopped there; what came later "
                "is not in it (raise max_bytes for a longer capture)" % (where, self.max_bytes, mib(self.used))
            )
        if self.reached == "free_space":
            return "%s: the capture stopped early, with %s of trace data, to leave %s free on %s" % (
                where,
                mib(self.used),
                mib(self.reserve),
                _compress.mount_point(self.work_dir),
            )
        return None


def opening_layout(buffer: TracingDir, events: list, kallsyms: bool, page_size: int) -> _tracedat_writer.DatLayout:
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
        page_size=page_size,
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


def copy_text(buffer: TracingDir, path: str, budget: Budget) -> int:
    """Copy the buffer's `trace` file (formatted by the kernel, not consumed), as much
    of it as the budget allows."""
    with open(buffer.path("trace"), "rb") as source, open(path, "wb") as out:
        while True:
            data = source.read(min(READ_SIZE, budget.left()))
            if not data:
                return out.tell()
            try:
                out.write(data)
                out.flush()
            except OSError as exc:
                if exc.errno in _compress.NO_SPACE:
                    raise _compress.no_space(path, exc.strerror) from None
                raise
            if budget.charge(len(data), 1):
                return out.tell()


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


class CaptureFormat(abc.ABC):
    """The steps every format has; a format overrides those it needs.

    `slots` are the buffer's CPUs (0..n-1), `captured` those read (the others are
    offline: their slots stay empty)."""

    suffix = ""
    consumes = False  # whether reading the window takes the events out of the buffer

    def __init__(
        self,
        buffer: TracingDir,
        slots: list,
        captured: list,
        method: str,
        parts_dir: str,
        plain: str,
        kallsyms: bool,
        budget: Budget,
    ) -> None:
        self.buffer = buffer
        self.slots = slots
        self.captured = captured
        self.method = method
        self.parts_dir = parts_dir
        self.plain = plain
        self.kallsyms = kallsyms
        self.budget = budget
        self.nofile_before: tuple | None = None  # the open-file limit, when check() raised it
        self.started: Callable[[int], None] | None = None
        self.page_size = 0  # the ring buffer's pages, for the formats that read them

    def check(self) -> None:
        """Before the window opens: refuse what cannot work on this host."""

    def spawn(self) -> list:
        """Before the window opens: start the helper processes; returns their pids."""
        return []

    def start(self, watch: dict | None = None) -> None:
        """The window is open; the workload starts next."""

    def prepare(self, events: list) -> None:
        """While the workload runs, with the events enabled when the window opened."""

    @property
    def drain(self) -> Callable[[], bool] | None:
        """What `wait_window` calls between its checks, if anything: True closes the
        window early (the budget is used up)."""
        return None

    @property
    def busy(self) -> float:
        """Seconds spent reading the buffer during the window."""
        return 0.0

    @property
    def no_buffer(self) -> list:
        """Captured CPUs the kernel turned out to have no ring buffer for."""
        return []

    def window_closed(self) -> None:
        """Recording is off; each CPU's stats are read next."""

    def close_reader(self) -> None:
        """tracing_on is back as it was: release the buffer's files."""

    @abc.abstractmethod
    def pack(self, cpu_stats: list, packed: str, date: bytes = b"") -> tuple[int, float]:
        """Write the file to fetch at `packed`, from the stats of every slot and the
        DATE option (b"": none); returns (bytes it unpacks to, compressor CPU seconds)."""

    def abort(self) -> None:
        """On the way out, whatever happened: stop what is still running."""

    def no_events_warning(self, where: str) -> str | None:
        """The warning for a window with no event enabled, if it deserves one."""
        return None


class DatCapture(CaptureFormat):
    """format=dat: a trace-cmd trace.dat from the raw ring buffer."""

    suffix = ".dat"
    consumes = True  # the reads take the events out of the buffer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cpu_sinks: list = []
        self.opening: _compress.Stream | None = None
        self.closing: _compress.Stream | None = None
        self.tail: list = []
        self.drainer: _capture.Drainer | None = None
        self.layout: _tracedat_writer.DatLayout | None = None
        self.opening_size = 0
        self.page_size = 0

    def check(self) -> None:
        self.page_size = _capture.page_size(self.buffer)
        # One trace_pipe_raw per captured CPU, and a pipe in and an error pipe out of
        # each live compressor.
        needed = len(self.captured) + 2 * min(LIVE_COMPRESSORS, len(self.captured)) + FD_SLACK
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and needed > soft:
            if hard != resource.RLIM_INFINITY and needed > hard:
                raise CaptureError(
                    "reading %d CPUs needs about %d open files, and this process may open at most %d "
                    "(RLIMIT_NOFILE); raise its hard limit (for example LimitNOFILE= or limits.conf)"
                    % (len(self.captured), needed, hard)
                )
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            self.nofile_before = (soft, hard)

    def _part(self, name: str) -> _compress.Stream:
        # Parts are named in the order they are concatenated.
        return _compress.Stream(self.method, os.path.join(self.parts_dir, name))

    def spawn(self) -> list:
        for index, cpu in enumerate(self.captured):
            name = "%d-cpu%d" % (2 + cpu, cpu)
            if index < LIVE_COMPRESSORS:
                self.cpu_sinks.append(self._part(name))
            else:
                self.cpu_sinks.append(_compress.Spill(os.path.join(self.parts_dir, name + ".raw")))
        # Started now, fed later: no process starts while the window is open.
        self.closing = self._part("1-close")
        self.opening = self._part("0-open")
        return _pids([self.opening, self.closing] + self.cpu_sinks)

    def start(self, watch: dict | None = None) -> None:
        self.drainer = _capture.Drainer(self.buffer, self.captured, self.cpu_sinks, self.page_size, watch)

    def prepare(self, events: list) -> None:
        """The formats and kallsyms, prepared while the workload runs."""
        if self.opening is None:
            raise AssertionError("spawn() before prepare()")
        self.layout = opening_layout(self.buffer, events, self.kallsyms, self.page_size)
        data = _tracedat_writer.opening_bytes(self.layout)
        self.opening_size = len(data)
        self.opening.write(data)
        self.opening.finish()

    def _drain(self, final: bool = False) -> bool:
        if self.drainer is None:
            raise AssertionError("self.drainer is not None")
        moved = self.drainer.drain(final=final, limit=self.budget.left())
        return self.budget.charge(moved, self.page_size)

    @property
    def drain(self) -> Callable[[], bool] | None:
        return self._drain if self.drainer is not None else None

    @property
    def busy(self) -> float:
        return self.drainer.busy if self.drainer is not None else 0.0

    @property
    def no_buffer(self) -> list:
        return list(self.drainer.no_buffer) if self.drainer is not None else []

    def window_closed(self) -> None:
        self._drain(final=True)

    def close_reader(self) -> None:
        if self.drainer is not None:
            self.drainer.close()

    def pack(self, cpu_stats: list, packed: str, date: bytes = b"") -> tuple[int, float]:
        if self.layout is None or self.opening is None or self.closing is None:
            raise AssertionError("self.layout is not None and self.opening is not None and self.closing is not None")
        live = [sink for sink in self.cpu_sinks if isinstance(sink, _compress.Stream)]
        spilled = [sink for sink in self.cpu_sinks if not isinstance(sink, _compress.Stream)]
        _compress.finish_all(live)
        closing(self.layout, self.buffer, cpu_stats)
        self.layout.date = date
        read = {cpu: sink.raw_bytes for cpu, sink in zip(self.captured, self.cpu_sinks)}
        sizes = [read.get(cpu, 0) for cpu in self.slots]
        _tracedat_writer.check_pages(self.layout, sizes)
        self.closing.write(_tracedat_writer.closing_bytes(self.layout, self.opening_size, sizes))
        self.closing.finish()
        self.tail, tail_cpu = _compress.pack_spills(self.method, spilled, os.path.join(self.parts_dir, "9-spilled"))
        streams = [self.opening, self.closing] + live
        _compress.concatenate([stream.path for stream in streams] + self.tail, packed)
        stored = sum(stream.raw_bytes for stream in streams) + sum(sink.raw_bytes for sink in spilled)
        return stored, sum(stream.cpu_seconds for stream in streams) + tail_cpu

    def abort(self) -> None:
        for stream in [self.opening, self.closing] + self.cpu_sinks:
            if isinstance(stream, _compress.Stream):
                stream.abort()

    def no_events_warning(self, where: str) -> str | None:
        return "no events are enabled in %s: the capture holds only what a tracer recorded" % where


class TextCapture(CaptureFormat):
    """format=text: the kernel's text rendering of the buffer, copied at the end."""

    suffix = ".txt"
    consumes = False  # `trace` is read without taking the events out

    def window_closed(self) -> None:
        # Copied while recording is off: our own reads are not traced.
        copy_text(self.buffer, self.plain, self.budget)

    def pack(self, cpu_stats: list, packed: str, date: bytes = b"") -> tuple[int, float]:
        stored = os.path.getsize(self.plain)
        if packed != self.plain:
            _compress.compress(self.method, self.plain, packed)
            os.unlink(self.plain)
        return stored, 0.0


def _pids(sinks: list) -> list:
    """The pids of the compressor processes behind `sinks`."""
    pids = []
    for sink in sinks:
        for stream in getattr(sink, "streams", [sink]):
            process = getattr(stream, "process", None)
            if process is not None:
                pids.append(process.pid)
    return pids


class DatV7Capture(DatCapture):
    """format=dat, file_version=7: a trace-cmd file version 7, compressed inside."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kallsyms_part: _compress.Stream | None = None
        self.sections: dict = {}  # section id -> (Blob, unpacked size)
        self.small: dict = {}  # section id -> its contents, compressed when the window has closed
        self.compress_cpu = 0.0

    def _sink(self, index: int, cpu: int):
        path = os.path.join(self.parts_dir, "cpu%d" % cpu)
        if index >= LIVE_COMPRESSORS:
            return _compress.Spill(path + ".raw", CHUNK_LIMIT if self.method != "none" else None)
        if self.method == "zstd":
            return _compress.Chunked(path, CHUNK_LIMIT, self._started)
        return _compress.Stream(self.method, path)

    def _started(self, pid: int) -> None:
        if self.started is not None:
            self.started(pid)

    def spawn(self) -> list:
        self.cpu_sinks = [self._sink(index, cpu) for index, cpu in enumerate(self.captured)]
        if self.method == "zstd":
            self.kallsyms_part = _compress.Stream("zstd", os.path.join(self.parts_dir, "kallsyms"))
        return _pids(self.cpu_sinks + [self.kallsyms_part])

    def prepare(self, events: list) -> None:
        """The formats and kallsyms, read while the workload runs; kallsyms (most of
        the metadata) compressed as it goes."""
        self.layout = opening_layout(self.buffer, events, self.kallsyms, self.page_size)
        payloads = _tracedat_writer.metadata_payloads(self.layout)
        kallsyms = payloads[_tracedat_writer.SECTION_KALLSYMS] + self.layout.kallsyms
        self.layout.kallsyms = b""  # held once, in its section
        for section in (
            _tracedat_writer.SECTION_HEADERS,
            _tracedat_writer.SECTION_FTRACE,
            _tracedat_writer.SECTION_EVENTS,
        ):
            self.small[section] = payloads[section]
        self.sections[_tracedat_writer.SECTION_KALLSYMS] = self._block("kallsyms", kallsyms, self.kallsyms_part)

    def _block(self, name: str, data: bytes, stream: _compress.Stream | None = None) -> tuple:
        """A section's contents as its one block: (Blob, unpacked size)."""
        if self.method == "none":
            return _tracedat_writer.Blob(data=data), len(data)
        if self.method == "zlib":
            packed, cpu = _compress.compress_block("zlib", data)
            self.compress_cpu += cpu
            return _tracedat_writer.Blob(data=packed), len(data)
        if stream is None:
            raise AssertionError("a zstd section is compressed by a stream or in the batch")
        stream.write(data)
        stream.finish()
        self.compress_cpu += stream.cpu_seconds
        return _tracedat_writer.Blob(path=stream.path, size=os.path.getsize(stream.path)), len(data)

    def pack(self, cpu_stats: list, packed: str, date: bytes = b"") -> tuple[int, float]:
        if self.layout is None:
            raise AssertionError("prepare() before pack()")
        writer = _tracedat_writer
        streams = [stream for sink in self.cpu_sinks for stream in getattr(sink, "streams", [sink])]
        _compress.finish_all([stream for stream in streams if isinstance(stream, _compress.Stream)])
        closing(self.layout, self.buffer, cpu_stats)
        self.layout.date = date
        payloads = writer.metadata_payloads(self.layout)
        self.small[writer.SECTION_PRINTK] = payloads[writer.SECTION_PRINTK]
        self.small[writer.SECTION_CMDLINES] = payloads[writer.SECTION_CMDLINES]
        self._pack_small()
        cpus = self._cpu_pieces()
        sizes = {cpu: sum(piece.raw_size for piece in pieces) for cpu, pieces in zip(self.captured, cpus)}
        writer.check_pages(self.layout, [sizes.get(cpu, 0) for cpu in self.slots])
        by_slot = dict(zip(self.captured, cpus))
        version = _compress.zstd_version() if self.method == "zstd" else zlib_version() if self.method == "zlib" else ""
        parts = writer.v7_parts(
            self.layout, self.method, version, self.sections, [by_slot.get(cpu, []) for cpu in self.slots]
        )
        size = _compress.assemble(parts, packed)
        cpu_seconds = self.compress_cpu + sum(getattr(stream, "cpu_seconds", 0.0) for stream in streams)
        return size, cpu_seconds

    def _pack_small(self) -> None:
        """The small metadata sections, compressed now (one zstd process for all)."""
        if self.method != "zstd":
            for section, data in self.small.items():
                self.sections[section] = self._block(str(section), data)
            return
        paths = []
        for section, data in sorted(self.small.items()):
            path = os.path.join(self.parts_dir, "section%d" % section)
            with open(path, "wb") as out:
                out.write(data)
            paths.append(path)
        packed, cpu = _compress.compress_files("zstd", paths)
        self.compress_cpu += cpu
        for (section, data), path in zip(sorted(self.small.items()), packed):
            self.sections[section] = (_tracedat_writer.Blob(path=path, size=os.path.getsize(path)), len(data))

    def _cpu_pieces(self) -> list:
        """Each captured CPU's chunks, as `Piece`s."""
        writer = _tracedat_writer
        result = []
        spill_files = [
            (sink, path, size)
            for sink in self.cpu_sinks
            if isinstance(sink, _compress.Spill)
            for path, size in zip(sink.paths, sink.sizes)
            if size
        ]
        packed_spills: dict = {}
        if spill_files and self.method == "zstd":
            outputs, cpu = _compress.compress_files("zstd", [path for _sink, path, _size in spill_files])
            self.compress_cpu += cpu
            packed_spills = {path: out for (_sink, path, _size), out in zip(spill_files, outputs)}
        for sink in self.cpu_sinks:
            pieces = []
            if isinstance(sink, _compress.Chunked):
                for stream in sink.streams:
                    if stream.raw_bytes:
                        pieces.append(
                            writer.Piece(
                                writer.Blob(path=stream.path, size=os.path.getsize(stream.path)), stream.raw_bytes
                            )
                        )
            elif isinstance(sink, _compress.Stream):
                if sink.raw_bytes:
                    pieces.append(self._stream_piece(sink))
            else:
                for path, size in zip(sink.paths, sink.sizes):
                    if not size:
                        continue
                    if self.method == "zstd":
                        out = packed_spills[path]
                        pieces.append(writer.Piece(writer.Blob(path=out, size=os.path.getsize(out)), size))
                    elif self.method == "zlib":
                        stream = _compress.Stream("zlib", path + ".zz")
                        stream.copy_from(path)
                        stream.finish()
                        os.unlink(path)
                        self.compress_cpu += stream.cpu_seconds
                        pieces.append(self._stream_piece(stream))
                    else:
                        pieces.append(writer.Piece(writer.Blob(path=path, size=size), size))
            result.append(pieces)
        return result

    def _stream_piece(self, stream: _compress.Stream) -> _tracedat_writer.Piece:
        """A finished zlib or uncompressed stream of a CPU's pages as one Piece (zlib:
        its chunks, framed already)."""
        size = os.path.getsize(stream.path)
        if self.method == "zlib":
            return _tracedat_writer.Piece(
                _tracedat_writer.Blob(path=stream.path, size=size), stream.raw_bytes, chunks=stream.chunks
            )
        return _tracedat_writer.Piece(_tracedat_writer.Blob(path=stream.path, size=size), stream.raw_bytes)

    def abort(self) -> None:
        for sink in self.cpu_sinks + [self.kallsyms_part]:
            for stream in getattr(sink, "streams", [sink]):
                if isinstance(stream, _compress.Stream):
                    stream.abort()


def zlib_version() -> str:
    return zlib.ZLIB_RUNTIME_VERSION


FORMATS: dict[str, type[CaptureFormat]] = {"dat": DatCapture, "text": TextCapture}


def format_class(fmt: str, file_version: int) -> type[CaptureFormat]:
    """The class of a capture's `format` (and, for dat, its file version)."""
    if fmt == "dat" and file_version == 7:
        return DatV7Capture
    return FORMATS[fmt]
