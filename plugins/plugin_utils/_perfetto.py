# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One host capture as a Perfetto trace (.pftrace), on the controller.

Perfetto cannot open trace.dat, and reads ftrace text only for a few events; its own
protobuf format keeps everything. The messages come from the official definitions,
`perfetto_trace_pb2` of the PyPI package `perfetto` (which needs `protobuf`): both are
controller requirements, imported when an export runs (`protos()`), with an error
naming them when they are missing.

A .pftrace is a sequence of TracePacket messages, each framed as field 1 of a Trace
message (tag 0x0a, length); written here, in order:

1. a ClockSnapshot: BOOTTIME = the anchor's trace-clock time, REALTIME = its
   wall-clock time. Trace processor reads ftrace timestamps whose bundle names no
   clock as BOOTTIME, so the host's trace clock (local, global, mono, boot, ...: any
   clock counting nanoseconds) stands in for BOOTTIME, and this snapshot puts it on
   the host's wall clock, which relates the hosts of a run (REALTIME rendezvous);
2. a SystemInfo: the kernel's utsname (trace processor reads sched_switch's
   prev_state by kernel version), the machine name, the CPU count, the page size;
3. one FtraceEventBundle per ring-buffer page: its CPU, `lost_events` when the kernel
   flagged the page as following lost events, and the page's events. sched_switch,
   sched_waking, sched_wakeup, sched_wakeup_new, sched_process_exec/exit/fork/free,
   task_newtask and task_rename become Perfetto's typed events (CPU and thread
   tracks come from them), with the fields their messages have; every other event
   (probes, syscalls, markers, ...) a GenericFtraceEvent carrying all its own fields,
   signed integers as int_value, unsigned ones as uint_value, text as str_value
   (arrays and raw bytes as text too);
4. an FtraceStats (end of trace) with each CPU's ring-buffer statistics as the
   trace.dat recorded them (overrun, dropped events, ...);
5. the host's Ansible tasks: a track named after the playbook's view of the host,
   one slice per task (name, start, end), timestamped in REALTIME, so they sit
   beside what the kernel did.

Only one page's events are held at a time (the reader hands out one page, or one
decompressed chunk, at a time); the output is written packet by packet.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO, NamedTuple

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._clock_anchor import Anchor, seconds_to_ns
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._tracedat_reader import (
    BYTES,
    INT,
    INTS,
    TEXT,
    UINT,
    FieldDecoder,
    TraceDat,
)

# The versions the collection is tested with (requirements.txt).
REQUIREMENTS = "perfetto==0.59.1 and protobuf==7.36.2"

# Kernel events written as Perfetto's typed events: (system, name) -> the FtraceEvent
# field (the same name for each of these).
TYPED = frozenset(
    [
        ("sched", "sched_switch"),
        ("sched", "sched_waking"),
        ("sched", "sched_wakeup"),
        ("sched", "sched_wakeup_new"),
        ("sched", "sched_process_exec"),
        ("sched", "sched_process_exit"),
        ("sched", "sched_process_fork"),
        ("sched", "sched_process_free"),
        ("task", "task_newtask"),
        ("task", "task_rename"),
    ]
)

BUILTIN_CLOCK_REALTIME = 1
BUILTIN_CLOCK_BOOTTIME = 6
SEQ_INCREMENTAL_STATE_CLEARED = 1
SEQ_NEEDS_INCREMENTAL_STATE = 2
TYPE_SLICE_BEGIN = 1
TYPE_SLICE_END = 2
FTRACE_STATS_END_OF_TRACE = 2
# The packet sequence of the Ansible tasks' track (any id other writers of the file
# do not use; this file has no other sequence).
TASKS_SEQUENCE = 0x7ACEF1E7
# per_cpu/cpuN/stats (as the reader names its lines) -> FtraceCpuStats.
COUNTERS = (
    ("entries", "entries"),
    ("overrun", "overrun"),
    ("commit_overrun", "commit_overrun"),
    ("bytes", "bytes_read"),
    ("dropped_events", "dropped_events"),
    ("read_events", "read_events"),
)

_protos: Any = None


