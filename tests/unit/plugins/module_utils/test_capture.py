"""The capture pieces on the target side: stats and loss, ring-buffer draining, the
trace.dat writer (read back by the collection's own reader and, where installed,
by trace-cmd), and streamed compression."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture, _compress, _tracedat_writer
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Control
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _tracedat_reader

PAGE = 4096

# per_cpu/cpu0/stats as the lab's 6.1 kernel prints it.
STATS = """entries: 359
overrun: 12
commit overrun: 1
bytes: 19968
oldest event ts:   169.428990
now ts:   170.028821
dropped events: 3
read events: 76954
"""

HEADER_PAGE = (
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
    "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n"
)
HEADER_EVENT = """# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\ttime_stamp : type == 31
\tdata max type_len  == 28
"""
WAKEUP_FORMAT = """name: sched_wakeup
ID: 374
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:int target_cpu;\toffset:32;\tsize:4;\tsigned:1;

print fmt: "comm=%s pid=%d prio=%d target_cpu=%03d", REC->comm, REC->pid, REC->prio, REC->target_cpu
"""


def wakeup_page(timestamp: int, count: int, pid: int = 42, missed: bool = False) -> bytes:
    """A ring-buffer page holding `count` sched_wakeup events 1000 ns apart."""
    body = b""
    for _index in range(count):
        payload = struct.pack("<HBBi16siii", 374, 0, 0, pid, b"worker", 7, 120, 0)
        body += struct.pack("<I", 1000 << 5 | len(payload) // 4) + payload
    commit = len(body) | ((1 << 31) if missed else 0)
    if missed:  # the kernel adds the flag as a signed int: it arrives sign-extended
        commit |= 0xFFFFFFFF00000000
    page = struct.pack("<QQ", timestamp, commit) + body
    return page + b"\0" * (PAGE - len(page))


def layout(cpus: int = 2) -> _tracedat_writer.DatLayout:
    return _tracedat_writer.DatLayout(
        page_size=PAGE,
        header_page=HEADER_PAGE.encode(),
        header_event=HEADER_EVENT.encode(),
        ftrace_formats=[],
        systems=[("sched", [WAKEUP_FORMAT.encode()])],
        kallsyms=b"ffffffff81000000 T _stext\n",
        printk_formats=b"",
        cmdlines=b"42 worker\n",
        cpu_stats=[STATS.encode()] * cpus,
        trace_clock=b"[local] global mono",
        uname=b"Linux lab 6.1.0 #1 SMP x86_64",
    )


def test_parse_stats_and_loss():
    stats = _capture.parse_stats(STATS)
    assert stats["entries"] == 359 and stats["read events"] == 76954
    assert stats["now ts"] == pytest.approx(170.028821)
    earlier = {"overrun": 10, "commit overrun": 0, "dropped events": 0, "read events": 70000}
    before = {0: dict(stats, **earlier)}
    after = {0: stats}
    assert _capture.loss(before, after) == {0: 2 + 1 + 3}
    assert _capture.kernel_events(before, after, consumed=True) == {0: 6954 + 359}
    assert _capture.kernel_events(before, after, consumed=False) == {0: 359}


def test_page_data_size_masks_the_missed_events_flag():
    assert _capture.page_data_size(wakeup_page(1, 3)) == 16 + 3 * 40
    assert _capture.page_data_size(wakeup_page(1, 3, missed=True)) == 16 + 3 * 40
    assert _capture.page_data_size(b"short") == 0


def read_back(path):
    with _tracedat_reader.TraceDat(str(path)) as dat:
        return [(event.cpu, event.pid) for event in dat.events()]


def test_tracedat_writer_reads_back(tmp_path):
    cpu_files = []
    for cpu, pages in enumerate(([wakeup_page(1000, 5), wakeup_page(9000, 2)], [wakeup_page(500, 4)])):
        path = tmp_path / ("cpu%d" % cpu)
        path.write_bytes(b"".join(pages))
        cpu_files.append(str(path))
    out = tmp_path / "trace.dat"
    size = _tracedat_writer.write(str(out), layout(), cpu_files)
    assert size == out.stat().st_size
    events = read_back(out)
    assert len(events) == 11 and events.count((1, 42)) == 4
    summary = _tracedat_reader.summary(str(out))
    assert summary["events"] == 11
    assert summary["trace_clock"] == "local"
    if shutil.which("trace-cmd"):
        report = subprocess.run(
            ["trace-cmd", "report", "-i", str(out)], capture_output=True, text=True, check=True
        ).stdout
        assert sum(1 for line in report.splitlines() if "sched_wakeup:" in line) == 11


def test_tracedat_writer_data_starts_on_a_page(tmp_path):
    data = tmp_path / "cpu0"
    data.write_bytes(wakeup_page(1, 1))
    header = _tracedat_writer.header_bytes(layout(1), [PAGE])
    assert len(header) % PAGE == 0
    with pytest.raises(ValueError, match="not whole"):
        _tracedat_writer.check_pages(layout(1), [PAGE + 1])


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_streamed_parts_unpack_to_the_whole_file(tmp_path, method):
    if method == "zstd" and not _compress.available("zstd"):
        pytest.skip("no zstd program")
    pages = [wakeup_page(1000, 7), wakeup_page(3000, 7)]
    (tmp_path / "cpu0").write_bytes(b"".join(pages))
    whole = tmp_path / "whole.dat"
    _tracedat_writer.write(str(whole), layout(1), [str(tmp_path / "cpu0")])

    lay = layout(1)
    opening = _tracedat_writer.opening_bytes(lay)
    parts = [_compress.Stream(method, str(tmp_path / name)) for name in ("a", "b", "c")]
    parts[0].write(opening)
    parts[2].write(b"".join(pages))
    parts[1].write(_tracedat_writer.closing_bytes(lay, len(opening), [parts[2].raw_bytes]))
    _compress.finish_all(parts)
    packed = tmp_path / "packed"
    _compress.concatenate([part.path for part in parts], str(packed))
    unpacked = tmp_path / "unpacked.dat"
    _compress.decompress(method, str(packed), str(unpacked))
    assert unpacked.read_bytes() == whole.read_bytes()
    if method != "none":
        assert packed.stat().st_size < whole.stat().st_size


def test_failed_compressor_is_an_error():
    if not _compress.available("zstd"):
        pytest.skip("no zstd program")
    stream = _compress.Stream("zstd", "/dev/full")  # zstd cannot write its output
    with pytest.raises(_compress.CompressError, match="zstd failed"):
        stream.write(b"data" * 100000)
        stream.finish()
    stream.abort()


@pytest.fixture
def buffer(tmp_path):
    root = tmp_path / "tracing"
    files = {
        "instances/cap/tracing_on": "1\n",
        "instances/cap/trace": "# tracer: nop\n",
        "instances/cap/trace_clock": "[local] global\n",
        "instances/cap/set_event": "sched:sched_wakeup\nsched:sched_switch\nsyscalls:sys_enter_openat\n",
        "instances/cap/events/sched/enable": "1\n",
        "instances/cap/events/syscalls/enable": "X\n",
        "instances/cap/events/sched/sched_wakeup/format": WAKEUP_FORMAT,
        "instances/cap/per_cpu/cpu0/stats": STATS,
        "instances/cap/per_cpu/cpu1/stats": STATS,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return _capture.Buffer(Control(str(root)), "cap")


def test_buffer_reads(buffer):
    assert buffer.cpus() == [0, 1]
    assert buffer.tracing_on() is True
    assert buffer.clock() == "local"
    assert buffer.stats([0])[0]["overrun"] == 12
    events = buffer.enabled_events()
    assert buffer.summarise_events(events) == ["sched:*", "syscalls:sys_enter_openat"]
    assert buffer.event_format("sched", "sched_wakeup") == WAKEUP_FORMAT.encode()
    assert buffer.event_format("sched", "nope") == b""
    buffer.clear()
    assert os.path.getsize(buffer.path("trace")) == 0


@pytest.mark.parametrize("splice", [True, False])
def test_drainer_moves_every_page(buffer, tmp_path, monkeypatch, splice):
    pages = {0: [wakeup_page(1, 3), wakeup_page(2, 100)], 1: [wakeup_page(5, 2)]}
    for cpu, cpu_pages in pages.items():
        with open(buffer.path("per_cpu", "cpu%d" % cpu, "trace_pipe_raw"), "wb") as handle:
            handle.write(b"".join(cpu_pages))
    streams = [_compress.Stream("none", str(tmp_path / ("out%d" % cpu))) for cpu in (0, 1)]
    drainer = _capture.Drainer(buffer, [0, 1], streams)
    if not splice:
        drainer.splice = False
        # The kernel hands out one page per read(2); a regular file gives it all at once.
        monkeypatch.setattr(_capture, "READ_SIZE", PAGE)
    try:
        # While recording, a read drain stops at the first page that is not full.
        moved = drainer.drain(final=splice)
        if not splice:
            # cpu0's first page is not full: the drain stops there until the final one.
            assert moved == 2 * PAGE
            moved += drainer.drain(final=True)
    finally:
        drainer.close()
        _compress.finish_all(streams)
    assert moved == 3 * PAGE
    for cpu, cpu_pages in pages.items():
        assert (tmp_path / ("out%d" % cpu)).read_bytes() == b"".join(cpu_pages)
        assert streams[cpu].raw_bytes == len(b"".join(cpu_pages))


def test_closing_and_opening_layout(buffer):
    opening = _capture.opening_layout(buffer, buffer.enabled_events(), kallsyms=False)
    assert opening.systems == [("sched", [WAKEUP_FORMAT.encode()])]
    assert opening.kallsyms == b""
    _capture.closing(opening, buffer, [b"entries: 0\n"])
    assert opening.trace_clock == b"[local] global"
    assert opening.uname.startswith(os.uname().sysname.encode())


def test_controller_gone_when_nobody_reads_the_pipe():
    read_end, write_end = os.pipe()
    try:
        assert _capture.controller_gone(write_end) is False
        os.close(read_end)
        assert _capture.controller_gone(write_end) is True
    finally:
        os.close(write_end)


def test_an_abandoned_window_stops_the_workload(tmp_path):
    process = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    with pytest.raises(_capture.Abandoned, match="controller's connection closed"):
        _capture.wait_window(None, process, None, None, interval=0.01, gone=lambda: True)
    _capture.stop_workload(process)
    assert process.returncode == -9
    # The whole session went, the background sleep included.
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
