# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import random

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._tracedat_reader import (
    Event,
    TraceDat,
    TraceDatError,
    parse_cpustat,
    parse_fields,
    parse_trace_clock,
    summary,
)

WAKEUP = 374
PRINT = 5
LAYOUTS = [("<", 8), (">", 8), ("<", 4)]
LAYOUT_IDS = ["le64", "be64", "le32"]


def every_record_kind(builder):
    """Two CPUs whose pages use each kind of ring-buffer record; and the events
    the reader must produce from them, as (cpu, timestamp, event id, pid)."""
    b = builder
    b.add_page(
        0,
        b.page(
            1_000_000,
            [
                b.data(0, b.wakeup(1)),  # type_len 9 at the page's timestamp
                b.data(250, b.wakeup(42)),
                b.padding(24, delta=7),  # a discarded event: skipped, its delta kept
                b.data(100, b.print_(4242, b"x" * 150)),  # longer than 112 bytes: type_len 0
                b.data(5, b.wakeup(1), long_form=True),  # type_len 0 although it would fit
                b.extend((3 << 27) + 5),  # 0.4 s later
                b.data(20, b.wakeup(42)),
            ],
            tail_padding=True,
        ),
    )
    b.add_page(
        0,
        b.page(
            2_000_000_000,
            [
                b.data(1, b.wakeup(1)),
                b.absolute(3_000_000_000),  # replaces the running timestamp
                b.data(9, b.print_(42, b"short")),
            ],
        ),
    )
    b.add_page(
        1,
        b.page(
            1_500_000,
            [
                b.data(0, b.wakeup(0, cpu=1)),
                b.data((1 << 27) - 1, b.wakeup(42, cpu=1)),  # the largest delta without an extend
            ],
        ),
    )
    return [
        (0, 1_000_000, WAKEUP, 1),
        (0, 1_000_250, WAKEUP, 42),
        (0, 1_000_357, PRINT, 4242),
        (0, 1_000_362, WAKEUP, 1),
        (0, 1_000_362 + (3 << 27) + 5 + 20, WAKEUP, 42),
        (0, 2_000_000_001, WAKEUP, 1),
        (0, 3_000_000_009, PRINT, 42),
        (1, 1_500_000, WAKEUP, 0),
        (1, 1_500_000 + (1 << 27) - 1, WAKEUP, 42),
    ]


@pytest.mark.parametrize("endian,long_size", LAYOUTS, ids=LAYOUT_IDS)
def test_every_record_kind_decodes(tmp_path, tracedat, endian, long_size):
    builder = tracedat(endian=endian, long_size=long_size)
    expected = every_record_kind(builder)
    path = builder.write(tmp_path / "trace.dat")
    with TraceDat(path) as dat:
        events = [tuple(event) for cpu in range(dat.cpus) for event in dat.cpu_events(cpu)]
        merged = list(dat.events())
    assert events == expected
    assert [event.timestamp for event in merged] == sorted(event[1] for event in expected)
    assert all(isinstance(event, Event) for event in merged)


@pytest.mark.parametrize("endian,long_size", LAYOUTS, ids=LAYOUT_IDS)
def test_trace_cmd_report_agrees(tmp_path, tracedat, report_events, endian, long_size):
    builder = tracedat(endian=endian, long_size=long_size)
    every_record_kind(builder)
    path = builder.write(tmp_path / "trace.dat")
    theirs = report_events(path)
    if theirs is None:
        pytest.skip("trace-cmd is not installed: no cross-check")
    names = {WAKEUP: "sched_wakeup", PRINT: "print"}
    with TraceDat(path) as dat:
        ours = [(event.cpu, event.timestamp, event.pid, names[event.event_id]) for event in dat.events()]
    assert len(ours) == len(theirs) == 9
    assert sorted(ours) == sorted(theirs)


def test_headers(tmp_path, tracedat):
    builder = tracedat(cpus=3, page_size=8192)
    path = builder.write(tmp_path / "trace.dat")
    with TraceDat(path) as dat:
        assert (dat.version, dat.endian, dat.long_size, dat.kernel_long_size) == ("6", "<", 8, 8)
        assert dat.page_size == 8192 and dat.cpus == 3
        assert "local_t commit" in dat.header_page and "type_len" in dat.header_event
        assert [event.full_name for event in dat.ftrace_formats] == ["ftrace:print"]
        assert sorted(event.full_name for event in dat.event_formats) == ["sched:sched_wakeup", "sched:sched_waking"]
        wakeup = dat.formats[WAKEUP]
        assert wakeup.fields["comm"].offset == 8 and wakeup.fields["comm"].size == 16
        assert wakeup.fields["pid"].signed and not wakeup.fields["common_type"].signed
        assert dat.formats[PRINT].fields["buf"].size == 0
        assert dat.kallsyms == "ffffffff81000000 T _stext\n"
        assert dat.printk_formats == ""
        assert dat.cmdlines == {1: "init", 42: "worker", 4242: "tracefleet"}
        assert dat.trace_clock == "local"
        assert dat.uname == "Linux lab 6.1.0-56-cloud-amd64 x86_64"
        assert dat.cpu_stats[2] == {
            "entries": 0,
            "overrun": 6,
            "commit_overrun": 0,
            "bytes": 0,
            "oldest_event_ts": 100.000001,
            "now_ts": 105.0,
            "dropped_events": 2,
            "read_events": 12,
        }
        assert [size for _offset, size in dat.cpu_data] == [0, 0, 0]
        assert all(offset % 8192 == 0 for offset, _size in dat.cpu_data)
        assert list(dat.events()) == []