class PerfettoError(TracefleetError):
    """The export cannot be written (a missing package, a trace it cannot encode)."""


def protos():
    """The module of Perfetto's trace messages; a clear error when it is missing."""
    global _protos  # pylint: disable=global-statement
    if _protos is None:
        try:
            from perfetto.protos.perfetto.trace import (  # pylint: disable=import-outside-toplevel
                perfetto_trace_pb2,
            )
        except ImportError as exc:
            raise PerfettoError(
                "the Perfetto export needs the Python packages perfetto and protobuf on the controller "
                "(%s, in the collection's requirements.txt; `pip install -r requirements.txt` into the "
                "Python that runs ansible); importing them failed: %s" % (REQUIREMENTS, exc)
            ) from None
        _protos = perfetto_trace_pb2
    return _protos


class Task(NamedTuple):
    """One Ansible task on one host: its name and wall-clock start and end (epoch s)."""

    name: str
    start: float
    end: float


class HostStats(NamedTuple):
    events: int
    events_by_name: dict
    lost_pages: dict
    bundles: int
    tasks: int


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _write_packet(out: BinaryIO, packet) -> None:
    data = packet.SerializeToString()
    out.write(b"\x0a" + _varint(len(data)) + data)


def track_uuid(host: str) -> int:
    """A stable 64-bit id for the host's Ansible track."""
    digest = hashlib.sha256(b"tracefleet.ansible-tasks\0" + host.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1) or 1


def _converter(field_type: int):
    """A kernel value made to fit a proto scalar field of `field_type`."""
    descriptor = protos().FtraceEvent.DESCRIPTOR.fields[0]  # any field: for the TYPE_* constants
    if field_type == descriptor.TYPE_STRING:
        return lambda value: value if isinstance(value, str) else str(value)
    bits = {
        descriptor.TYPE_INT32: (32, True),
        descriptor.TYPE_SINT32: (32, True),
        descriptor.TYPE_INT64: (64, True),
        descriptor.TYPE_SINT64: (64, True),
        descriptor.TYPE_UINT32: (32, False),
        descriptor.TYPE_UINT64: (64, False),
        descriptor.TYPE_FIXED64: (64, False),
        descriptor.TYPE_FIXED32: (32, False),
    }.get(field_type)
    if bits is None:
        return None
    width, signed = bits
    mask = (1 << width) - 1
    top = 1 << (width - 1)

    def fit(value):
        if not isinstance(value, int):
            return None
        value &= mask
        return value - (1 << width) if signed and value & top else value

    return fit


class _Plan(NamedTuple):
    typed: str | None  # the FtraceEvent field of a typed event, else None
    name: str  # the generic event's name
    copies: tuple  # typed: (kernel field, proto field, converter); generic: (name, kind)
    decoder: FieldDecoder | None
    flags_at: int | None  # offset of common_flags in the payload


def _plans(dat: TraceDat) -> dict[int, _Plan]:
    messages = protos()
    plans = {}
    for event_id, event in dat.formats.items():
        decoder = dat.decoder(event_id)
        flags = event.fields.get("common_flags")
        flags_at = flags.offset if flags is not None and flags.size == 1 else None
        typed = event.name if (event.system, event.name) in TYPED else None
        if typed is not None and typed not in messages.FtraceEvent.DESCRIPTOR.fields_by_name:
            typed = None
        if typed is not None:
            message = messages.FtraceEvent.DESCRIPTOR.fields_by_name[typed].message_type
            copies = []
            for name in decoder.kinds if decoder else {}:
                proto_field = message.fields_by_name.get(name)
                convert = _converter(proto_field.type) if proto_field is not None else None
                if convert is not None:
                    copies.append((name, name, convert))
            plans[event_id] = _Plan(typed, event.name, tuple(copies), decoder, flags_at)
        else:
            kinds = tuple(decoder.kinds.items()) if decoder else ()
            plans[event_id] = _Plan(None, event.name, kinds, decoder, flags_at)
    return plans


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex() if value else ""
    if isinstance(value, list):
        return "[%s]" % ", ".join(str(item) for item in value)
    return str(value)


