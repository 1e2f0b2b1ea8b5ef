# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 13 on the target: the version 7 trace.dat (sections, compressed chunks,
the DATE option), the anchor markers found in ring-buffer pages, the capture's own
pids in the notrace lists (and out again), and the held workload.

The files are read back here by a small walker of the v7 layout written from
trace-cmd.dat.v7(5) (the collection's reader is another module's); where the real
`trace-cmd` is installed, it reads them too."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
import zlib

import pytest
from test_capture import PAGE, add_instance, fake_pages, layout, params, wakeup_page

from ansible_collections.tracefleet.ftrace.plugins.module_utils import (
    _capture_anchor,
    _capture_run,
    _capture_self,
    _compress,
    _tracedat_writer,
    _workload,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

PRINT_FORMAT = """name: print
ID: 5
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:1;
"""


# ---------------------------------------------------------------- reading v7 back


def decompress(method: str, data: bytes) -> bytes:
    if method == "zlib":
        return zlib.decompress(data)
    if method == "zstd":
        return subprocess.run(["zstd", "-q", "-d", "-c"], input=data, capture_output=True, check=True).stdout
    raise AssertionError(method)


def walk_v7(path: str) -> dict:
    """Sections, options and each CPU's pages of a version 7 file."""
    data = open(path, "rb").read()
    assert data[:10] == b"\x17\x08\x44tracing" and data[10:12] == b"7\0"
    pos = 14 + 4
    name, pos = data[pos : data.index(b"\0", pos)].decode(), data.index(b"\0", pos) + 1
    pos = data.index(b"\0", pos) + 1  # the version
    (options_at,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    sections, order = {}, []
    while pos < len(data):  # trace-cmd walks them like this to find the strings
        section, flags, _desc, size = struct.unpack_from("<HHiQ", data, pos)
        body = data[pos + 16 : pos + 16 + size]
        order.append((section, pos))
        if flags & 1 and section != 3:
            packed, unpacked = struct.unpack_from("<II", body, 0)
            body = decompress(name, body[8 : 8 + packed])
            assert len(body) == unpacked
        sections[section] = (pos, flags, body)
        pos += 16 + size
    assert pos == len(data), "the sections do not end where the file does"
    assert sections[0][0] == options_at
    options, opt = [], sections[0][2]
    index = 0
    while True:
        option, size = struct.unpack_from("<HI", opt, index)
        options.append((option, opt[index + 6 : index + 6 + size]))
        index += 6 + size
        if option == 0:
            break
    (buffer,) = [value for option, value in options if option == 3]
    (flyrecord,) = struct.unpack_from("<Q", buffer, 0)
    rest = buffer[9:]
    clock, rest = rest.split(b"\0", 1)
    page, count = struct.unpack_from("<II", rest, 0)
    cpus = []
    for cpu in range(count):
        number, offset, size = struct.unpack_from("<IQQ", rest, 8 + cpu * 20)
        assert number == cpu and offset % page == 0
        raw = data[offset : offset + size]
        if sections[3][1] & 1 and size:
            (chunks,) = struct.unpack_from("<I", raw, 0)
            pages, at = b"", 4
            for _chunk in range(chunks):
                packed, unpacked = struct.unpack_from("<II", raw, at)
                piece = decompress(name, raw[at + 8 : at + 8 + packed])
                assert len(piece) == unpacked and unpacked % page == 0
                pages += piece
                at += 8 + packed
            assert at == size
            raw = pages
        cpus.append(raw)
    return dict(compression=name, sections=sections, options=dict(options), clock=clock, cpus=cpus, flyrecord=flyrecord)


def trace_cmd_report(path: str) -> str:
    return subprocess.run(["trace-cmd", "report", "-i", path], capture_output=True, text=True, check=True).stdout


def methods():
    return ["none", "zlib"] + (["zstd"] if shutil.which("zstd") else [])


# ---------------------------------------------------------------- the writer


def test_date_option_is_trace_cmd_s_microseconds_in_hex():
    offset_ns = 1_795_750_000_123_456_789 - 1_234_000_000_000
    assert _tracedat_writer.date_option(offset_ns) == b"0x%x" % 1_795_748_766_123_457
    assert _tracedat_writer.date_option(1500) == b"0x2"  # rounded, not cut
    assert _tracedat_writer.date_option(-2000) == b"-0x2"


@pytest.mark.parametrize("method", methods())
def test_v7_parts_make_a_file_with_every_section_and_the_pages(tmp_path, method):
    dat = layout(cpus=3)
    dat.date = b"0x1234"
    payloads = _tracedat_writer.metadata_payloads(dat)
    payloads[_tracedat_writer.SECTION_KALLSYMS] += dat.kallsyms
    sections = {}
    for section, data in payloads.items():
        blob = data if method == "none" else zlib.compress(data) if method == "zlib" else None
        if method == "zstd":
            blob = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
        sections[section] = (_tracedat_writer.Blob(data=blob), len(data))
    pages = [wakeup_page(1000, 3) + wakeup_page(5000, 2), b"", wakeup_page(700, 1)]
    cpus = []
    for cpu_pages in pages:
        pieces = []
        for start in range(0, len(cpu_pages), PAGE):  # one chunk per page
            chunk = cpu_pages[start : start + PAGE]
            blob = chunk if method == "none" else zlib.compress(chunk) if method == "zlib" else None
            if method == "zstd":
                blob = subprocess.run(["zstd", "-q", "-c"], input=chunk, capture_output=True, check=True).stdout
            pieces.append(_tracedat_writer.Piece(_tracedat_writer.Blob(data=blob), len(chunk)))
        cpus.append(pieces)
    parts = _tracedat_writer.v7_parts(dat, method, "1", sections, cpus)
    path = str(tmp_path / "trace.dat")
    size = _compress.assemble(parts, path)
    assert size == os.path.getsize(path)
    found = walk_v7(path)
    assert found["compression"] == method and found["cpus"] == pages and found["clock"] == b"local"
    assert found["options"][1] == b"0x1234\0" and found["options"][8] == struct.pack("<I", 3)
    assert found["sections"][19][2].endswith(dat.kallsyms)
    assert found["sections"][15][2].startswith(b"headers\0")
    if shutil.which("trace-cmd") and method != "zlib":  # Debian's trace-cmd has no zlib
        text = trace_cmd_report(path)
        assert text.count("sched_wakeup") == 6


def test_a_chunk_too_big_for_a_reader_is_refused():
    dat = layout(cpus=1)
    sections = {section: (_tracedat_writer.Blob(data=b"x"), 1) for section in _tracedat_writer.METADATA}
    piece = _tracedat_writer.Piece(_tracedat_writer.Blob(data=b"x"), _tracedat_writer.MAX_CHUNK + PAGE)
    with pytest.raises(_tracedat_writer.TraceDatError, match="more than a trace.dat reader takes"):
        _tracedat_writer.v7_parts(dat, "zstd", "1", sections, [[piece]])


def test_a_zlib_stream_writes_whole_chunks_with_their_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(_compress, "ZLIB_CHUNK", 2 * PAGE)
    stream = _compress.Stream("zlib", str(tmp_path / "cpu0"))
    data = b"".join(wakeup_page(100 * index, 2) for index in range(5))
    stream.write(data[:PAGE])
    stream.write(data[PAGE:])
    stream.finish()
    raw = (tmp_path / "cpu0").read_bytes()
    assert stream.chunks == 3 and stream.raw_bytes == len(data) and stream.stored_bytes == len(raw)
    unpacked, at = b"", 0
    while at < len(raw):
        packed, size = struct.unpack_from("<II", raw, at)
        unpacked += zlib.decompress(raw[at + 8 : at + 8 + packed])
        at += 8 + packed
    assert unpacked == data


def test_choose_names_the_compression_inside_a_v7_file(monkeypatch):
    monkeypatch.setattr(_compress, "available", lambda method: method != "zstd")
    assert _compress.choose("auto", inside=True) == "zlib"
    assert _compress.choose("gzip", inside=True) == "zlib"
    assert _compress.choose("none", inside=True) == "none"
    assert _compress.choose("zlib") == "gzip"
    with pytest.raises(_compress.CompressError, match="no zstd program on this host"):
        _compress.choose("zstd", inside=True)


# ---------------------------------------------------------------- the anchor


def print_event(stamp_delta: int, text: bytes, big: bool = False) -> bytes:
    payload = struct.pack("<HBBiQ", 5, 0, 0, 77, 0xFFFF) + text + b"\n\0"
    payload += b"\0" * (-len(payload) % 4)
    if big:  # type_len 0: the length in the next word
        return struct.pack("<II", stamp_delta << 5, len(payload) + 4) + payload
    return struct.pack("<I", stamp_delta << 5 | len(payload) // 4) + payload


def marker_page(start: int) -> bytes:
    body = print_event(10, b"tracefleet-anchor 0 wall_ns=1000")
    # A discarded event (16 bytes: its length word counts itself, not the header); its delta counts.
    body += struct.pack("<II", 5 << 5 | 29, 12) + b"\0" * 8
    body += struct.pack("<II", (3 & 0x7FFFFFF) << 5 | 30, 1)  # time extend: + (1 << 27) + 3
    body += print_event(20, b"tracefleet-anchor 1 wall_ns=2000", big=True)
    body += print_event(1, b"someone else's marker")
    page = struct.pack("<QQ", start, len(body)) + body
    return page + b"\0" * (PAGE - len(page))


@pytest.fixture
def buffer(fake_host):
    fake_host.mount_tracefs()
    add_instance(fake_host)
    fake_host.write("tracing/instances/cap/events/ftrace/print/format", PRINT_FORMAT)
    fake_host.write("tracing/instances/cap/trace_marker", "")
    return TracingDir(str(fake_host.tracing), "cap")


def test_the_markers_are_found_in_the_pages_with_their_timestamps(buffer):
    finder = _capture_anchor.MarkerFinder(buffer, PAGE, 2)
    assert not finder.feed(wakeup_page(1, 3))  # other events only
    assert finder.feed(marker_page(5000))
    assert finder.found == {0: 5010, 1: 5010 + 5 + (1 << 27) + 3 + 20}


def test_the_narrowest_bracket_is_the_anchor():
    samples = dict(cpu=0, samples=[[100, 900], [1000, 1300], [2000, 2600]])
    found = {0: 50, 1: 940, 2: 1900}
    anchor = _capture_anchor.anchor(samples, found, "local")
    assert anchor == dict(
        wall=1150 / 1e9, trace=940 / 1e9, clock="local", wall_ns=1150, trace_ns=940, uncertainty_ns=300
    )
    counter = _capture_anchor.anchor(samples, found, "counter")
    assert counter["trace_ns"] is None and counter["uncertainty_ns"] == 300
    lost = _capture_anchor.anchor(samples, {}, "local")
    assert lost["uncertainty_ns"] is None and lost["trace_ns"] is None and lost["wall_ns"] == 500


def test_markers_in_text_are_read_to_the_microsecond(tmp_path):
    text = tmp_path / "trace.txt"
    text.write_bytes(
        b"  python3-77 [001] ...1.  1130.882737: tracing_mark_write: tracefleet-anchor 0 wall_ns=5\n"
        b"  python3-77 [001] ...1.  1130.882740: tracing_mark_write: tracefleet-anchor 1 wall_ns=9\n"
    )
    assert _capture_anchor.find_in_text(str(text), 16) == {0: 1130882737000, 1: 1130882740000}


def test_samples_are_written_to_trace_marker_on_one_cpu(buffer, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    pinned = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda _pid, cpus: pinned.append(set(cpus)))
    samples, problem = _capture_anchor.take_samples(buffer, [1], samples=3)
    assert problem is None and samples["cpu"] == 1 and pinned == [{1}, {0, 1}]
    assert all(before <= after for before, after in samples["samples"]) and len(samples["samples"]) == 3
    written = open(buffer.path("trace_marker"), "rb").read()
    assert written.count(b"tracefleet-anchor") == 3 and b"tracefleet-anchor 2 wall_ns=" in written


# ---------------------------------------------------------------- the capture's own pids


def test_own_processes_stop_at_sshd_and_at_the_session(monkeypatch):
    table = {
        50: ("python3", 40, 9),
        40: ("sh", 30, 9),
        30: ("sudo", 20, 9),
        20: ("sh", 10, 9),
        10: ("sshd", 1, 9),
        60: ("python3", 55, 9),
        55: ("bash", 54, 7),
    }
    monkeypatch.setattr(_capture_self, "_stat", table.get)
    assert _capture_self.own_processes(50) == [50, 40, 30, 20]
    assert _capture_self.own_processes(60) == [60]


def test_quiet_pids_are_listed_recorded_and_taken_out(buffer, tmp_path, monkeypatch):
    notrace = buffer.path("set_event_notrace_pid")
    with open(notrace, "w") as handle:
        handle.write("7\n")
    ledger = str(tmp_path / "ledger.json")
    quiet = _capture_self.QuietPids(buffer, ledger, "s1")
    quiet.add([os.getpid(), 7])
    entries = json.load(open(ledger))["entries"]
    assert [(entry["kind"], entry["file"], entry["value"]) for entry in entries] == [
        ("list_add", "set_event_notrace_pid", str(os.getpid()))
    ]
    # The fake file takes appends; a real one lists one pid a line.
    assert open(notrace).read().split() == ["7", str(os.getpid())]
    # Under event-fork the kernel listed a child of ours that has gone since.
    with open(notrace, "a") as handle:
        handle.write("999999999\n")
    quiet.remove()
    assert open(notrace).read().split() == ["7"]
    assert json.load(open(ledger))["entries"] == []
    assert quiet.pids == sorted([7, os.getpid()])


def test_teardown_takes_a_notrace_pid_out(buffer, tmp_path):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _knob_changes

    with open(buffer.path("set_event_notrace_pid"), "w") as handle:
        handle.write("7\n4242\n")
    entry = dict(kind="list_add", instance="cap", file="set_event_notrace_pid", value="4242")
    _knob_changes.LEDGER_KINDS["list_add"].undo(buffer.top(), None, entry)
    assert open(buffer.path("set_event_notrace_pid")).read().split() == ["7"]


# ---------------------------------------------------------------- the held workload


def test_a_held_workload_runs_only_when_released(tmp_path):
    held = _workload.Workload("echo ran $$", str(tmp_path), held=True)
    time.sleep(0.2)
    assert held.process.poll() is None
    pid = held.process.pid
    held.release()
    held.process.wait(10)
    assert held.result()["stdout"] == "ran %d\n" % pid and held.returncode == 0  # the same process
    never = _workload.Workload("echo ran", str(tmp_path), held=True)
    never.close()  # the module went away before the window opened
    never.process.wait(10)
    assert never.returncode != 0


# ---------------------------------------------------------------- a whole v7 capture


@fake_pages
@pytest.mark.parametrize("method", methods())
def test_a_v7_capture_holds_the_pages_and_travels_as_it_is(fake_host, tmp_path, method):
    fake_host.mount_tracefs()
    add_instance(fake_host)
    pages = ([wakeup_page(1000, 5), wakeup_page(9000, 2)], [wakeup_page(500, 4)])
    for cpu, cpu_pages in enumerate(pages):
        (fake_host.tracing / ("instances/cap/per_cpu/cpu%d/trace_pipe_raw" % cpu)).write_bytes(b"".join(cpu_pages))
    (tmp_path / "work").mkdir()
    result, _warnings = _capture_run.capture(
        params(fake_host, tmp_path, file_version=7, compress=method, kallsyms=True, include_self=True)
    )
    assert result["file"] == str(tmp_path / "work" / "trace.dat") and result["compress"] == method
    assert result["bytes"] == result["raw_bytes"] == os.path.getsize(result["file"])
    assert result["sha256"] == _compress.sha256(result["file"]) and result["file_version"] == 7
    found = walk_v7(result["file"])
    assert found["cpus"] == [b"".join(cpu_pages) for cpu_pages in pages]
    assert b"ffffffff" in found["sections"][19][2] or found["sections"][19][2][4:] == b""
    assert os.listdir(tmp_path / "work") == ["trace.dat"]
