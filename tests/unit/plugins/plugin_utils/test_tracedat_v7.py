# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reader on trace.dat version 7 (zstd, zlib, uncompressed), and event fields.

Files come from the tests' own writer (conftest.TraceDatBuilder.write_v7, checked
against `trace-cmd report` where trace-cmd is installed) and from a real kernel
(fixtures/, see its README), whose every event's fields are compared with
`trace-cmd report -R`."""

from __future__ import annotations

import builtins
import random
import struct

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._tracedat_reader import (
    BYTES,
    INT,
    INTS,
    TEXT,
    UINT,
    EventFormat,
    FieldDecoder,
    MissingDependencyError,
    TraceDat,
    TraceDatError,
    parse_date,
    parse_fields,
    summary,
)

COMPRESSIONS = ["zstd", "zlib", "none"]
LAYOUTS = [("<", 8), (">", 8), ("<", 4)]
LAYOUT_IDS = ["le64", "be64", "le32"]
WAKEUP = 374
PRINT = 5


def builder_with_loss(tracedat, **kwargs):
    """Pages with each kind of ring-buffer record, then two flagged as after a loss;
    returns the builder and the first nine events as (cpu, timestamp, id, pid)."""
    builder = b = tracedat(**kwargs)
    b.add_page(
        0,
        b.page(
            1_000_000,
            [
                b.data(0, b.wakeup(1)),
                b.padding(24, delta=7),
                b.data(100, b.print_(4242, b"x" * 150)),
                b.data(5, b.wakeup(1), long_form=True),
                b.extend((3 << 27) + 5),
                b.data(20, b.wakeup(42)),
            ],
            tail_padding=True,
        ),
    )
    b.add_page(
        0, b.page(2_000_000_000, [b.data(1, b.wakeup(1)), b.absolute(3_000_000_000), b.data(9, b.print_(42, b"hi"))])
    )
    b.add_page(1, b.page(1_500_000, [b.data(0, b.wakeup(0, cpu=1)), b.data((1 << 27) - 1, b.wakeup(42, cpu=1))]))
    expected = [
        (0, 1_000_000, WAKEUP, 1),
        (0, 1_000_107, PRINT, 4242),
        (0, 1_000_112, WAKEUP, 1),
        (0, 1_000_112 + (3 << 27) + 5 + 20, WAKEUP, 42),
        (0, 2_000_000_001, WAKEUP, 1),
        (0, 3_000_000_009, PRINT, 42),
        (1, 1_500_000, WAKEUP, 0),
        (1, 1_500_000 + (1 << 27) - 1, WAKEUP, 42),
    ]
    builder.add_page(1, builder.page(5_000_000_000, [builder.data(0, builder.wakeup(1))], missed=True))
    builder.add_page(1, builder.page(6_000_000_000, [builder.data(0, builder.wakeup(1))], missed_count=17))
    return builder, expected


def events_of(path) -> list[tuple]:
    with TraceDat(str(path)) as dat:
        return [tuple(event) for cpu in dat.cpu_ids for event in dat.cpu_events(cpu)]


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("endian,long_size", LAYOUTS, ids=LAYOUT_IDS)
def test_version_7_reads_as_version_6(tmp_path, tracedat, compression, endian, long_size):
    builder, expected = builder_with_loss(tracedat, endian=endian, long_size=long_size)
    v6 = builder.write(tmp_path / "v6.dat")
    v7 = builder.write_v7(tmp_path / "v7.dat", compression=compression, chunk_pages=1)
    assert events_of(v7) == events_of(v6)
    assert [event for event in events_of(v7) if event[1] < 4_000_000_000] == expected
    ours, theirs = summary(v7), summary(v6)
    assert (ours["version"], ours["compression"], theirs["version"], theirs["compression"]) == (
        "7",
        compression,
        "6",
        None,
    )
    # A version 7 file names every buffer (the top one as ""); version 6 only the others.
    for key in ("path", "version", "compression", "buffers"):
        del ours[key], theirs[key]
    assert ours == theirs
    assert ours["pages_missed_events"] == {"0": 0, "1": 2} and ours["missed_events_stored"] == {"0": 0, "1": 17}
    with TraceDat(v7) as dat:
        assert dat.kallsyms == "ffffffff81000000 T _stext\n"
        assert dat.cmdlines == {1: "init", 42: "worker", 4242: "tracefleet"}
        assert dat.cpu_stats[1]["dropped_events"] == 1
        assert dat.uname == "Linux lab 6.1.0-56-cloud-amd64 x86_64"
        assert dat.buffers == [""]
        assert dat.time_range() == (1_000_000, 6_000_000_000)


@pytest.mark.parametrize("chunk_pages", [1, 2, 10])
def test_chunks_of_any_size(tmp_path, tracedat, chunk_pages):
    builder, _expected = builder_with_loss(tracedat)
    for index in range(5):
        builder.add_page(0, builder.page(7_000_000_000 + index, [builder.data(0, builder.wakeup(index))]))
    v6 = builder.write(tmp_path / "v6.dat")
    v7 = builder.write_v7(tmp_path / "v7.dat", chunk_pages=chunk_pages)
    assert events_of(v7) == events_of(v6)
    with TraceDat(v7) as dat:
        assert dat.time_range() == (1_000_000, 7_000_000_004)


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_trace_cmd_reads_the_test_writers_version_7(tmp_path, tracedat, report_events, compression):
    """The tests' version 7 writer lays files out as trace-cmd reads them (trace-cmd
    3.1 reads zstd and uncompressed files; zlib differs only in the codec)."""
    builder, _expected = builder_with_loss(tracedat)
    path = builder.write_v7(tmp_path / "v7.dat", compression=compression)
    theirs = report_events(path)
    if theirs is None:
        pytest.skip("trace-cmd is not installed: no cross-check")
    names = {374: "sched_wakeup", 5: "print"}
    with TraceDat(path) as dat:
        ours = sorted((event.cpu, event.timestamp, event.pid, names[event.event_id]) for event in dat.events())
    assert len(ours) == 10
    assert ours == sorted(theirs)


def test_real_files_v6_and_v7_hold_the_same_trace(real_tracedat):
    pytest.importorskip("zstandard")
    v6, v7 = summary(real_tracedat["v6"]), summary(real_tracedat["v7-zstd"])
    assert (v6["version"], v7["version"], v7["compression"]) == ("6", "7", "zstd")
    assert v7["events"] == v6["events"] == 971
    assert v7["events_by_name"] == v6["events_by_name"]
    assert v7["events_per_cpu"] == v6["events_per_cpu"] == {"0": 393, "1": 578}
    assert v7["first_timestamp"] == v6["first_timestamp"] and v7["last_timestamp"] == v6["last_timestamp"]
    assert v7["trace_clock"] == "local"
    assert events_of(real_tracedat["v7-zstd"]) == events_of(real_tracedat["v6"])


@pytest.mark.parametrize("version", ["v6", "v7-zstd"])
def test_every_field_of_a_real_trace_agrees_with_trace_cmd(real_tracedat, raw_events, raw_fields, version):
    if version == "v7-zstd":
        pytest.importorskip("zstandard")
    theirs = raw_events(real_tracedat[version])
    if theirs is None:
        pytest.skip("trace-cmd is not installed: no cross-check")
    ours = []
    with TraceDat(real_tracedat[version]) as dat:
        for cpu in dat.cpu_ids:
            for page in dat.pages(cpu):
                for record in dat.records(page):
                    decoder = dat.decoder(record.event_id)
                    assert decoder is not None
                    values = decoder.decode(page.data, record.offset, record.size)
                    ours.append((cpu, record.timestamp, record.pid, decoder, values))
    ours.sort(key=lambda event: (event[1], event[0]))
    assert len(ours) == len(theirs) == 971
    compared = 0
    kinds = set()
    for (cpu, stamp, pid, decoder, values), (their_cpu, their_stamp, their_pid, name, text) in zip(ours, theirs):
        assert (cpu, stamp, pid, decoder.event.name) == (their_cpu, their_stamp, their_pid, name)
        fields = raw_fields.split(text, [plan.name for plan in decoder.plans])
        assert fields is not None, (name, text)
        for plan in decoder.plans:
            assert raw_fields.agree(values[plan.name], fields[plan.name], plan.size), (name, plan.name, text)
            compared += 1
            kinds.add(plan.kind)
    # Strings from char arrays and __data_loc, signed and unsigned integers: all compared.
    assert compared > 4000 and kinds >= {INT, UINT, TEXT}


def test_known_field_values_of_the_real_trace(real_tracedat):
    """Three events read by hand from `trace-cmd report -R` of the fixture."""
    pytest.importorskip("zstandard")
    found = {}
    with TraceDat(real_tracedat["v7-zstd"]) as dat:
        for cpu in dat.cpu_ids:
            for page in dat.pages(cpu):
                for record in dat.records(page):
                    name = dat.formats[record.event_id].name
                    if name in ("pfbash", "print", "sched_process_exec") and name not in found:
                        found[name] = dat.decoder(record.event_id).decode(page.data, record.offset, record.size)
    assert found["pfbash"]["cmd"] == (
        "cat /etc/hostname > /dev/null; echo hello-$i > /sys/kernel/tracing/instances/pffix/trace_marker"
    )
    assert found["pfbash"]["flags"] == 20 and found["pfbash"]["from"] == 0x55A8A2DD2090
    assert found["print"]["buf"] == "hello-\n" and found["print"]["ip"] == 0xFFFFFFFF814AA7C1
    assert found["sched_process_exec"] == {"filename": "/bin/sh", "pid": 13399, "old_pid": 13399}


# ---------------------------------------------------------------- field decoding


def decoder_for(text: str, endian: str = "<") -> FieldDecoder:
    return FieldDecoder(EventFormat("test", "event", 9, parse_fields(text)), endian)


FIELDS = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
    "\tfield:char comm[8];\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:long delta;\toffset:16;\tsize:8;\tsigned:1;\n"
    "\tfield:u32 flags;\toffset:24;\tsize:4;\tsigned:0;\n"
    "\tfield:__data_loc char[] name;\toffset:28;\tsize:4;\tsigned:0;\n"
    "\tfield:u16 ports[3];\toffset:32;\tsize:6;\tsigned:0;\n"
    "\tfield:__rel_loc char[] tail;\toffset:38;\tsize:4;\tsigned:0;\n"
    "\tfield:__data_loc u8[] blob;\toffset:42;\tsize:4;\tsigned:0;\n"
    "\tfield:unsigned char odd[3];\toffset:46;\tsize:3;\tsigned:0;\n"
)


def payload(endian: str = "<") -> bytes:
    name, tail, blob = b"openat\0", b"rest\0", b"\x01\x02\x03"
    fixed = 49
    head = struct.pack(endian + "HBBi", 9, 0, 0, 77) + b"bash\0\0\0\0"
    head += struct.pack(endian + "qI", -5, 0x80000001)
    head += struct.pack(endian + "I", len(name) << 16 | fixed)
    head += struct.pack(endian + "HHH", 1, 2, 65535)
    # __rel_loc: the offset counts from the end of the field itself (38 + 4 = 42).
    head += struct.pack(endian + "I", len(tail) << 16 | (fixed + len(name) - 42))
    head += struct.pack(endian + "I", len(blob) << 16 | (fixed + len(name) + len(tail)))
    head += b"\xaa\xbb\xcc"
    assert len(head) == fixed
    return head + name + tail + blob


@pytest.mark.parametrize("endian", ["<", ">"])
def test_decoder_reads_every_kind_of_field(endian):
    decoder = decoder_for(FIELDS, endian)
    assert decoder.kinds == {
        "comm": TEXT,
        "delta": INT,
        "flags": UINT,
        "name": TEXT,
        "ports": INTS,
        "tail": TEXT,
        "blob": BYTES,
        "odd": INTS,
    }
    data = b"\xff" * 5 + payload(endian)
    assert decoder.decode(data, 5, len(data) - 5) == {
        "comm": "bash",
        "delta": -5,
        "flags": 0x80000001,
        "name": "openat",
        "ports": [1, 2, 65535],
        "tail": "rest",
        "blob": b"\x01\x02\x03",
        "odd": [0xAA, 0xBB, 0xCC],
    }


def test_decoder_leaves_out_what_a_short_payload_lacks():
    data = payload()
    values = decoder_for(FIELDS).decode(data, 0, 20)
    assert values == {"comm": "bash"}
    # A __data_loc pointing past the payload gives what is there, never bytes beyond it.
    values = decoder_for(FIELDS).decode(data, 0, 51)
    assert values["name"] == "op"


def test_print_buffer_runs_to_the_end_of_the_payload():
    decoder = decoder_for(
        "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:0;\n"
    )
    data = bytes(8) + struct.pack("<Q", 0xFFFFFFFF81000000) + b"hello\n\0\0\0"
    assert decoder.decode(data, 0, len(data)) == {"ip": 0xFFFFFFFF81000000, "buf": "hello\n"}


def test_undecodable_text_is_replaced_not_fatal():
    decoder = decoder_for("\tfield:char comm[4];\toffset:8;\tsize:4;\tsigned:0;\n")
    assert decoder.decode(bytes(8) + b"a\xffb\0", 0, 12) == {"comm": "a\ufffdb"}


@pytest.mark.parametrize(
    "text,nanoseconds",
    [("0x5f5e100", 100_000_000_000), ("1000", 1_000_000), ("", None), (None, None), ("junk", None)],
)
def test_date_option(text, nanoseconds):
    assert parse_date(text) == nanoseconds


# ---------------------------------------------------------------- failures


def test_zstd_without_the_package_names_it(tmp_path, tracedat, monkeypatch):
    path = tracedat().write_v7(tmp_path / "v7.dat", compression="zstd")
    real_import = builtins.__import__

    def no_zstandard(name, *args, **kwargs):
        if name == "zstandard":
            raise ImportError("No module named 'zstandard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zstandard)
    with pytest.raises(MissingDependencyError, match=r"zstandard \(zstandard==.*requirements.txt"):
        TraceDat(path)


def test_zlib_needs_nothing_more(tmp_path, tracedat, monkeypatch):
    builder, _expected = builder_with_loss(tracedat)
    path = builder.write_v7(tmp_path / "v7.dat", compression="zlib")
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)
    assert summary(path)["events"] == 10


def test_unknown_compression(tmp_path, tracedat):
    path = tracedat().write_v7(tmp_path / "v7.dat", compression="zlib")
    data = open(path, "rb").read().replace(b"zlib\x00", b"lz4x\x00", 1)
    open(path, "wb").write(data)
    with pytest.raises(TraceDatError, match="compressed with 'lz4x'; this reader reads zstd, zlib and none"):
        TraceDat(path)


def _chunk_header_at(path) -> int:
    """The file offset of CPU 0's first chunk header (after the u32 count)."""
    with TraceDat(str(path)) as dat:
        return dat.cpu_data[0][0] + 4