def _fill_generic(event, plan: _Plan, values: dict) -> None:
    generic = event.generic
    generic.event_name = plan.name
    for name, kind in plan.copies:
        if name not in values:
            continue
        value = values[name]
        item = generic.field.add()
        item.name = name
        if kind == INT:
            item.int_value = value
        elif kind == UINT:
            item.uint_value = value
        elif kind in (TEXT, INTS, BYTES):
            item.str_value = _text(value)


def _uname(text: str | None) -> tuple[str, str, str, str] | None:
    """`Linux host 6.1.0-56-cloud-amd64 #1 SMP ... x86_64` (sysname, nodename, release,
    version, machine: the collection's and trace-cmd's UNAME option) -> (sysname,
    release, version, machine)."""
    words = (text or "").split()
    if len(words) < 4:
        return None
    return words[0], words[2], " ".join(words[3:-1]), words[-1]


def write_host(
    out: BinaryIO,
    dat: TraceDat,
    machine: str,
    anchor: Anchor,
    tasks: list[Task] | None = None,
) -> HostStats:
    """Write one capture (an open trace.dat on a nanosecond clock) as a .pftrace."""
    messages = protos()
    packet = messages.TracePacket()
    snapshot = packet.clock_snapshot
    snapshot.clocks.add(clock_id=BUILTIN_CLOCK_BOOTTIME, timestamp=anchor.trace_ns & ((1 << 64) - 1))
    snapshot.clocks.add(clock_id=BUILTIN_CLOCK_REALTIME, timestamp=anchor.wall_ns)
    _write_packet(out, packet)

    packet = messages.TracePacket()
    info = packet.system_info
    info.machine_name = machine
    info.num_cpus = dat.cpus
    info.page_size = dat.page_size
    uname = _uname(dat.uname)
    if uname is not None:
        info.utsname.sysname, info.utsname.release, info.utsname.version, info.utsname.machine = uname
    _write_packet(out, packet)

    plans = _plans(dat)
    by_name: dict[str, int] = {}
    lost_pages: dict[str, int] = {}
    events = bundles = 0
    for cpu in dat.cpu_ids:
        lost = 0
        for page in dat.pages(cpu):
            packet = messages.TracePacket()
            bundle = packet.ftrace_events
            bundle.cpu = cpu
            if page.missed_events:
                bundle.lost_events = True
                lost += 1
            add = bundle.event.add
            data = page.data
            count = 0
            for record in dat.records(page):
                plan = plans.get(record.event_id)
                event = add()
                event.timestamp = record.timestamp
                event.pid = record.pid & 0xFFFFFFFF
                if plan is None:
                    # An id without a format: kept, by its number.
                    name = "id:%d" % record.event_id
                    event.generic.event_name = name
                    by_name[name] = by_name.get(name, 0) + 1
                    count += 1
                    continue
                if plan.flags_at is not None and record.size > plan.flags_at:
                    event.common_flags = data[record.offset + plan.flags_at]
                values = plan.decoder.decode(data, record.offset, record.size) if plan.decoder else {}
                if plan.typed is not None:
                    message = getattr(event, plan.typed)
                    message.SetInParent()
                    for kernel_name, proto_name, convert in plan.copies:
                        value = values.get(kernel_name)
                        if value is not None:
                            value = convert(value)
                            if value is not None:
                                setattr(message, proto_name, value)
                    name = plan.typed
                else:
                    _fill_generic(event, plan, values)
                    name = plan.name
                by_name[name] = by_name.get(name, 0) + 1
                count += 1
            if count or page.missed_events:
                _write_packet(out, packet)
                bundles += 1
            events += count
        lost_pages[str(cpu)] = lost

    if dat.cpu_stats:
        packet = messages.TracePacket()
        stats = packet.ftrace_stats
        stats.phase = FTRACE_STATS_END_OF_TRACE
        for cpu, values in sorted(dat.cpu_stats.items()):
            entry = stats.cpu_stats.add(cpu=cpu)
            for key, proto_key in COUNTERS:
                counter = values.get(key)
                if isinstance(counter, int) and not isinstance(counter, bool) and 0 <= counter < 1 << 64:
                    setattr(entry, proto_key, counter)
            for key in ("oldest_event_ts", "now_ts"):
                seconds = values.get(key)
                if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                    setattr(entry, key, float(seconds))
        _write_packet(out, packet)

    written = _write_tasks(out, machine, tasks or [])
    return HostStats(events, by_name, lost_pages, bundles, written)


