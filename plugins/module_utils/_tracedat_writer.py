# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writing a trace-cmd trace.dat file, version 6 or 7, on the traced host.

Version 6 follows trace-cmd.dat.v6(5): the initial format (magic, "tracing", the
version string, endianness, long size, page size), header_page and header_event,
the ftrace and event format files, kallsyms, printk formats, saved cmdlines, the
CPU count, an options section (DATE, CPUSTAT per CPU, TRACECLOCK, UNAME),
"flyrecord" with each CPU's offset and size, then the per-CPU ring-buffer pages,
copied as the kernel handed them out of per_cpu/cpuN/trace_pipe_raw, starting at a
page boundary. Its header comes in two parts, so that the first (formats and
kallsyms, most of it) can be prepared while a window is still open, and the second
once the sizes of the per-CPU data are known; concatenated zstd frames or gzip
members of the parts unpack to the whole file.

Version 7 follows trace-cmd.dat.v7(5) as trace-cmd 3.1 reads it: after the initial
format come the compression's name and version and the offset of the options
section, then sections, each with a header (id, flags, the id of its description in
the strings section, size): the headers (16), ftrace formats (17), event formats
(18), kallsyms (19), printk formats (20) and saved cmdlines (21), each compressed as
one block ([u32 compressed size][u32 size][data]); one options section (0) naming
those sections' offsets, DATE, CPUSTAT, TRACECLOCK, UNAME, CPUCOUNT and the BUFFER
option (where each CPU's data is); the flyrecord section (3), where each CPU's data
starts on a page boundary of the file as [u32 count] and that many chunks
([u32 compressed size][u32 size][data], each chunk whole pages); and the strings
section (15). trace-cmd finds the strings by walking the sections from the first,
so they follow each other without gaps. `v7_parts` returns the file as a list of
byte strings and part files, which `_compress.assemble` writes one after the other.

Everything is written in the host's byte order, which is what the kernel's pages
are in.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import struct
import sys

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

MAGIC = b"\x17\x08\x44tracing"
VERSION = b"6"

# Option ids (trace-cmd.dat.v7(5) lists them; version 6 uses the same ids). In
# version 7 a section's id is the id of the option that points at it.
OPTION_DONE = 0
OPTION_DATE = 1
OPTION_CPUSTAT = 2
OPTION_BUFFER = 3
OPTION_TRACECLOCK = 4
OPTION_UNAME = 5
OPTION_CPUCOUNT = 8
SECTION_STRINGS = 15
SECTION_HEADERS = 16
SECTION_FTRACE = 17
SECTION_EVENTS = 18
SECTION_KALLSYMS = 19
SECTION_PRINTK = 20
SECTION_CMDLINES = 21
FLAG_COMPRESSED = 1
# What trace-cmd calls each section (its descriptions, in the strings section).
DESCRIPTIONS = {
    SECTION_HEADERS: "headers",
    SECTION_FTRACE: "ftrace events",
    SECTION_EVENTS: "events format",
    SECTION_KALLSYMS: "kallsyms",
    SECTION_PRINTK: "printk",
    SECTION_CMDLINES: "command lines",
    OPTION_DONE: "options",
    OPTION_BUFFER: "buffer flyrecord ",
    SECTION_STRINGS: "strings",
}
# The metadata sections, in the order they are written.
METADATA = (SECTION_HEADERS, SECTION_FTRACE, SECTION_EVENTS, SECTION_KALLSYMS, SECTION_PRINTK, SECTION_CMDLINES)
# trace-cmd reads a chunk's sizes as 32-bit and decompresses it into an int-sized
# buffer; a chunk stays far below both.
MAX_CHUNK = 1 << 30


class TraceDatError(TracefleetError):
    """Data that cannot make a valid trace.dat."""


class DatLayout:
    """What goes into one trace.dat, everything but the per-CPU pages as bytes."""

    def __init__(
        self,
        page_size: int,
        header_page: bytes,
        header_event: bytes,
        ftrace_formats: list,
        systems: list,
        kallsyms: bytes,
        printk_formats: bytes,
        cmdlines: bytes,
        cpu_stats: list,
        trace_clock: bytes,
        uname: bytes,
    ) -> None:
        self.page_size = page_size
        self.header_page = header_page
        self.header_event = header_event
        self.ftrace_formats = ftrace_formats  # [bytes]
        self.systems = systems  # [(name, [bytes])]
        self.kallsyms = kallsyms
        self.printk_formats = printk_formats
        self.cmdlines = cmdlines
        self.cpu_stats = cpu_stats  # [bytes], one per CPU, in CPU order
        self.trace_clock = trace_clock
        self.uname = uname
        # The DATE option: the trace clock's offset from the time of day (`date_option`),
        # or b"" when there is none.
        self.date = b""


class _Writer:
    def __init__(self, handle, order: str) -> None:
        self.handle = handle
        self.prefix = "<" if order == "little" else ">"

    def raw(self, data: bytes) -> None:
        self.handle.write(data)

    def u16(self, value: int) -> None:
        self.raw(struct.pack(self.prefix + "H", value))

    def u32(self, value: int) -> None:
        self.raw(struct.pack(self.prefix + "I", value))

    def u64(self, value: int) -> None:
        self.raw(struct.pack(self.prefix + "Q", value))

    def sized32(self, data: bytes) -> None:
        self.u32(len(data))
        self.raw(data)

    def sized64(self, data: bytes) -> None:
        self.u64(len(data))
        self.raw(data)


def _cstring(data: bytes) -> bytes:
    return data.rstrip(b"\0") + b"\0"


def _initial(out: _Writer, layout: DatLayout, order: str, long_size: int) -> None:
    out.raw(MAGIC)
    out.raw(VERSION + b"\0")
    out.raw(bytes([0 if order == "little" else 1, long_size]))
    out.u32(layout.page_size)


def opening_bytes(
    layout: DatLayout, order: str = sys.byteorder, long_size: int = ctypes.sizeof(ctypes.c_long)
) -> bytes:
    """The file's first part, which does not change during a window: the initial
    format, header_page, header_event, the ftrace and event formats, and kallsyms."""
    buf = io.BytesIO()
    out = _Writer(buf, order)
    _initial(out, layout, order, long_size)
    out.raw(b"header_page\0")
    out.sized64(layout.header_page)
    out.raw(b"header_event\0")
    out.sized64(layout.header_event)
    out.u32(len(layout.ftrace_formats))
    for fmt in layout.ftrace_formats:
        out.sized64(fmt)
    out.u32(len(layout.systems))
    for name, formats in layout.systems:
        out.raw(_cstring(name.encode()))
        out.u32(len(formats))
        for fmt in formats:
            out.sized64(fmt)
    out.sized32(layout.kallsyms)
    return buf.getvalue()


def closing_bytes(layout: DatLayout, opening_size: int, cpu_sizes: list, order: str = sys.byteorder) -> bytes:
    """The rest of the header, known when the window has closed: printk formats, saved
    cmdlines, the CPU count, the options (per-CPU stats, trace clock, uname), the
    flyrecord table for CPUs with the given data sizes (whole pages each), the trace
    clock again (where version 6 readers look for it after the table), and the padding
    that puts the first CPU's data on a page boundary of the file."""
    buf = io.BytesIO()
    out = _Writer(buf, order)
    out.sized32(layout.printk_formats)
    out.sized64(layout.cmdlines)
    out.u32(len(cpu_sizes))
    out.raw(b"options  \0")
    for option, data in _plain_options(layout):
        out.u16(option)
        out.sized32(data)
    out.u16(OPTION_DONE)
    out.raw(b"flyrecord\0")
    clock = layout.trace_clock.rstrip(b"\0") + b"\n"
    table_end = opening_size + buf.tell() + 16 * len(cpu_sizes) + 8 + len(clock)
    offset = -(-table_end // layout.page_size) * layout.page_size
    padding = offset - table_end
    for size in cpu_sizes:
        out.u64(offset)
        out.u64(size)
        offset += size
    out.sized64(clock)
    buf.write(b"\0" * padding)
    return buf.getvalue()


def _plain_options(layout: DatLayout) -> list:
    """The options both versions carry: DATE (when there is one), a CPUSTAT per CPU,
    TRACECLOCK and UNAME."""
    options = [(OPTION_DATE, _cstring(layout.date))] if layout.date else []
    options.extend((OPTION_CPUSTAT, _cstring(stats)) for stats in layout.cpu_stats)
    options.append((OPTION_TRACECLOCK, _cstring(layout.trace_clock)))
    options.append((OPTION_UNAME, _cstring(layout.uname)))
    return options


def date_option(offset_ns: int) -> bytes:
    """The DATE option's text for a trace clock that is `offset_ns` behind the time of
    day: what `trace-cmd record --date` writes, microseconds in hex ("0x..."), which
    `trace-cmd report` adds (times 1000) to every timestamp."""
    micros = (abs(offset_ns) + 500) // 1000
    return ("%s0x%x" % ("-" if offset_ns < 0 else "", micros)).encode()


def header_bytes(
    layout: DatLayout, cpu_sizes: list, order: str = sys.byteorder, long_size: int = ctypes.sizeof(ctypes.c_long)
) -> bytes:
    """Everything before the per-CPU data, padding included."""
    opening = opening_bytes(layout, order, long_size)
    return opening + closing_bytes(layout, len(opening), cpu_sizes, order)


def check_pages(layout: DatLayout, cpu_sizes: list) -> None:
    """Each CPU's data must be whole pages, or readers would misplace every page after
    the first short one."""
    for cpu, size in enumerate(cpu_sizes):
        if size % layout.page_size:
            raise TraceDatError(
                "cpu%d's ring-buffer data is %d bytes, not whole %d-byte pages: the kernel's pages are "
                "another size than the trace.dat would declare, so no trace.dat was written"
                % (cpu, size, layout.page_size)
            )


def write(path: str, layout: DatLayout, cpu_files: list) -> int:
    """Write the trace.dat at `path` from the layout and the per-CPU page files (one per
    CPU, in order). Returns the file's size."""
    sizes = [os.path.getsize(name) for name in cpu_files]
    check_pages(layout, sizes)
    with open(path, "wb") as handle:
        handle.write(header_bytes(layout, sizes))
        for name in cpu_files:
            with open(name, "rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)
        return handle.tell()


# ------------------------------------------------------------------ version 7


class Blob:
    """Bytes of the file, in memory (`data`) or in a part file (`path`, `size` bytes)."""

    def __init__(self, data: bytes | None = None, path: str | None = None, size: int | None = None) -> None:
        if (data is None) == (path is None):
            raise ValueError("a Blob is data or a path")
        self.data = data
        self.path = path
        self.size = len(data) if data is not None else int(size or 0)

    def part(self):
        return self.data if self.data is not None else self.path


class Piece:
    """A run of a CPU's ring-buffer pages as the file holds it: `raw_size` bytes of
    pages, stored as `blob`: the pages themselves, one compressed chunk of them
    (`chunks` None), or that many chunks with their sizes in front of each already."""

    def __init__(self, blob: Blob, raw_size: int, chunks: int | None = None) -> None:
        self.blob = blob
        self.raw_size = raw_size
        self.chunks = chunks


def _selected_clock(trace_clock: bytes) -> bytes:
    """The clock in brackets in the text of trace_clock ("local" when none is)."""
    start, end = trace_clock.find(b"["), trace_clock.find(b"]")
    return trace_clock[start + 1 : end] if 0 <= start < end else b"local"


def _strings() -> tuple[bytes, dict]:
    """The strings section's contents and each description's id (its offset)."""
    data = b""
    ids = {}
    for key, text in DESCRIPTIONS.items():
        ids[key] = len(data)
        data += text.encode() + b"\0"
    return data, ids


def _section_header(out: _Writer, section: int, flags: int, description: int, size: int) -> None:
    out.u16(section)
    out.u16(flags)
    out.u32(description)
    out.u64(size)


def v7_initial(
    page_size: int, compression: str, version: str, options_offset: int, order: str, long_size: int
) -> bytes:
    buf = io.BytesIO()
    out = _Writer(buf, order)
    out.raw(MAGIC)
    out.raw(b"7\0")
    out.raw(bytes([0 if order == "little" else 1, long_size]))
    out.u32(page_size)
    out.raw(compression.encode() + b"\0" + version.encode() + b"\0")
    out.u64(options_offset)
    return buf.getvalue()


def metadata_payloads(layout: DatLayout) -> dict:
    """The uncompressed contents of the metadata sections, by section id, as
    trace-cmd.dat.v7(5) lays them out (the same fields as version 6)."""
    order = sys.byteorder
    payloads = {}
    buf = io.BytesIO()
    out = _Writer(buf, order)
    out.raw(b"header_page\0")
    out.sized64(layout.header_page)
    out.raw(b"header_event\0")
    out.sized64(layout.header_event)
    payloads[SECTION_HEADERS] = buf.getvalue()
    buf = io.BytesIO()
    out = _Writer(buf, order)
    out.u32(len(layout.ftrace_formats))
    for fmt in layout.ftrace_formats:
        out.sized64(fmt)
    payloads[SECTION_FTRACE] = buf.getvalue()
    buf = io.BytesIO()
    out = _Writer(buf, order)
    out.u32(len(layout.systems))
    for name, formats in layout.systems:
        out.raw(_cstring(name.encode()))
        out.u32(len(formats))
        for fmt in formats:
            out.sized64(fmt)
    payloads[SECTION_EVENTS] = buf.getvalue()
    payloads[SECTION_KALLSYMS] = struct.pack(("<" if order == "little" else ">") + "I", len(layout.kallsyms))
    payloads[SECTION_PRINTK] = _sized32(layout.printk_formats, order)
    payloads[SECTION_CMDLINES] = _sized64(layout.cmdlines, order)
    return payloads


def _sized32(data: bytes, order: str) -> bytes:
    return struct.pack(("<" if order == "little" else ">") + "I", len(data)) + data


def _sized64(data: bytes, order: str) -> bytes:
    return struct.pack(("<" if order == "little" else ">") + "Q", len(data)) + data


def block_header(compressed: int, size: int, order: str = sys.byteorder) -> bytes:
    """What precedes a compressed block or chunk: its compressed size and its size."""
    if compressed > 0xFFFFFFFF or size > 0xFFFFFFFF:
        raise TraceDatError(
            "a compressed block of %d bytes (%d unpacked) does not fit a trace.dat" % (compressed, size)
        )
    return struct.pack(("<" if order == "little" else ">") + "II", compressed, size)


def v7_parts(
    layout: DatLayout,
    compression: str,
    compression_version: str,
    sections: dict,
    cpus: list,
    order: str = sys.byteorder,
    long_size: int = ctypes.sizeof(ctypes.c_long),
) -> list:
    """The whole version 7 file, as parts to write one after the other (bytes, or
    the paths of part files).

    `sections`: section id -> (Blob, uncompressed size) for each of METADATA, the
    Blob compressed as one block, or (with compression "none") the contents
    themselves. `cpus`: one list of `Piece`s per CPU slot (empty for a CPU without
    data), each a compressed chunk, or the pages themselves with "none"."""
    compressed = compression != "none"
    flags = FLAG_COMPRESSED if compressed else 0
    strings, ids = _strings()
    initial_size = len(v7_initial(layout.page_size, compression, compression_version, 0, order, long_size))
    parts: list = [b""]  # the initial format, once the options' offset is known
    offset = initial_size
    offsets = {}
    for section in METADATA:
        blob, size = sections[section]
        buf = io.BytesIO()
        out = _Writer(buf, order)
        payload_size = blob.size + (8 if compressed else 0)
        _section_header(out, section, flags, ids[section], payload_size)
        if compressed:
            buf.write(block_header(blob.size, size, order))
        offsets[section] = offset
        parts.extend([buf.getvalue(), blob.part()])
        offset += buf.tell() + blob.size
    options_offset = offset

    # The options section's size does not depend on the offsets it holds.
    def options_bytes(buffer_offset: int, cpu_places: list) -> bytes:
        body = io.BytesIO()
        out = _Writer(body, order)
        listed = [(section, struct.pack(out.prefix + "Q", offsets[section])) for section in METADATA]
        listed += _plain_options(layout)
        listed.append((OPTION_CPUCOUNT, struct.pack(out.prefix + "I", len(cpus))))
        buffer = io.BytesIO()
        bout = _Writer(buffer, order)
        bout.u64(buffer_offset)
        bout.raw(b"\0")  # the top-level buffer's name: ""
        bout.raw(_cstring(_selected_clock(layout.trace_clock)))
        bout.u32(layout.page_size)
        bout.u32(len(cpus))
        for cpu, (place, size) in enumerate(cpu_places):
            bout.u32(cpu)
            bout.u64(place)
            bout.u64(size)
        listed.append((OPTION_BUFFER, buffer.getvalue()))
        for option, data in listed:
            out.u16(option)
            out.sized32(data)
        out.u16(OPTION_DONE)
        out.u32(8)
        out.u64(0)  # no further options section
        head = io.BytesIO()
        _section_header(_Writer(head, order), OPTION_DONE, 0, ids[OPTION_DONE], body.tell())
        return head.getvalue() + body.getvalue()

    options_size = len(options_bytes(0, [(0, 0)] * len(cpus)))
    buffer_offset = options_offset + options_size
    offset = buffer_offset + 16
    data_parts: list = []
    places = []
    page = layout.page_size
    for pieces in cpus:
        aligned = -(-offset // page) * page
        glue = b"\0" * (aligned - offset)
        size = 0
        if pieces and compressed:
            count = sum(1 if piece.chunks is None else piece.chunks for piece in pieces)
            glue += struct.pack(("<" if order == "little" else ">") + "I", count)
            size += 4
        data_parts.append(glue)
        for piece in pieces:
            if compressed and piece.chunks is None:
                if piece.raw_size > MAX_CHUNK:
                    raise TraceDatError("a chunk of %d bytes is more than a trace.dat reader takes" % piece.raw_size)
                data_parts.append(block_header(piece.blob.size, piece.raw_size, order))
                size += 8
            data_parts.append(piece.blob.part())
            size += piece.blob.size
        places.append((aligned, size))
        offset = aligned + size
    buffer_head = io.BytesIO()
    _section_header(_Writer(buffer_head, order), OPTION_BUFFER, flags, ids[OPTION_BUFFER], offset - buffer_offset - 16)
    parts.append(options_bytes(buffer_offset, places))
    parts.append(buffer_head.getvalue())
    parts.extend(data_parts)
    strings_head = io.BytesIO()
    _section_header(_Writer(strings_head, order), SECTION_STRINGS, 0, ids[SECTION_STRINGS], len(strings))
    parts.extend([strings_head.getvalue(), strings])
    parts[0] = v7_initial(layout.page_size, compression, compression_version, options_offset, order, long_size)
    return [part for part in parts if not (isinstance(part, bytes) and not part)]
