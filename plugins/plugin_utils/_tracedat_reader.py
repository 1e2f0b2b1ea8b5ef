# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read trace-cmd trace.dat files, version 6, on the controller.

Written from the file format as trace-cmd.dat.v6(5) documents it and from the ring
buffer layout the kernel describes in events/header_page and events/header_event;
independent of the writer in this collection and of trace-cmd's own code, so that
each can check the other.

The file, in order: magic 0x17 0x08 0x44 "tracing", version "6\\0", endianness
byte, long size byte, u32 page size; header_page and header_event texts; ftrace
event formats; event systems with their formats; kallsyms; printk formats; saved
cmdlines; u32 CPU count; optionally "options  \\0" and (u16 id, u32 size, data)
records up to id 0; then "flyrecord\\0" and per CPU a u64 offset and u64 size of
its ring-buffer pages. When the TRACECLOCK option is present a u64 size and the
text of the trace_clock file follow that table (the v6 placement; trace-cmd 3.1
also puts the text in the option, and either is read).

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
reads it). Pages are read one at a time from a read-only mmap; nothing holds
more than one page's events.

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
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

MAGIC = b"\x17\x08\x44tracing"
SUPPORTED_VERSION = "6"

OPTION_DONE = 0
OPTION_DATE = 1
OPTION_CPUSTAT = 2
OPTION_BUFFER = 3
OPTION_TRACECLOCK = 4
OPTION_UNAME = 5
OPTION_CPUCOUNT = 8
OPTION_VERSION = 9

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


class TraceDatError(TracefleetError):
    """The file is not a trace.dat this reader understands, or it is damaged."""


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


class Page(NamedTuple):
    cpu: int
    offset: int
    timestamp: int
    length: int
    missed_events: bool
    missed_count: int | None


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


def _int_format(endian: str, size: int, signed: bool) -> struct.Struct:
    codes = {1: "b", 2: "h", 4: "i", 8: "q"}
    if size not in codes:
        raise TraceDatError("a common field of %d bytes is not an integer size" % size)
    code = codes[size]
    return struct.Struct(endian + (code if signed else code.upper()))