@pytest.mark.parametrize("placement", ["after-table", "both", "option"])
@pytest.mark.parametrize("with_data", [False, True], ids=["empty", "pages"])
def test_trace_clock_any_placement(tmp_path, tracedat, placement, with_data):
    builder = tracedat(clock="x86-tsc", clock_placement=placement)
    if with_data:
        builder.add_page(0, builder.page(1000, [builder.data(0, builder.wakeup(1))]))
    result = summary(builder.write(tmp_path / "trace.dat"))
    assert result["trace_clock"] == "x86-tsc"
    assert result["clock_in_ns"] is False
    assert result["events"] == (1 if with_data else 0)


def test_summary(tmp_path, tracedat):
    builder = tracedat()
    every_record_kind(builder)
    builder.add_page(1, builder.page(5_000_000_000, [builder.data(0, builder.wakeup(1))], missed=True))
    builder.add_page(1, builder.page(6_000_000_000, [builder.data(0, builder.wakeup(1))], missed_count=17))
    path = builder.write(tmp_path / "trace.dat")
    result = summary(path)
    assert result["events"] == 11
    assert result["events_per_cpu"] == {"0": 7, "1": 4}
    assert result["events_by_name"] == {"sched:sched_wakeup": 9, "ftrace:print": 2}
    assert list(result["events_by_name"]) == ["sched:sched_wakeup", "ftrace:print"]
    assert result["first_timestamp"] == 1_000_000
    assert result["last_timestamp"] == 6_000_000_000
    assert result["pages"] == 5
    assert result["pages_missed_events"] == {"0": 0, "1": 2}
    assert result["missed_events_stored"] == {"0": 0, "1": 17}
    assert result["cpu_stats"]["1"]["dropped_events"] == 1
    assert result["trace_clock"] == "local" and result["clock_in_ns"] is True
    assert "histogram" not in result


def test_missed_events_as_trace_cmd_reports_them(tmp_path, tracedat):
    builder = tracedat(cpus=1)
    builder.add_page(0, builder.page(1000, [builder.data(0, builder.wakeup(1))]))
    builder.add_page(0, builder.page(2000, [builder.data(0, builder.wakeup(1))], missed=True))
    builder.add_page(0, builder.page(3000, [builder.data(0, builder.wakeup(1))], missed_count=5))
    path = builder.write(tmp_path / "trace.dat")
    with TraceDat(path) as dat:
        pages = list(dat.pages(0))
    assert [(page.missed_events, page.missed_count) for page in pages] == [(False, None), (True, None), (True, 5)]
    assert all(page.length == 4 + 36 for page in pages)


def test_unknown_event_ids_are_counted_by_id(tmp_path, tracedat):
    builder = tracedat(cpus=1)
    stray = b"\x39\x05" + bytes(6)
    builder.add_page(0, builder.page(1000, [builder.data(0, stray)]))
    result = summary(builder.write(tmp_path / "trace.dat"))
    assert result["events_by_name"] == {"id:1337": 1}


def test_absolute_timestamp_keeps_the_running_top_bits(tmp_path, tracedat):
    # Absolute timestamps carry 59 bits; the top bits come from the running
    # timestamp, one more when the low bits wrapped.
    builder = tracedat(cpus=1)
    start = (1 << 59) + 100
    builder.add_page(
        0,
        builder.page(
            start,
            [
                builder.absolute(50),
                builder.data(0, builder.wakeup(1)),
                builder.absolute(200),
                builder.data(0, builder.wakeup(1)),
            ],
        ),
    )
    with TraceDat(builder.write(tmp_path / "trace.dat")) as dat:
        stamps = [event.timestamp for event in dat.cpu_events(0)]
    assert stamps == [(2 << 59) + 50, (2 << 59) + 200]