def test_a_chunk_claiming_too_much_is_refused_before_decompressing(tmp_path, tracedat):
    builder, _expected = builder_with_loss(tracedat)
    path = builder.write_v7(tmp_path / "v7.dat", compression="zlib")
    at = _chunk_header_at(path)
    data = bytearray(open(path, "rb").read())
    data[at + 4 : at + 8] = struct.pack("<I", 1 << 30)
    open(path, "wb").write(bytes(data))
    with pytest.raises(TraceDatError, match="CPU 0 has a chunk of 1073741824 bytes uncompressed"):
        TraceDat(path)


def test_a_chunk_decompressing_to_more_than_it_claims_is_refused(tmp_path, tracedat):
    builder, _expected = builder_with_loss(tracedat)
    path = builder.write_v7(tmp_path / "v7.dat", compression="zlib")
    at = _chunk_header_at(path)
    data = bytearray(open(path, "rb").read())
    data[at + 4 : at + 8] = struct.pack("<I", 4096)  # two pages in the chunk: 8192 bytes
    open(path, "wb").write(bytes(data))
    with pytest.raises(TraceDatError, match="decompresses to more than 4096 bytes, not the 4096 it claims"):
        summary(path)


def test_options_sections_that_loop_are_refused(tmp_path, tracedat):
    path = tracedat().write_v7(tmp_path / "v7.dat", compression="none")
    data = bytearray(open(path, "rb").read())
    # After the initial 18 bytes: "none\0", an empty version "\0", the first options offset.
    first = struct.unpack_from("<Q", data, 18 + 6)[0]
    # The first options section is the file's last: its DONE option (u16 0, u32 8, u64
    # the next section) ends the file. Make it name the first section again.
    assert data[-14:-8] == b"\x00\x00\x08\x00\x00\x00"
    data[-8:] = struct.pack("<Q", first)
    open(path, "wb").write(bytes(data))
    with pytest.raises(TraceDatError, match="loop back"):
        TraceDat(path)


@pytest.mark.parametrize("compression", ["zlib", "none"])
@pytest.mark.parametrize("seed", range(4))
def test_damaged_version_7_gives_a_clear_error(tmp_path, tracedat, compression, seed):
    builder, _expected = builder_with_loss(tracedat)
    good = bytearray(open(builder.write_v7(tmp_path / "good.dat", compression=compression), "rb").read())
    rng = random.Random(seed)
    for attempt in range(60):
        data = bytearray(good)
        how = attempt % 3
        if how == 0:
            for _byte in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 1:
            del data[rng.randrange(len(data)) :]
        else:
            at = rng.randrange(len(data) - 8)
            data[at : at + 8] = b"\xff" * 8
        path = tmp_path / ("bad-%d.dat" % attempt)
        path.write_bytes(bytes(data))
        try:
            with TraceDat(str(path)) as dat:
                dat.time_range()
                dat.scan()
                assert isinstance(dat.kallsyms, str)
                for cpu in dat.cpu_ids:
                    for page in dat.pages(cpu):
                        for record in dat.records(page):
                            decoder = dat.decoder(record.event_id)
                            if decoder is not None:
                                decoder.decode(page.data, record.offset, record.size)
        except TraceDatError:
            pass