class TraceDat:
    """A trace.dat file opened for reading: `with TraceDat(path) as dat: ...`.

    The headers are parsed on opening; the per-CPU data is read page by page
    when iterated (`pages`, `events`, `scan`).
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
        self._pos = 0
        self.options: list[tuple[int, bytes]] = []
        self.cpu_stats: dict[int, dict] = {}
        self.trace_clock_text: str | None = None
        self.uname: str | None = None
        self.date: str | None = None
        self.tracer_version: str | None = None
        self.buffers: list[str] = []
        self.cpu_data: list[tuple[int, int]] = []
        try:
            self._parse_headers()
        except struct.error as exc:
            self.close()
            raise TraceDatError("%s: truncated at offset %d (%s)" % (path, self._pos, exc)) from exc
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

    # -- sequential reading of the header part --------------------------------

    def _take(self, count: int) -> bytes:
        if count < 0 or self._pos + count > self._size:
            raise TraceDatError(
                "%s: truncated: %d bytes wanted at offset %d, the file has %d"
                % (self.path, count, self._pos, self._size)
            )
        data = self._map[self._pos : self._pos + count]
        self._pos += count
        return data

    def _number(self, size: int) -> int:
        return int.from_bytes(self._take(size), "little" if self.endian == "<" else "big")

    def _cstring(self) -> str:
        end = self._map.find(b"\0", self._pos)
        if end < 0:
            raise TraceDatError("%s: unterminated string at offset %d" % (self.path, self._pos))
        text = self._map[self._pos : end].decode("utf-8", "replace")
        self._pos = end + 1
        return text

    def _text(self, size_bytes: int) -> str:
        return self._take(self._number(size_bytes)).decode("utf-8", "replace")

    def _parse_headers(self) -> None:
        if self._take(len(MAGIC)) != MAGIC:
            raise TraceDatError("%s: not a trace.dat file (no 0x17 0x08 0x44 'tracing' magic)" % self.path)
        self.version = self._cstring()
        if self.version != SUPPORTED_VERSION:
            raise TraceDatError(
                "%s: trace.dat version %s; this reader reads version %s (trace-cmd convert "
                "--file-version 6 --compression none rewrites a file as version 6)"
                % (self.path, self.version, SUPPORTED_VERSION)
            )
        endian_flag = self._take(1)[0]
        if endian_flag not in (0, 1):
            raise TraceDatError("%s: endianness byte %d is neither 0 nor 1" % (self.path, endian_flag))
        self.endian = "<" if endian_flag == 0 else ">"
        self.long_size = self._take(1)[0]
        self.page_size = self._number(4)
        if self.page_size < 64 or self.page_size & (self.page_size - 1):
            raise TraceDatError("%s: page size %d is not a power of two" % (self.path, self.page_size))

        self.header_page = self._section_text(b"header_page\0")
        self.header_event = self._section_text(b"header_event\0")
        self._layout_page()

        self.ftrace_formats = [parse_format("ftrace", self._text(8)) for _index in range(self._number(4))]
        self.event_formats: list[EventFormat] = []
        for _system_index in range(self._number(4)):
            system = self._cstring()
            for _event_index in range(self._number(4)):
                self.event_formats.append(parse_format(system, self._text(8)))
        self.formats = {event.id: event for event in self.ftrace_formats + self.event_formats if event.id is not None}
        self._layout_common_fields()

        self._kallsyms_span = self._skip_span(4)
        self._printk_span = self._skip_span(4)
        self.cmdlines = parse_cmdlines(self._text(8))
        self.cpus = self._number(4)

        kind = self._take(10)
        if kind == b"options  \0":
            self._parse_options()
            kind = self._take(10)
        if kind == b"latency  \0":
            raise TraceDatError("%s: a latency-format trace.dat (text only, no ring-buffer data)" % self.path)
        if kind != b"flyrecord\0":
            raise TraceDatError("%s: expected 'flyrecord' at offset %d, found %r" % (self.path, self._pos - 10, kind))
        for cpu in range(self.cpus):
            offset, size = self._number(8), self._number(8)
            if offset + size > self._size:
                raise TraceDatError(
                    "%s: CPU %d data (offset %d, %d bytes) runs past the end of the "
                    "file (%d bytes)" % (self.path, cpu, offset, size, self._size)
                )
            self.cpu_data.append((offset, size))
        if any(option_id == OPTION_TRACECLOCK for option_id, _data in self.options):
            self._read_trace_clock_after_table()
        self.trace_clock = parse_trace_clock(self.trace_clock_text) if self.trace_clock_text else None

    def _read_trace_clock_after_table(self) -> None:
        # Writers that put the text in the option itself (as version 7 does) may leave
        # only the padding before the first CPU's pages here: take what fits and is not
        # empty, and otherwise keep the option's text.
        data_start = min([offset for offset, size in self.cpu_data if size] or [self._size])
        if self._pos + 8 > data_start:
            return
        size = self._number(8)
        if 0 < size <= data_start - self._pos:
            self.trace_clock_text = self._take(size).decode("utf-8", "replace")

    def _section_text(self, label: bytes) -> str:
        found = self._take(len(label))
        if found != label:
            raise TraceDatError(
                "%s: expected %r at offset %d, found %r" % (self.path, label.decode(), self._pos - len(label), found)
            )
        return self._text(8)

    def _skip_span(self, size_bytes: int) -> tuple[int, int]:
        size = self._number(size_bytes)
        start = self._pos
        self._take(size)
        return start, size

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

    def _parse_options(self) -> None:
        cpustat_index = 0
        while True:
            option_id = self._number(2)
            if option_id == OPTION_DONE:
                return
            data = self._take(self._number(4))
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
            elif option_id == OPTION_VERSION:
                self.tracer_version = text
            elif option_id == OPTION_BUFFER and len(data) > 8:
                self.buffers.append(data[8:].split(b"\0", 1)[0].decode("utf-8", "replace"))

    # -- lazily read header parts ---------------------------------------------

    @property
    def kallsyms(self) -> str:
        start, size = self._kallsyms_span
        return self._map[start : start + size].decode("utf-8", "replace")

    @property
    def printk_formats(self) -> str:
        start, size = self._printk_span
        return self._map[start : start + size].decode("utf-8", "replace")

    def event_name(self, event_id: int) -> str:
        event = self.formats.get(event_id)
        return event.full_name if event else "id:%d" % event_id

    # -- ring-buffer data -----------------------------------------------------

    def _page_offsets(self, cpu: int) -> range:
        offset, size = self.cpu_data[cpu]
        # A trailing part shorter than a page header holds nothing.
        return range(offset, offset + size - self._data_offset, self.page_size)

    def _page_header(self, cpu: int, base: int) -> Page:
        end_of_data = self.cpu_data[cpu][0] + self.cpu_data[cpu][1]
        timestamp = struct.unpack_from(self.endian + "Q", self._map, base)[0]
        commit = self._commit_format.unpack_from(self._map, base + self._commit_offset)[0]
        # The kernel adds the flags to the long as ints, so on 64-bit kernels (1 << 31)
        # arrives sign-extended: only the low 32 bits mean anything.
        commit &= 0xFFFFFFFF
        length = commit & ~RB_MISSED_FLAGS
        data_start = base + self._data_offset
        limit = min(base + self.page_size, end_of_data) - data_start
        if length > limit:
            raise TraceDatError(
                "%s: CPU %d page at offset %d claims %d bytes of events; the page "
                "holds %d" % (self.path, cpu, base, length, limit)
            )
        missed_count = None
        if commit & RB_MISSED_STORED and data_start + length + self.kernel_long_size <= base + self.page_size:
            missed_count = self._commit_format.unpack_from(self._map, data_start + length)[0]
        return Page(cpu, base, timestamp, length, bool(commit & RB_MISSED_EVENTS), missed_count)

    def pages(self, cpu: int) -> Iterator[Page]:
        for base in self._page_offsets(cpu):
            yield self._page_header(cpu, base)

    def _page_events(self, page: Page) -> Iterator[tuple[int, int, int]]:
        """(timestamp, event id, pid) of each data event of one page."""
        data = self._map
        word = struct.Struct(self.endian + "I")
        unpack_word = word.unpack_from
        type_offset, type_format = self._type_field
        pid_offset, pid_format = self._pid_field
        unpack_type = type_format.unpack_from
        unpack_pid = pid_format.unpack_from
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
            if payload_size < type_offset + type_format.size:
                continue
            event_id = unpack_type(data, payload + type_offset)[0]
            pid = unpack_pid(data, payload + pid_offset)[0] if payload_size >= pid_offset + pid_format.size else -1
            yield timestamp, event_id, pid

    def _damaged(self, page: Page, position: int, what: str) -> TraceDatError:
        return TraceDatError(
            "%s: CPU %d page at offset %d is damaged: %s (at offset %d)"
            % (self.path, page.cpu, page.offset, what, position)
        )

    def cpu_events(self, cpu: int) -> Iterator[Event]:
        """The events of one CPU, in the order (and time order) the ring buffer kept them."""
        for page in self.pages(cpu):
            for timestamp, event_id, pid in self._page_events(page):
                yield Event(cpu, timestamp, event_id, pid)

    def events(self) -> Iterator[Event]:
        """The events of all CPUs merged by timestamp (one page per CPU held at a time)."""
        return heapq.merge(*(self.cpu_events(cpu) for cpu in range(self.cpus)), key=lambda event: event.timestamp)

    def time_range(self) -> tuple[int | None, int | None]:
        """First and last event timestamps, from the first and last non-empty pages only."""
        first = last = None
        for cpu in range(self.cpus):
            for page in self.pages(cpu):
                stamps = [stamp for stamp, _event_id, _pid in self._page_events(page)]
                if stamps:
                    first = stamps[0] if first is None else min(first, stamps[0])
                    break
            for base in reversed(self._page_offsets(cpu)):
                stamps = [stamp for stamp, _event_id, _pid in self._page_events(self._page_header(cpu, base))]
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
        for cpu in range(self.cpus):
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