def _write_tasks(out: BinaryIO, machine: str, tasks: list[Task]) -> int:
    if not tasks:
        return 0
    messages = protos()
    uuid = track_uuid(machine)
    packet = messages.TracePacket()
    packet.trusted_packet_sequence_id = TASKS_SEQUENCE
    packet.sequence_flags = SEQ_INCREMENTAL_STATE_CLEARED
    packet.track_descriptor.uuid = uuid
    packet.track_descriptor.name = "Ansible tasks"
    _write_packet(out, packet)
    written = 0
    previous_end = 0
    for task in sorted(tasks, key=lambda item: (item.start, item.end)):
        start = seconds_to_ns(task.start)
        end = seconds_to_ns(task.end)
        # Slices on one track must nest: a task that overlaps the one before without
        # ending inside it starts where that one ended.
        start = max(start, previous_end) if end > previous_end else start
        end = max(end, start)
        for stamp, kind in ((start, TYPE_SLICE_BEGIN), (end, TYPE_SLICE_END)):
            packet = messages.TracePacket()
            packet.timestamp = stamp
            packet.timestamp_clock_id = BUILTIN_CLOCK_REALTIME
            packet.trusted_packet_sequence_id = TASKS_SEQUENCE
            packet.sequence_flags = SEQ_NEEDS_INCREMENTAL_STATE
            packet.track_event.type = kind
            packet.track_event.track_uuid = uuid
            if kind == TYPE_SLICE_BEGIN:
                packet.track_event.name = task.name
            _write_packet(out, packet)
        previous_end = max(previous_end, end)
        written += 1
    return written


MAX_TASKS = 100_000
MAX_TASK_NAME = 1024


def tasks_option(value, option: str = "tasks") -> dict[str, list[Task]]:
    """The `tasks` option - {host: [{name, start, end}, ...]}, start and end in epoch
    seconds - checked; a bad value raises PerfettoError naming it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PerfettoError("%s=%r: a dict of host name to a list of tasks is expected" % (option, value))
    checked: dict[str, list[Task]] = {}
    for host, items in value.items():
        where = "%s[%r]" % (option, host)
        if not isinstance(host, str) or not isinstance(items, list):
            raise PerfettoError("%s: a host name with a list of tasks is expected, found %r" % (where, items))
        if len(items) > MAX_TASKS:
            raise PerfettoError("%s: %d tasks; at most %d" % (where, len(items), MAX_TASKS))
        tasks = []
        for index, item in enumerate(items):
            here = "%s[%d]" % (where, index)
            if not isinstance(item, dict) or not {"name", "start", "end"} <= set(item):
                raise PerfettoError("%s=%r: a dict with name, start and end is expected" % (here, item))
            name = item["name"]
            if not isinstance(name, str) or not name or len(name) > MAX_TASK_NAME:
                raise PerfettoError("%s.name=%r: a task name of 1 to %d characters" % (here, name, MAX_TASK_NAME))
            stamps = []
            for key in ("start", "end"):
                stamp = item[key]
                if isinstance(stamp, str):
                    try:
                        stamp = float(stamp)
                    except ValueError:
                        pass
                if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not 0 < stamp < 1e11:
                    raise PerfettoError(
                        "%s.%s=%r: seconds since the epoch are expected (such as %.3f)" % (here, key, item[key], 1.8e9)
                    )
                stamps.append(float(stamp))
            if stamps[1] < stamps[0]:
                raise PerfettoError("%s: ends (%r) before it starts (%r)" % (here, item["end"], item["start"]))
            tasks.append(Task(name.encode("utf-8", "backslashreplace").decode("utf-8"), stamps[0], stamps[1]))
        checked[host] = tasks
    return checked
