# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read trace-cmd trace.dat files, versions 6 and 7, on the controller.

Written from the file format as trace-cmd.dat.v6(5) and trace-cmd.dat.v7(5) document
it and from the ring buffer layout the kernel describes in events/header_page and
events/header_event; independent of the writer in this collection and of trace-cmd's
own code, so that each can check the other.

Version 6, in order: magic 0x17 0x08 0x44 "tracing", version "6\\0", endianness
byte, long size byte, u32 page size; header_page and header_event texts; ftrace
event formats; event systems with their formats; kallsyms; printk formats; saved
cmdlines; u32 CPU count; optionally "options  \\0" and (u16 id, u32 size, data)
records up to id 0; then "flyrecord\\0" and per CPU a u64 offset and u64 size of
its ring-buffer pages. When the TRACECLOCK option is present a u64 size and the
text of the trace_clock file follow that table (the v6 placement; trace-cmd 3.1
also puts the text in the option, and either is read).

Version 7 holds the same parts in sections placed anywhere in the file. After the
same initial bytes come the compression's name and version ("zstd\\0" "1.5.4\\0", or
"none\\0" "\\0") and the u64 offset of the first options section. A section starts
with (u16 id, u16 flags, u32 string id, u64 size); with flag 1 its data is (u32
compressed size, u32 size, the compressed bytes). Options sections chain through
their DONE option (u64 offset of the next one, 0 for none); options 16 to 21 give the
offsets of the header, ftrace formats, event formats, kallsyms, printk formats and
cmdlines sections, laid out as in version 6; a BUFFER option (3) per instance gives
its trace clock, its page size and, per CPU, (u32 id, u64 offset, u64 size) of its
pages. In a compressed file each CPU's data is a u32 chunk count and per chunk (u32
compressed size, u32 size, bytes), every chunk whole pages. zlib (Python's zlib) and
zstd (the `zstandard` package, a controller requirement) are read; each section and
chunk is decompressed on its own, with the size it claims as the limit.

Each ring-buffer page: u64 timestamp, then `commit` (a kernel long: the length
of the event data, with bit 31 "events were missed before this page" and bit 30
"the count of missed events is stored after the data"), then the events. Each
event starts with a u32 (type_len: 5 bits, time_delta: 27 bits):
  0        data; its length, counting that u32 itself, is in the next u32
  1..28    data of type_len * 4 bytes
  29       padding: with time_delta 0 the rest of the page, else the length in
           the next u32 (not counting the header)
  30       time extend: the running timestamp advances by next_u32 << 27 | delta
  31       absolute timestamp, the same encoding; it replaces the running one
A discarded event becomes padding but keeps its time_delta, and the next event's
delta counts from it, so padding moves the clock too (as `trace-cmd report`
reads it). Pages are read one at a time, from a read-only mmap or from one
decompressed chunk; nothing holds more than one chunk, and the file's pages are let
go (madvise) once read, so reading a large file keeps only a stretch of it resident.

An event's fields are decoded from its format (`decoder`): integers of 1, 2, 4 or 8
bytes as the format's `signed` says, `char` arrays and `__data_loc`/`__rel_loc`
strings as text up to the first NUL, other arrays as lists of integers.

Timestamps are the trace clock's raw values: nanoseconds for local, global,
perf, mono, mono_raw, boot and tai (NS_CLOCKS); otherwise counts (counter),
cycles (x86-tsc) or jiffies in clock ticks (uptime).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import heapq
import mmap
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, NamedTuple, Union

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

MAGIC = b"\x17\x08\x44tracing"
SUPPORTED_VERSIONS = ("6", "7")

OPTION_DONE = 0
OPTION_DATE = 1
OPTION_CPUSTAT = 2
OPTION_BUFFER = 3
OPTION_TRACECLOCK = 4
OPTION_UNAME = 5
OPTION_OFFSET = 7
OPTION_CPUCOUNT = 8
OPTION_VERSION = 9
# Version 7: options holding the offset of a section (its id is the option's id).
OPTION_HEADER_INFO = 16
OPTION_FTRACE_EVENTS = 17
OPTION_EVENT_FORMATS = 18
OPTION_KALLSYMS = 19
OPTION_PRINTK = 20
OPTION_CMDLINES = 21
OPTION_BUFFER_TEXT = 22
SECTION_OPTIONS = 0
SECTION_COMPRESSED = 1
# What one section or chunk may claim to decompress to: far more than kallsyms or a
# chunk of pages, far less than what would exhaust the controller's memory.
MAX_INFLATED = 1 << 28
# How much of an uncompressed file is read before its pages are let go (_release).
RELEASE_EVERY = 1 << 20
# The zstandard package version the collection is tested with (requirements.txt).
ZSTANDARD = "zstandard==0.25.0"

TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
TIME_DELTA_BITS = 27

RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
RB_MISSED_FLAGS = RB_MISSED_EVENTS | RB_MISSED_STORED
# An absolute timestamp event keeps only the low 59 bits; the top bits come from
# the running timestamp (kernel ring_buffer.c, rb_fix_abs_ts).
TS_MSB_SHIFT = 59
TS_MSB = ((1 << 64) - 1) & ~((1 << TS_MSB_SHIFT) - 1)

# Trace clocks whose values are nanoseconds (the kernel's trace_clocks table, in_ns).
NS_CLOCKS = frozenset(("local", "global", "perf", "mono", "mono_raw", "boot", "tai"))

FIELD_RE = re.compile(
    r"field:\s*(?P<decl>[^;]*);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>\d+);)?"
)

# What a decoded field holds.
INT = "int"  # a signed integer
UINT = "uint"  # an unsigned integer
TEXT = "str"  # a char array or a dynamic char string, up to its first NUL
INTS = "ints"  # a fixed or dynamic array of integers
BYTES = "bytes"  # anything else: the raw bytes
Value = Union[int, str, list, bytes]
ByteOrder = Literal["little", "big"]


class TraceDatError(TracefleetError):
    """The file is not a trace.dat this reader understands, or it is damaged."""


class MissingDependencyError(TraceDatError):
    """The file is fine, but reading it needs a package the controller lacks."""


@dataclass(frozen=True)
class FormatField:
    name: str
    declaration: str
    offset: int
    size: int
    signed: bool


@dataclass
class EventFormat:
    system: str
    name: str
    id: int | None
    fields: dict[str, FormatField] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return "%s:%s" % (self.system, self.name)


class Event(NamedTuple):
    cpu: int
    timestamp: int
    event_id: int
    pid: int


class Record(NamedTuple):
    """One data event of a page: its payload is page.data[offset:offset + size]."""

    timestamp: int
    event_id: int
    pid: int
    offset: int
    size: int


class Page(NamedTuple):
    cpu: int
    offset: int  # of the page in `data`: the file, or one decompressed chunk
    timestamp: int
    length: int
    missed_events: bool
    missed_count: int | None
    data: Any = None
    chunk: int | None = None  # the file offset of the compressed chunk holding the page


class _Block(NamedTuple):
    """A stretch of one CPU's pages: in the file as they are, or one compressed chunk."""

    offset: int
    stored: int
    size: int
    compressed: bool


def parse_fields(text: str) -> dict[str, FormatField]:
    """The `field:` lines of a format (or of header_page), by field name."""
    fields = {}
    for match in FIELD_RE.finditer(text):
        declaration = match.group("decl").strip()
        # "char prev_comm[16]" -> prev_comm; "__data_loc char[] name" -> name
        name = re.sub(r"\[[^\]]*\]$", "", declaration).split()[-1] if declaration else ""
        fields[name] = FormatField(
            name=name,
            declaration=declaration,
            offset=int(match.group("offset")),
            size=int(match.group("size")),
            signed=match.group("signed") == "1",
        )
    return fields


def parse_format(system: str, text: str) -> EventFormat:
    name_match = re.search(r"^name:\s*(\S+)", text, re.M)
    id_match = re.search(r"^ID:\s*(\d+)", text, re.M)
    if name_match is None:
        raise TraceDatError("an event format in system %r has no name: line" % system)
    return EventFormat(
        system=system,
        name=name_match.group(1),
        id=int(id_match.group(1)) if id_match else None,
        fields=parse_fields(text),
    )


def parse_trace_clock(text: str) -> str | None:
    """`[local] global counter` -> local; a bare name is taken as it is."""
    text = text.strip("\0 \n")
    match = re.search(r"\[([^\]]+)\]", text)
    if match:
        return match.group(1)
    return text.split()[0] if text.split() else None


def parse_cpustat(text: str) -> dict:
    """The text of per_cpu/cpuN/stats: `entries: 12` -> {"entries": 12}, and so on.

    Counters become ints, the `... ts:` seconds become floats; keys are snake_case.
    """
    stats: dict = {}
    for line in text.strip("\0").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = re.sub(r"\W+", "_", key.strip().lower())
        value = value.strip()
        try:
            stats[key] = int(value)
        except ValueError:
            try:
                stats[key] = float(value)
            except ValueError:
                stats[key] = value
    return stats


def parse_cmdlines(text: str) -> dict[int, str]:
    cmdlines = {}
    for line in text.splitlines():
        pid, _sep, comm = line.strip().partition(" ")
        if pid.isdigit():
            cmdlines[int(pid)] = comm
    return cmdlines


def parse_date(text: str | None) -> int | None:
    """The DATE option (`trace-cmd record --date`): wall-clock time minus trace time,
    in microseconds, as `0x...` hex (or decimal); returned in nanoseconds."""
    if not text:
        return None
    try:
        return int(text.strip(), 0) * 1000
    except ValueError:
        return None


def _int_format(endian: str, size: int, signed: bool) -> struct.Struct:
    codes = {1: "b", 2: "h", 4: "i", 8: "q"}
    if size not in codes:
        raise TraceDatError("a common field of %d bytes is not an integer size" % size)
    code = codes[size]
    return struct.Struct(endian + (code if signed else code.upper()))


def _text_of(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


# ---------------------------------------------------------------- field decoding


class _FieldPlan(NamedTuple):
    name: str
    kind: str  # INT, UINT, TEXT, INTS, BYTES
    offset: int
    size: int
    location: str  # "" (in place), "data" (__data_loc) or "rel" (__rel_loc)
    unpack: Any  # struct.Struct.unpack_from of the integer (or of one element)
    element: int  # element size of INTS


def _base_type(declaration: str, name: str) -> tuple[str, str, bool]:
    """(location, element type, is an array) of a field declaration."""
    words = declaration.split()
    location = ""
    if words and words[0] in ("__data_loc", "__rel_loc"):
        location = "data" if words[0] == "__data_loc" else "rel"
        words = words[1:]
    text = " ".join(words)
    array = "[" in text
    text = re.sub(r"\[[^\]]*\]", "", text)
    if text.endswith(name):
        text = text[: -len(name)]
    type_words = [word for word in text.replace("*", " * ").split() if word not in ("const", "volatile")]
    return location, " ".join(type_words), array


class FieldDecoder:
    """The values of one event format's own fields (common_* left out) from a payload."""

    def __init__(self, event: EventFormat, endian: str) -> None:
        self.event = event
        self.plans: list[_FieldPlan] = []
        for item in sorted(event.fields.values(), key=lambda value: value.offset):
            if item.name.startswith("common_") or not item.name:
                continue
            self.plans.append(self._plan(item, endian))

    @staticmethod
    def _plan(item: FormatField, endian: str) -> _FieldPlan:
        location, base, array = _base_type(item.declaration, item.name)
        text = base in ("char", "signed char")
        if location:
            if item.size != 4:
                return _FieldPlan(item.name, BYTES, item.offset, item.size, "", None, 0)
            loc = struct.Struct(endian + "I").unpack_from
            return _FieldPlan(item.name, TEXT if text else BYTES, item.offset, item.size, location, loc, 1)
        if array:
            if text:
                return _FieldPlan(item.name, TEXT, item.offset, item.size, "", None, 0)
            count = re.search(r"\[(\d+)\]", item.declaration)
            if count and int(count.group(1)) and item.size % int(count.group(1)) == 0:
                element = item.size // int(count.group(1))
                if element in (1, 2, 4, 8):
                    unpack = _int_format(endian, element, item.signed).unpack_from
                    return _FieldPlan(item.name, INTS, item.offset, item.size, "", unpack, element)
            return _FieldPlan(item.name, BYTES, item.offset, item.size, "", None, 0)
        if item.size in (1, 2, 4, 8):
            unpack = _int_format(endian, item.size, item.signed).unpack_from
            return _FieldPlan(item.name, INT if item.signed else UINT, item.offset, item.size, "", unpack, 0)
        return _FieldPlan(item.name, BYTES, item.offset, item.size, "", None, 0)

    @property
    def kinds(self) -> dict[str, str]:
        return {plan.name: plan.kind for plan in self.plans}

    def decode(self, data, offset: int, size: int) -> dict[str, Value]:
        """The fields of the payload data[offset:offset + size]; a field the payload is
        too short for is left out."""
        values: dict[str, Value] = {}
        end = offset + size
        for plan in self.plans:
            start = offset + plan.offset
            if plan.location:
                if start + 4 > end:
                    continue
                loc = plan.unpack(data, start)[0]
                start = offset + (loc & 0xFFFF)
                if plan.location == "rel":
                    start += plan.offset + plan.size
                stop = min(start + (loc >> 16), end)
                raw = bytes(data[start:stop]) if start < stop else b""
                values[plan.name] = _text_of(raw) if plan.kind == TEXT else raw
                continue
            # A zero-size array (print's `char buf[]`) runs to the end of the payload.
            stop = end if plan.size == 0 else start + plan.size
            if stop > end or start > end:
                continue
            kind = plan.kind
            if kind in (INT, UINT):
                values[plan.name] = plan.unpack(data, start)[0]
            elif kind == TEXT:
                values[plan.name] = _text_of(bytes(data[start:stop]))
            elif kind == INTS:
                values[plan.name] = [plan.unpack(data, at)[0] for at in range(start, stop, plan.element)]
            else:
                values[plan.name] = bytes(data[start:stop])
        return values


# ---------------------------------------------------------------- decompression


def _zlib_codec() -> tuple[Callable[[bytes, int], bytes], tuple]:
    def inflate(data: bytes, limit: int) -> bytes:
        return zlib.decompressobj().decompress(data, limit)

    return inflate, (zlib.error,)


def _zstd_codec(path: str) -> tuple[Callable[[bytes, int], bytes], tuple]:
    try:
        import zstandard  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise MissingDependencyError(
            "%s is a zstd-compressed trace.dat (version 7): reading it on the controller needs the "
            "Python package zstandard (%s, in the collection's requirements.txt), which this Python "
            "(the one running ansible) cannot import; or rewrite the file as version 6 with "
            "`trace-cmd convert --file-version 6 --compression none`" % (path, ZSTANDARD)
        ) from None
    context = zstandard.ZstdDecompressor()

    def inflate(data: bytes, limit: int) -> bytes:
        parts = []
        got = 0
        with context.stream_reader(data) as reader:
            while got < limit:
                part = reader.read(limit - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        return b"".join(parts)

    return inflate, (zstandard.ZstdError,)


CODECS = {"zlib": lambda path: _zlib_codec(), "zstd": _zstd_codec}


class _Cursor:
    """Sequential reads from a buffer (the file's map, or a decompressed section),
    with errors naming the file and where."""

    __slots__ = ("data", "pos", "end", "path", "order", "where")

    def __init__(
        self, path: str, data, order: ByteOrder, pos: int = 0, end: int | None = None, where: str = ""
    ) -> None:
        self.path, self.data, self.order, self.pos = path, data, order, pos
        self.end = len(data) if end is None else end
        self.where = where

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > self.end:
            raise TraceDatError(
                "%s: truncated%s: %d bytes wanted at offset %d, there are %d"
                % (self.path, self.where, count, self.pos, self.end)
            )
        data = self.data[self.pos : self.pos + count]
        self.pos += count
        return data

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), self.order)

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos, self.end)
        if end < 0:
            raise TraceDatError("%s: unterminated string%s at offset %d" % (self.path, self.where, self.pos))
        text = self.data[self.pos : end].decode("utf-8", "replace")
        self.pos = end + 1
        return text

    def text(self, size_bytes: int) -> str:
        return self.take(self.number(size_bytes)).decode("utf-8", "replace")

    def label(self, label: bytes) -> None:
        found = self.take(len(label))
        if found != label:
            raise TraceDatError(
                "%s: expected %r%s at offset %d, found %r"
                % (self.path, label.decode(), self.where, self.pos - len(label), found)
            )