def test_histogram(tmp_path, tracedat):
    builder = tracedat(cpus=2)
    builder.add_page(
        0,
        builder.page(
            1000,
            [
                builder.data(0, builder.wakeup(1)),
                builder.data(100, builder.wakeup(1)),
                builder.data(500, builder.wakeup(1)),
            ],
        ),
    )
    builder.add_page(1, builder.page(1950, [builder.data(0, builder.wakeup(1)), builder.data(1000, builder.wakeup(1))]))
    path = builder.write(tmp_path / "trace.dat")
    with TraceDat(path) as dat:
        assert dat.time_range() == (1000, 2950)
        # Default range: first to last event.
        assert dat.scan(buckets=4)["histogram"] == {
            "origin": 1000,
            "span": 1951,
            "counts": [2, 2, 0, 1],
            "before_origin": 0,
            "after_span": 0,
        }
        explicit = dat.scan(origin=1050, span=1000, buckets=2)["histogram"]
    assert explicit == {"origin": 1050, "span": 1000, "counts": [1, 3], "before_origin": 1, "after_span": 1}


@pytest.mark.parametrize(
    "declaration,name",
    [
        ("char prev_comm[16]", "prev_comm"),
        ("__data_loc char[] name", "name"),
        ("unsigned long ip", "ip"),
        ("char buf[]", "buf"),
        ("u64 timestamp", "timestamp"),
    ],
)
def test_field_names(declaration, name):
    fields = parse_fields("\tfield:%s;\toffset:8;\tsize:4;\tsigned:1;\n" % declaration)
    assert list(fields) == [name]
    assert fields[name].declaration == declaration


@pytest.mark.parametrize(
    "text,clock",
    [
        ("[local] global counter uptime perf mono mono_raw boot tai x86-tsc\n", "local"),
        ("local global [x86-tsc]", "x86-tsc"),
        ("[local]", "local"),
        ("mono\0", "mono"),
        ("", None),
    ],
)
def test_trace_clock_text(text, clock):
    assert parse_trace_clock(text) == clock


def test_cpustat_text():
    assert parse_cpustat("CPU: 3\nentries: 5\noldest event ts:  11553.136649\nodd\n") == {
        "cpu": 3,
        "entries": 5,
        "oldest_event_ts": 11553.136649,
    }


@pytest.mark.parametrize(
    "mangle,message",
    [
        (lambda data: b"\x17\x08\x45" + data[3:], "magic"),
        (lambda data: data[:10] + b"8" + data[11:], "version 8"),
        (lambda data: data[:400], "truncated"),
        (lambda data: data[:12] + b"\x02" + data[13:], "endianness"),
    ],
)
def test_bad_files(tmp_path, tracedat, mangle, message):
    path = tracedat().write(tmp_path / "trace.dat")
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(mangle(data))
    with pytest.raises(TraceDatError, match=message):
        TraceDat(path)


def test_empty_file(tmp_path):
    path = tmp_path / "trace.dat"
    path.write_bytes(b"")
    with pytest.raises(TraceDatError, match="too short"):
        TraceDat(str(path))


def test_damaged_pages(tmp_path, tracedat):
    builder = tracedat(cpus=1)
    page = bytearray(builder.page(1000, [builder.data(0, builder.wakeup(1))]))
    page[8:16] = (5000).to_bytes(8, "little")  # more than a page
    builder.add_page(0, bytes(page))
    with pytest.raises(TraceDatError, match="claims 5000 bytes"):
        summary(builder.write(tmp_path / "trace.dat"))

    builder = tracedat(cpus=1)
    # A long-form event whose length runs past the commit.
    builder.add_page(0, builder.page(1000, [builder._header(0, 0) + (400).to_bytes(4, "little") + bytes(8)]))
    with pytest.raises(TraceDatError, match="CPU 0 page at offset .* is damaged"):
        summary(builder.write(tmp_path / "trace2.dat"))


# ---------------------------------------------------------------- host data (issue 12)
# A trace.dat is host data: damaged or hostile bytes give a TraceDatError (which the
# run report lists among its problems), never another exception.


def _read(path) -> None:
    with TraceDat(str(path)) as dat:
        first, _last = dat.time_range()
        dat.scan()
        if first is not None:
            dat.scan(origin=first, span=10**9, buckets=10)


@pytest.mark.parametrize("seed", range(8))
def test_damaged_trace_dat_gives_a_clear_error(tmp_path, tracedat, seed):
    builder = tracedat()
    every_record_kind(builder)
    good = bytearray(open(builder.write(tmp_path / "good.dat"), "rb").read())
    rng = random.Random(seed)
    for attempt in range(60):
        data = bytearray(good)
        how = attempt % 3
        if how == 0:  # flip bytes
            for _byte in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 1:  # cut
            del data[rng.randrange(len(data)) :]
        else:  # huge numbers where sizes and offsets are
            at = rng.randrange(len(data) - 8)
            data[at : at + 8] = b"\xff" * 8
        path = tmp_path / ("bad-%d.dat" % attempt)
        path.write_bytes(bytes(data))
        try:
            _read(path)
        except TraceDatError:
            pass