class TraceDat:
    """A trace.dat file opened for reading: `with TraceDat(path) as dat: ...`.

    The headers are parsed on opening; the per-CPU data is read page by page
    when iterated (`pages`, `events`, `records`, `scan`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle = open(path, "rb")  # noqa: SIM115 (closed by close())
        try:
            size = os.fstat(self._handle.fileno()).st_size
            if size < len(MAGIC) + 8:
                raise TraceDatError("%s: %d bytes, too short for a trace.dat file" % (path, size))
            self._map = mmap.mmap(self._handle.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self._handle.close()
            raise
        self._size = size
        self.options: list[tuple[int, bytes]] = []
        self.cpu_stats: dict[int, dict] = {}
        self.trace_clock_text: str | None = None
        self.uname: str | None = None
        self.date: str | None = None
        self.offset_text: str | None = None
        self.tracer_version: str | None = None
        self.compression: str | None = None
        self.compression_version: str | None = None
        self.buffers: list[str] = []
        self.cpu_data: list[tuple[int, int]] = []
        self.cmdlines: dict[int, str] = {}
        self.ftrace_formats: list[EventFormat] = []
        self.event_formats: list[EventFormat] = []
        self._blocks: dict[int, list[_Block]] = {}
        self._inflate: Callable[[bytes, int], bytes] | None = None
        self._codec_errors: tuple = ()
        self._kallsyms_at: tuple[str, int, int] | None = None
        self._printk_at: tuple[str, int, int] | None = None
        self._cpu_count = 0
        self._decoders: dict[int, FieldDecoder | None] = {}
        cursor = _Cursor(path, self._map, "little")
        try:
            self._parse(cursor)
        except struct.error as exc:
            self.close()
            raise TraceDatError("%s: truncated at offset %d (%s)" % (path, cursor.pos, exc)) from exc
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> TraceDat:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        mapping = getattr(self, "_map", None)
        if mapping is not None:
            mapping.close()
            del self._map
        self._handle.close()

    # -- the header part --------------------------------------------------------

    def _parse(self, cursor: _Cursor) -> None:
        if cursor.take(len(MAGIC)) != MAGIC:
            raise TraceDatError("%s: not a trace.dat file (no 0x17 0x08 0x44 'tracing' magic)" % self.path)
        self.version = cursor.cstring()
        if self.version not in SUPPORTED_VERSIONS:
            raise TraceDatError(
                "%s: trace.dat version %s; this reader reads versions %s"
                % (self.path, self.version, " and ".join(SUPPORTED_VERSIONS))
            )
        endian_flag = cursor.take(1)[0]
        if endian_flag not in (0, 1):
            raise TraceDatError("%s: endianness byte %d is neither 0 nor 1" % (self.path, endian_flag))
        self.endian = "<" if endian_flag == 0 else ">"
        cursor.order = "little" if endian_flag == 0 else "big"
        self.long_size = cursor.take(1)[0]
        self.page_size = cursor.number(4)
        if self.version == "6":
            self._parse_v6(cursor)
        else:
            self._parse_v7(cursor)
        self._index_formats()
        if self.page_size < 64 or self.page_size & (self.page_size - 1):
            raise TraceDatError("%s: page size %d is not a power of two" % (self.path, self.page_size))
        self.trace_clock = parse_trace_clock(self.trace_clock_text) if self.trace_clock_text else None

    def _parse_v6(self, cursor: _Cursor) -> None:
        self._parse_header_info(cursor)
        self._parse_ftrace_formats(cursor)
        self._parse_event_formats(cursor)
        size = cursor.number(4)
        self._kallsyms_at = ("span", cursor.pos, size)
        cursor.take(size)
        size = cursor.number(4)
        self._printk_at = ("span", cursor.pos, size)
        cursor.take(size)
        self.cmdlines = parse_cmdlines(cursor.text(8))
        self.cpus = cursor.number(4)

        kind = cursor.take(10)
        if kind == b"options  \0":
            self._parse_options(cursor)
            kind = cursor.take(10)
        if kind == b"latency  \0":
            raise TraceDatError("%s: a latency-format trace.dat (text only, no ring-buffer data)" % self.path)
        if kind != b"flyrecord\0":
            raise TraceDatError("%s: expected 'flyrecord' at offset %d, found %r" % (self.path, cursor.pos - 10, kind))
        for cpu in range(self.cpus):
            offset, size = cursor.number(8), cursor.number(8)
            if offset + size > self._size:
                raise TraceDatError(
                    "%s: CPU %d data (offset %d, %d bytes) runs past the end of the "
                    "file (%d bytes)" % (self.path, cpu, offset, size, self._size)
                )
            self.cpu_data.append((offset, size))
            self._blocks[cpu] = [_Block(offset, size, size, False)] if size else []
        self.cpu_ids = list(range(self.cpus))
        if any(option_id == OPTION_TRACECLOCK for option_id, _data in self.options):
            self._read_trace_clock_after_table(cursor)

    def _read_trace_clock_after_table(self, cursor: _Cursor) -> None:
        # Writers that put the text in the option itself (as version 7 does) may leave
        # only the padding before the first CPU's pages here: take what fits and is not
        # empty, and otherwise keep the option's text.
        data_start = min([offset for offset, size in self.cpu_data if size] or [self._size])
        if cursor.pos + 8 > data_start:
            return
        size = cursor.number(8)
        if 0 < size <= data_start - cursor.pos:
            self.trace_clock_text = cursor.take(size).decode("utf-8", "replace")

    def _parse_header_info(self, cursor: _Cursor) -> None:
        cursor.label(b"header_page\0")
        self.header_page = cursor.text(8)
        cursor.label(b"header_event\0")
        self.header_event = cursor.text(8)
        self._layout_page()

    def _parse_ftrace_formats(self, cursor: _Cursor) -> None:
        self.ftrace_formats = [parse_format("ftrace", cursor.text(8)) for _index in range(cursor.number(4))]

    def _parse_event_formats(self, cursor: _Cursor) -> None:
        self.event_formats = []
        for _system_index in range(cursor.number(4)):
            system = cursor.cstring()
            for _event_index in range(cursor.number(4)):
                self.event_formats.append(parse_format(system, cursor.text(8)))

    def _index_formats(self) -> None:
        self.formats = {event.id: event for event in self.ftrace_formats + self.event_formats if event.id is not None}
        self._layout_common_fields()

    def _parse_v7(self, cursor: _Cursor) -> None:
        self.compression = cursor.cstring()
        self.compression_version = cursor.cstring()
        if self.compression != "none":
            codec = CODECS.get(self.compression)
            if codec is None:
                raise TraceDatError(
                    "%s: compressed with %r; this reader reads zstd, zlib and none" % (self.path, self.compression)
                )
            self._inflate, self._codec_errors = codec(self.path)
        sections: dict[int, int] = {}
        buffers: list[tuple] = []
        latency = False
        next_options = cursor.number(8)
        seen = set()
        while next_options:
            if next_options in seen:
                raise TraceDatError("%s: the options sections loop back to offset %d" % (self.path, next_options))
            seen.add(next_options)
            options = self._section(next_options, SECTION_OPTIONS)
            next_options = self._parse_options(options, sections, buffers)
            latency = latency or any(option_id == OPTION_BUFFER_TEXT for option_id, _data in self.options)
        if OPTION_HEADER_INFO not in sections:
            raise TraceDatError("%s: no header_page/header_event section (no HEADER_INFO option)" % self.path)
        self._parse_header_info(self._section(sections[OPTION_HEADER_INFO], OPTION_HEADER_INFO))
        if OPTION_FTRACE_EVENTS in sections:
            self._parse_ftrace_formats(self._section(sections[OPTION_FTRACE_EVENTS], OPTION_FTRACE_EVENTS))
        if OPTION_EVENT_FORMATS in sections:
            self._parse_event_formats(self._section(sections[OPTION_EVENT_FORMATS], OPTION_EVENT_FORMATS))
        if OPTION_CMDLINES in sections:
            self.cmdlines = parse_cmdlines(self._section(sections[OPTION_CMDLINES], OPTION_CMDLINES).text(8))
        for option_id, name in ((OPTION_KALLSYMS, "_kallsyms_at"), (OPTION_PRINTK, "_printk_at")):
            if option_id in sections:
                setattr(self, name, ("section", sections[option_id], option_id))
        self._choose_buffer(buffers, latency)

    def _choose_buffer(self, buffers: list[tuple], latency: bool) -> None:
        """The pages of the first BUFFER with data (trace-cmd writes one per instance)."""
        self.buffers = [name for _offset, name, _clock, _page, _cpus in buffers]
        with_data = [buffer for buffer in buffers if any(size for _cpu, _offset, size in buffer[4])]
        if not buffers and latency:
            raise TraceDatError("%s: a latency-format trace.dat (text only, no ring-buffer data)" % self.path)
        chosen = (with_data or buffers)[0] if buffers else None
        cpu_ids: list[int] = []
        if chosen is not None:
            section, _name, clock, page_size, cpus = chosen
            if clock:
                self.trace_clock_text = clock
            if page_size:
                self.page_size = page_size
            compressed = self._section_flags(section) & SECTION_COMPRESSED
            for cpu, offset, size in cpus:
                if offset + size > self._size:
                    raise TraceDatError(
                        "%s: CPU %d data (offset %d, %d bytes) runs past the end of the file (%d bytes)"
                        % (self.path, cpu, offset, size, self._size)
                    )
                blocks = self._chunks(cpu, offset, size) if compressed and size else []
                if size and not compressed:
                    blocks = [_Block(offset, size, size, False)]
                self._blocks[cpu] = blocks
                cpu_ids.append(cpu)
        self.cpu_ids = sorted(set(cpu_ids))
        self.cpus = max(self._cpu_count, (self.cpu_ids[-1] + 1) if self.cpu_ids else 0)
        self.cpu_data = [(0, 0)] * self.cpus
        if chosen is not None:
            for cpu, offset, size in chosen[4]:
                self.cpu_data[cpu] = (offset, size)

    def _chunks(self, cpu: int, offset: int, size: int) -> list[_Block]:
        # trace-cmd's size counts the chunks, not the u32 count in front of them.
        end = min(offset + 4 + size, self._size)
        cursor = _Cursor(self.path, self._map, "little" if self.endian == "<" else "big", offset, end)
        cursor.where = " (CPU %d's compressed data)" % cpu
        count = cursor.number(4)
        if count > size // 8:
            raise TraceDatError("%s: CPU %d claims %d compressed chunks in %d bytes" % (self.path, cpu, count, size))
        blocks = []
        for _index in range(count):
            stored, unpacked = cursor.number(4), cursor.number(4)
            if unpacked > MAX_INFLATED:
                raise TraceDatError(
                    "%s: CPU %d has a chunk of %d bytes uncompressed; this reader takes up to %d"
                    % (self.path, cpu, unpacked, MAX_INFLATED)
                )
            blocks.append(_Block(cursor.pos, stored, unpacked, True))
            cursor.take(stored)
        return blocks

    def _section_header(self, offset: int) -> tuple[_Cursor, int, int, int]:
        cursor = _Cursor(self.path, self._map, "little" if self.endian == "<" else "big", offset)
        cursor.where = " (section header)"
        section_id, flags, _description, size = cursor.number(2), cursor.number(2), cursor.number(4), cursor.number(8)
        if size > self._size - cursor.pos:
            raise TraceDatError(
                "%s: the section at offset %d claims %d bytes; the file ends %d bytes later"
                % (self.path, offset, size, self._size - cursor.pos)
            )
        cursor.end = cursor.pos + size
        return cursor, section_id, flags, size

    def _section_flags(self, offset: int) -> int:
        return self._section_header(offset)[2]

    def _section(self, offset: int, expected: int) -> _Cursor:
        """A cursor over the (decompressed) data of the section at `offset`."""
        cursor, section_id, flags, size = self._section_header(offset)
        if section_id != expected:
            raise TraceDatError(
                "%s: expected section %d at offset %d, found section %d" % (self.path, expected, offset, section_id)
            )
        where = " (section %d at offset %d)" % (section_id, offset)
        cursor.where = where
        if not flags & SECTION_COMPRESSED:
            return cursor
        stored, unpacked = cursor.number(4), cursor.number(4)
        data = self._decompress(cursor.take(stored), unpacked, "the section at offset %d" % offset)
        return _Cursor(self.path, data, cursor.order, where=where)

    def _decompress(self, data: bytes, size: int, what: str) -> bytes:
        if self._inflate is None:
            raise TraceDatError("%s: %s is marked compressed, but the file names no compression" % (self.path, what))
        if size > MAX_INFLATED:
            raise TraceDatError(
                "%s: %s claims %d bytes uncompressed; this reader takes up to %d"
                % (self.path, what, size, MAX_INFLATED)
            )
        try:
            out = self._inflate(data, size + 1)
        except self._codec_errors as exc:
            raise TraceDatError("%s: %s is damaged (%s: %s)" % (self.path, what, self.compression, exc)) from None
        if len(out) != size:
            raise TraceDatError(
                "%s: %s decompresses to %s bytes, not the %d it claims"
                % (self.path, what, "more than %d" % size if len(out) > size else len(out), size)
            )
        return out

    def _layout_page(self) -> None:
        fields = parse_fields(self.header_page)
        commit = fields.get("commit")
        data = fields.get("data")
        self.kernel_long_size = commit.size if commit else self.long_size
        self._commit_offset = commit.offset if commit else 8
        self._data_offset = data.offset if data else self._commit_offset + self.kernel_long_size
        self._commit_format = _int_format(self.endian, self.kernel_long_size, False)

    def _layout_common_fields(self) -> None:
        common_type = common_pid = None
        for event in self.formats.values():
            common_type = event.fields.get("common_type")
            common_pid = event.fields.get("common_pid")
            if common_type and common_pid:
                break
        if not common_type:
            common_type = FormatField("common_type", "unsigned short common_type", 0, 2, False)
        if not common_pid:
            common_pid = FormatField("common_pid", "int common_pid", 4, 4, True)
        self._type_field = (common_type.offset, _int_format(self.endian, common_type.size, False))
        self._pid_field = (common_pid.offset, _int_format(self.endian, common_pid.size, common_pid.signed))

    def _parse_options(self, cursor: _Cursor, sections: dict | None = None, buffers: list | None = None) -> int:
        """Options up to DONE; returns the offset of the next options section (v7)."""
        cpustat_index = len(self.cpu_stats)
        while True:
            option_id = cursor.number(2)
            if option_id == OPTION_DONE and self.version == "6":
                return 0
            data = cursor.take(cursor.number(4))
            if option_id == OPTION_DONE:
                return int.from_bytes(data[:8], cursor.order) if len(data) >= 8 else 0
            self.options.append((option_id, data))
            text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            if option_id == OPTION_CPUSTAT:
                stats = parse_cpustat(text)
                cpu = stats.pop("cpu", cpustat_index)
                self.cpu_stats[cpu if isinstance(cpu, int) else cpustat_index] = stats
                cpustat_index += 1
            elif option_id == OPTION_TRACECLOCK and text:
                # A v7-style option carrying the text; v6 keeps it after the CPU table.
                self.trace_clock_text = text
            elif option_id == OPTION_UNAME:
                self.uname = text
            elif option_id == OPTION_DATE:
                self.date = text
            elif option_id == OPTION_OFFSET:
                self.offset_text = text
            elif option_id == OPTION_VERSION:
                self.tracer_version = text
            elif option_id == OPTION_CPUCOUNT and len(data) >= 4:
                self._cpu_count = int.from_bytes(data[:4], cursor.order)
            elif option_id == OPTION_BUFFER and self.version == "6" and len(data) > 8:
                self.buffers.append(data[8:].split(b"\0", 1)[0].decode("utf-8", "replace"))
            elif option_id == OPTION_BUFFER and buffers is not None:
                buffers.append(self._buffer_option(data, cursor.order))
            elif sections is not None and OPTION_HEADER_INFO <= option_id <= OPTION_CMDLINES and len(data) >= 8:
                sections[option_id] = int.from_bytes(data[:8], cursor.order)

    def _buffer_option(self, data: bytes, order: ByteOrder) -> tuple:
        option = _Cursor(self.path, data, order, where=" (a BUFFER option)")
        offset, name, clock = option.number(8), option.cstring(), option.cstring()
        page_size, count = option.number(4), option.number(4)
        if count > len(data) // 20:
            raise TraceDatError("%s: a BUFFER option claims %d CPUs in %d bytes" % (self.path, count, len(data)))
        cpus = [(option.number(4), option.number(8), option.number(8)) for _index in range(count)]
        if any(cpu >= 1 << 16 for cpu, _offset, _size in cpus):
            raise TraceDatError("%s: a BUFFER option names CPU numbers beyond 65535" % self.path)
        return offset, name, clock, page_size, cpus

    # -- lazily read header parts ---------------------------------------------

    def _lazy_text(self, where: tuple[str, int, int] | None) -> str:
        """kallsyms or printk formats: a span of a version 6 file, or a version 7 section."""
        if where is None:
            return ""
        kind, offset, size_or_id = where
        if kind == "span":
            return self._map[offset : offset + size_or_id].decode("utf-8", "replace")
        return self._section(offset, size_or_id).text(4)

    @property
    def kallsyms(self) -> str:
        return self._lazy_text(self._kallsyms_at)

    @property
    def printk_formats(self) -> str:
        return self._lazy_text(self._printk_at)

    def event_name(self, event_id: int) -> str:
        event = self.formats.get(event_id)
        return event.full_name if event else "id:%d" % event_id

    def decoder(self, event_id: int) -> FieldDecoder | None:
        """The field decoder of an event id (None for an id without a format)."""
        if event_id not in self._decoders:
            event = self.formats.get(event_id)
            self._decoders[event_id] = FieldDecoder(event, self.endian) if event else None
        return self._decoders[event_id]

    # -- ring-buffer data -----------------------------------------------------

    def _block_pages(self, cpu: int, block: _Block, reverse: bool = False) -> Iterator[Page]:
        if block.compressed:
            data: Any = self._decompress(
                self._map[block.offset : block.offset + block.stored],
                block.size,
                "CPU %d's chunk at offset %d" % (cpu, block.offset),
            )
            start, chunk = 0, block.offset
        else:
            data, start, chunk = self._map, block.offset, None
        end = start + block.size
        # A trailing part shorter than a page header holds nothing.
        bases = range(start, end - self._data_offset, self.page_size)
        released = start
        for base in reversed(bases) if reverse else bases:
            yield self._page_header(cpu, data, base, end, chunk)
            if chunk is None and not reverse and base - released >= RELEASE_EVERY:
                self._release(released, base)
                released = base

    def _release(self, start: int, end: int) -> None:
        """Let the kernel drop the file's pages in [start, end) from this process (they
        were read; reading them again faults them back in), so that reading a file
        from start to end keeps no more of it resident than a stretch at a time."""
        advise = getattr(self._map, "madvise", None)
        if advise is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        first = start - start % mmap.PAGESIZE
        last = end - end % mmap.PAGESIZE
        if last > first:
            advise(mmap.MADV_DONTNEED, first, last - first)

    def _page_header(self, cpu: int, data, base: int, end_of_data: int, chunk: int | None) -> Page:
        timestamp = struct.unpack_from(self.endian + "Q", data, base)[0]
        commit = self._commit_format.unpack_from(data, base + self._commit_offset)[0]
        # The kernel adds the flags to the long as ints, so on 64-bit kernels (1 << 31)
        # arrives sign-extended: only the low 32 bits mean anything.
        commit &= 0xFFFFFFFF
        length = commit & ~RB_MISSED_FLAGS
        data_start = base + self._data_offset
        limit = min(base + self.page_size, end_of_data) - data_start
        if length > limit:
            raise TraceDatError(
                "%s: CPU %d page at offset %d%s claims %d bytes of events; the page "
                "holds %d" % (self.path, cpu, base, self._in_chunk(chunk), length, limit)
            )
        missed_count = None
        if commit & RB_MISSED_STORED and data_start + length + self.kernel_long_size <= base + self.page_size:
            missed_count = self._commit_format.unpack_from(data, data_start + length)[0]
        return Page(cpu, base, timestamp, length, bool(commit & RB_MISSED_EVENTS), missed_count, data, chunk)

    @staticmethod
    def _in_chunk(chunk: int | None) -> str:
        return "" if chunk is None else " of the compressed chunk at file offset %d" % chunk

    def pages(self, cpu: int) -> Iterator[Page]:
        released = None
        for block in self._blocks.get(cpu, ()):
            yield from self._block_pages(cpu, block)
            if block.compressed:
                # From where the last chunk's release stopped (a file page may hold the
                # ends of two chunks) to the end of this one.
                self._release(block.offset if released is None else released, block.offset + block.stored)
                released = block.offset + block.stored

    def _pages_backwards(self, cpu: int) -> Iterator[Page]:
        for block in reversed(self._blocks.get(cpu, ())):
            yield from self._block_pages(cpu, block, reverse=True)

    def _page_payloads(self, page: Page) -> Iterator[tuple[int, int, int]]:
        """(timestamp, payload offset, payload size) of each data event of one page."""
        data = page.data
        unpack_word = struct.Struct(self.endian + "I").unpack_from
        little = self.endian == "<"
        timestamp = page.timestamp
        position = page.offset + self._data_offset
        end = position + page.length
        while position + 4 <= end:
            header = unpack_word(data, position)[0]
            if little:
                type_len, delta = header & 0x1F, header >> 5
            else:
                type_len, delta = header >> TIME_DELTA_BITS, header & ((1 << TIME_DELTA_BITS) - 1)
            if type_len >= TYPE_PADDING:
                if type_len == TYPE_PADDING and delta == 0:
                    return
                if position + 8 > end:
                    raise self._damaged(page, position, "an event header runs past the data")
                extra = unpack_word(data, position + 4)[0]
                if type_len == TYPE_PADDING:
                    timestamp += delta
                    position += 4 + ((extra + 3) & ~3)
                elif type_len == TYPE_TIME_EXTEND:
                    timestamp += (extra << TIME_DELTA_BITS) | delta
                    position += 8
                else:
                    stamp = (extra << TIME_DELTA_BITS) | delta
                    if timestamp & TS_MSB:
                        stamp |= timestamp & TS_MSB
                        if stamp < timestamp:
                            stamp += 1 << TS_MSB_SHIFT
                    timestamp = stamp
                    position += 8
                continue
            timestamp += delta
            if type_len == 0:
                if position + 8 > end:
                    raise self._damaged(page, position, "an event header runs past the data")
                length = unpack_word(data, position + 4)[0]
                if length < 4:
                    raise self._damaged(page, position, "an event length of %d" % length)
                payload = position + 8
                payload_size = length - 4
                position += 4 + ((length + 3) & ~3)
            else:
                payload = position + 4
                payload_size = type_len * 4
                position = payload + payload_size
            if position > end:
                raise self._damaged(page, position, "an event runs past the data")
            yield timestamp, payload, payload_size

    def records(self, page: Page) -> Iterator[Record]:
        """The data events of one page, with where each one's payload is in page.data."""
        data = page.data
        type_offset, type_format = self._type_field
        pid_offset, pid_format = self._pid_field
        type_end = type_offset + type_format.size
        pid_end = pid_offset + pid_format.size
        unpack_type = type_format.unpack_from
        unpack_pid = pid_format.unpack_from
        for timestamp, payload, size in self._page_payloads(page):
            if size < type_end:
                continue
            event_id = unpack_type(data, payload + type_offset)[0]
            pid = unpack_pid(data, payload + pid_offset)[0] if size >= pid_end else -1
            yield Record(timestamp, event_id, pid, payload, size)

    def _page_events(self, page: Page) -> Iterator[tuple[int, int, int]]:
        """(timestamp, event id, pid) of each data event of one page."""
        for record in self.records(page):
            yield record[0], record[1], record[2]

    def _damaged(self, page: Page, position: int, what: str) -> TraceDatError:
        return TraceDatError(
            "%s: CPU %d page at offset %d%s is damaged: %s (at offset %d)"
            % (self.path, page.cpu, page.offset, self._in_chunk(page.chunk), what, position)
        )

    def cpu_events(self, cpu: int) -> Iterator[Event]:
        """The events of one CPU, in the order (and time order) the ring buffer kept them."""
        for page in self.pages(cpu):
            for timestamp, event_id, pid in self._page_events(page):
                yield Event(cpu, timestamp, event_id, pid)

    def events(self) -> Iterator[Event]:
        """The events of all CPUs merged by timestamp (one page per CPU held at a time)."""
        return heapq.merge(*(self.cpu_events(cpu) for cpu in self.cpu_ids), key=lambda event: event.timestamp)

    def time_range(self) -> tuple[int | None, int | None]:
        """First and last event timestamps, from the first and last non-empty pages only."""
        first = last = None
        for cpu in self.cpu_ids:
            for page in self.pages(cpu):
                stamps = [stamp for stamp, _event_id, _pid in self._page_events(page)]
                if stamps:
                    first = stamps[0] if first is None else min(first, stamps[0])
                    break
            for page in self._pages_backwards(cpu):
                stamps = [stamp for stamp, _event_id, _pid in self._page_events(page)]
                if stamps:
                    last = stamps[-1] if last is None else max(last, stamps[-1])
                    break
        return first, last

    def scan(self, origin: int | None = None, span: int | None = None, buckets: int = 0) -> dict:
        """One pass over every page: the summary, and optionally a histogram.

        With `buckets`, events are counted in that many equal buckets covering
        [origin, origin + span) in trace-clock units (by default the first and
        last events); events before the origin are left out and events after it
        counted in the last bucket, and both are reported.
        """
        if buckets and (origin is None or span is None):
            first, last = self.time_range()
            origin = first if origin is None else origin
            if span is None and first is not None and last is not None and origin is not None:
                span = max(last - origin + 1, 1)
        per_cpu = {}
        by_id: dict[int, int] = {}
        counts = [0] * buckets
        before = after = 0
        first = last = None
        pages = 0
        missed_pages = {}
        missed_stored = {}
        for cpu in self.cpu_ids:
            total = 0
            cpu_missed_pages = 0
            cpu_missed_stored = 0
            for page in self.pages(cpu):
                pages += 1
                if page.missed_events:
                    cpu_missed_pages += 1
                if page.missed_count:
                    cpu_missed_stored += page.missed_count
                stamp = None
                for stamp, event_id, _pid in self._page_events(page):
                    total += 1
                    by_id[event_id] = by_id.get(event_id, 0) + 1
                    if buckets and origin is not None and span:
                        index = (stamp - origin) * buckets // span
                        if index < 0:
                            before += 1
                        elif index >= buckets:
                            after += 1
                            counts[-1] += 1
                        else:
                            counts[index] += 1
                    if first is None or stamp < first:
                        first = stamp
                if stamp is not None and (last is None or stamp > last):
                    last = stamp
            per_cpu[str(cpu)] = total
            missed_pages[str(cpu)] = cpu_missed_pages
            missed_stored[str(cpu)] = cpu_missed_stored
        by_name: dict[str, int] = {}
        for event_id, count in by_id.items():
            name = self.event_name(event_id)
            by_name[name] = by_name.get(name, 0) + count
        result: dict[str, Any] = {
            "path": self.path,
            "version": self.version,
            "endian": "little" if self.endian == "<" else "big",
            "long_size": self.long_size,
            "kernel_long_size": self.kernel_long_size,
            "page_size": self.page_size,
            "cpus": self.cpus,
            "trace_clock": self.trace_clock,
            "clock_in_ns": self.trace_clock in NS_CLOCKS if self.trace_clock else None,
            "uname": self.uname,
            "compression": self.compression,
            "buffers": list(self.buffers),
            "events": sum(per_cpu.values()),
            "events_per_cpu": per_cpu,
            "events_by_name": dict(sorted(by_name.items(), key=lambda item: (-item[1], item[0]))),
            "first_timestamp": first,
            "last_timestamp": last,
            "cpu_stats": {str(cpu): stats for cpu, stats in sorted(self.cpu_stats.items())},
            "pages": pages,
            "pages_missed_events": missed_pages,
            "missed_events_stored": missed_stored,
        }
        if buckets:
            result["histogram"] = {
                "origin": origin,
                "span": span,
                "counts": counts,
                "before_origin": before,
                "after_span": after,
            }
        return result


def summary(path: str) -> dict:
    """What a trace.dat holds: event counts (total, per CPU, per event name), first
    and last timestamps, trace clock, uname, per-CPU stats as recorded, and the
    pages that carry the kernel's missed-events flag."""
    with TraceDat(path) as dat:
        return dat.scan()
