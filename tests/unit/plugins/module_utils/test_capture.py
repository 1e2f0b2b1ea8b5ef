"""The capture on the target side: stats and loss, ring-buffer draining, the
trace.dat writer (read back by the collection's own reader and, where installed,
by trace-cmd), streamed compression, the workload's window, and whole trace_capture
tasks (_capture_run) on the shared fake tracefs: both formats, the ledger, and every
way a capture fails leaving the buffer and the work directory as they were."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import (
    _capture,
    _capture_formats,
    _capture_run,
    _compress,
    _tracedat_writer,
    _workload,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import CaptureError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture_spec import MODULE_SPEC
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir
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
    with pytest.raises(_tracedat_writer.TraceDatError, match="not whole 4096-byte pages"):
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
    # A full disk says so (not "Broken pipe"), naming the filesystem.
    with pytest.raises(_compress.CompressError, match="no space left on /dev .*No space left on device"):
        stream.write(b"data" * 100000)
        stream.finish()
    stream.abort()


def test_a_full_disk_under_a_spill_file_says_so(tmp_path):
    """The CPUs past the live compressors spill raw pages to files; a full disk there is
    named as such too (a spill "file" that is /dev/full), never a bare OSError. (The
    splice path, `take`, cannot be shown this way: splice(2) into /dev/full is EINVAL.)"""
    spill_path = tmp_path / "cpu40.raw"
    spill_path.symlink_to("/dev/full")
    spill = _compress.Spill(str(spill_path))
    with pytest.raises(_compress.CompressError, match="no space left on .*cpu40.raw.*No space left on device"):
        spill.write(b"p" * 4096)
    assert spill.raw_bytes == 0


# The files of the instance "cap" a capture reads, on top of the shared fake tracefs.
INSTANCE_FILES = {
    "tracing_on": "1\n",
    "trace": "# tracer: nop\n",
    "trace_clock": "[local] global\n",
    "set_event": "sched:sched_wakeup\nsched:sched_switch\nsyscalls:sys_enter_openat\n",
    "events/sched/enable": "1\n",
    "events/syscalls/enable": "X\n",
    "events/sched/sched_wakeup/format": WAKEUP_FORMAT,
    "events/header_page": HEADER_PAGE,
    "events/header_event": HEADER_EVENT,
    "per_cpu/cpu0/stats": STATS,
    "per_cpu/cpu1/stats": STATS,
}


def add_instance(fake_host, name="cap", files=None):
    fake_host.mount_tracefs()
    for relative, text in (INSTANCE_FILES if files is None else files).items():
        fake_host.write("tracing/instances/%s/%s" % (name, relative), text)
    return TracingDir(str(fake_host.tracing), name)


@pytest.fixture
def buffer(fake_host):
    return add_instance(fake_host)


def test_buffer_reads(buffer):
    assert _capture.cpus(buffer) == [0, 1]
    assert _capture.tracing_on(buffer) is True
    assert _capture.clock(buffer) == "local"
    assert _capture.where(buffer) == "instance cap"
    assert _capture.where(buffer.top()) == "the top level"
    assert _capture.stats(buffer, [0])[0]["overrun"] == 12
    events = _capture.enabled_events(buffer)
    assert _capture.summarise_events(buffer, events) == ["sched/*", "syscalls/sys_enter_openat"]
    assert _capture.event_format(buffer, "sched", "sched_wakeup") == WAKEUP_FORMAT.encode()
    assert _capture.event_format(buffer, "sched", "nope") == b""
    _capture.set_tracing_on(buffer, False)
    assert _capture.tracing_on(buffer) is False
    _capture.clear(buffer)
    assert os.path.getsize(buffer.path("trace")) == 0


def test_buffer_problems_are_capture_errors(fake_host):
    buffer = add_instance(fake_host, files={"tracing_on": "1\n"})
    with pytest.raises(_capture.CaptureError, match="cannot list .*per_cpu"):
        _capture.cpus(buffer)
    with pytest.raises(_capture.CaptureError, match="emptying the buffer"):
        _capture.clear(TracingDir(str(fake_host.tracing), "gone"))
    assert _capture.clock(buffer) == "local"  # no trace_clock: the kernel's default


def set_unread(buffer, cpu, unread):
    """The CPU's stats as the kernel shows them with `unread` bytes not yet read."""
    with open(buffer.path("per_cpu", "cpu%d" % cpu, "stats"), "w") as handle:
        handle.write(STATS.replace("bytes: 19968", "bytes: %d" % unread))


@pytest.mark.parametrize("splice", [True, False])
def test_drainer_moves_every_page(buffer, tmp_path, monkeypatch, splice):
    # cpu0: two full pages, then the page the kernel is writing on; cpu1: only that.
    pages = {0: [wakeup_page(1, 100), wakeup_page(2, 100), wakeup_page(3, 3)], 1: [wakeup_page(5, 2)]}
    for cpu, cpu_pages in pages.items():
        with open(buffer.path("per_cpu", "cpu%d" % cpu, "trace_pipe_raw"), "wb") as handle:
            handle.write(b"".join(cpu_pages))
    set_unread(buffer, 0, 2 * (PAGE - 16) + 3 * 40)
    set_unread(buffer, 1, 2 * 40)
    streams = [_compress.Stream("none", str(tmp_path / ("out%d" % cpu))) for cpu in (0, 1)]
    if not splice:
        monkeypatch.delattr(os, "splice", raising=False)  # Python < 3.10
    drainer = _capture.Drainer(buffer, [0, 1], streams, PAGE)
    assert drainer.splice is splice
    try:
        if not splice:
            # While recording, read(2) takes the pages the stats say are full, never the
            # one the kernel writes on (a regular file would hand out everything).
            assert drainer.drain() == 2 * PAGE
            set_unread(buffer, 0, 3 * 40)  # what is left: the kernel's page
            assert drainer.drain() == 0
            assert (tmp_path / "out0").read_bytes() == b"".join(pages[0][:2])
        moved = drainer.drain(final=True)
    finally:
        drainer.close()
        _compress.finish_all(streams)
    assert moved == (4 if splice else 2) * PAGE
    for cpu, cpu_pages in pages.items():
        assert (tmp_path / ("out%d" % cpu)).read_bytes() == b"".join(cpu_pages)
        assert streams[cpu].raw_bytes == len(b"".join(cpu_pages))


def test_drainer_keeps_to_its_limit_and_drops_cpus_without_a_buffer(buffer, tmp_path, monkeypatch):
    for cpu in (0, 1):
        with open(buffer.path("per_cpu", "cpu%d" % cpu, "trace_pipe_raw"), "wb") as handle:
            handle.write(wakeup_page(1, 100) * 3)
    streams = [_compress.Stream("none", str(tmp_path / ("out%d" % cpu))) for cpu in (0, 1)]
    monkeypatch.delattr(os, "splice", raising=False)  # (splice gives EAGAIN there: the final read(2) finds out)
    drainer = _capture.Drainer(buffer, [0, 1], streams, PAGE)
    real_read = os.read

    def read(fd, size):
        if fd == drainer.fds[1]:  # cpu1 never came online: the kernel has no buffer for it
            raise OSError(errno.ENODEV, "No such device")
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", read)
    try:
        assert drainer.drain(final=True, limit=2 * PAGE + 100) == 2 * PAGE  # whole pages only
        assert drainer.no_buffer == []  # cpu1 was not read: the limit was used up
        assert drainer.drain(final=True) == PAGE
        assert drainer.no_buffer == [1] and drainer.fds[1] is None
    finally:
        drainer.close()
        _compress.finish_all(streams)
    assert streams[0].raw_bytes == 3 * PAGE and streams[1].raw_bytes == 0


def test_closing_and_opening_layout(buffer):
    opening = _capture_formats.opening_layout(buffer, _capture.enabled_events(buffer), kallsyms=False, page_size=PAGE)
    assert opening.systems == [("sched", [WAKEUP_FORMAT.encode()])]
    assert opening.kallsyms == b""
    assert opening.header_page == HEADER_PAGE.encode()
    _capture_formats.closing(opening, buffer, [b"entries: 0\n"])
    assert opening.trace_clock == b"[local] global"
    assert opening.uname.startswith(os.uname().sysname.encode())


def test_controller_gone_when_nobody_reads_the_pipe():
    read_end, write_end = os.pipe()
    try:
        assert _workload.controller_gone(write_end) is False
        os.close(read_end)
        assert _workload.controller_gone(write_end) is True
    finally:
        os.close(write_end)
    assert _workload.controller_gone(write_end) is False  # a closed descriptor is no answer


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper():
    """This process adopts its orphaned descendants for the test, so that the test can
    wait for them. Without it a killed grandchild goes to PID 1, which reaps it when
    it gets round to it: until then the process group still exists (a zombie)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d" % ctypes.get_errno())
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def reap_group(pgid):
    """Wait for every adopted process of the group; returns their wait statuses."""
    statuses = []
    while True:
        try:
            _pid, status = os.waitpid(-pgid, 0)
        except ChildProcessError:
            return statuses
        statuses.append(status)


def test_an_abandoned_window_stops_the_workload(subreaper):
    process = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    with pytest.raises(_workload.Abandoned, match="controller's connection closed"):
        _workload.wait_window(None, process, None, None, interval=0.01, gone=lambda: True)
    _workload.stop_workload(process)
    assert process.returncode == -9
    # The background sleep (when the shell got to start it) was killed with the group:
    # it is ours to reap now, and it died of SIGKILL, not of old age.
    for status in reap_group(process.pid):
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    # The whole session went, the background sleep included.
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


# ---------------------------------------------------------------- a whole task (_capture_run)

fake_pages = pytest.mark.skipif(os.sysconf("SC_PAGE_SIZE") != PAGE, reason="the fake pages are 4 KiB")


@pytest.fixture
def host(fake_host, tmp_path):
    """The instance `cap` with two CPUs' worth of pages waiting in trace_pipe_raw."""
    add_instance(fake_host)
    for cpu, pages in enumerate(([wakeup_page(1000, 5), wakeup_page(9000, 2)], [wakeup_page(500, 4)])):
        (fake_host.tracing / ("instances/cap/per_cpu/cpu%d/trace_pipe_raw" % cpu)).write_bytes(b"".join(pages))
    (tmp_path / "work").mkdir()
    return fake_host


def params(host, tmp_path, **overrides):
    """The module's parameters, defaults filled in as AnsibleModule would."""
    values = {name: spec.get("default") for name, spec in MODULE_SPEC.items()}
    values.update(
        instance="cap",
        tracefs_path=str(host.tracing),
        ledger_path=str(tmp_path / "ledger.json"),
        work_dir=str(tmp_path / "work"),
        compress="gzip",
        kallsyms=False,
        duration=0.01,
        max_bytes=512 << 20,
        file_version=6,
    )
    values.update(overrides)
    return values


NO_ANCHOR = "no wall-clock anchor"


def besides_anchor(warnings):
    """The warnings but the one about the anchor: a fake tracefs has no trace_marker
    that puts its markers into the pages."""
    assert any(NO_ANCHOR in warning for warning in warnings), warnings
    return [warning for warning in warnings if NO_ANCHOR not in warning]


def ledger(tmp_path):
    path = tmp_path / "ledger.json"
    return json.loads(path.read_text())["entries"] if path.exists() else []


def tracing_on(host):
    return (host.tracing / "instances/cap/tracing_on").read_text().strip()


@fake_pages
def test_a_dat_window_reads_the_ring_buffer_into_a_trace_dat(host, tmp_path):
    result, warnings = _capture_run.capture(params(host, tmp_path))
    assert besides_anchor(warnings) == []
    assert result["file"] == str(tmp_path / "work" / "trace.dat.gz") and result["file_name"] == "trace.dat"
    assert result["compress"] == "gzip" and result["sha256"] is None and result["format"] == "dat"
    # The kernel's count: no "read events" moved in the fake, so the entries left.
    assert result["events"] == 2 * 359 and result["events_per_cpu"] == {"0": 359, "1": 359}
    assert result["lost_events"] == {"0": 0, "1": 0}
    assert result["enabled_events"] == ["sched/*", "syscalls/sys_enter_openat"]
    assert result["clock_anchor"]["trace"] is None and result["clock_anchor"]["uncertainty_ns"] is None
    assert result["clock_anchor"]["clock"] == "local" == result["trace_clock"]
    assert set(result["timings"]) == {"before", "window", "during", "after", "compress_cpu", "cpu"}
    assert result["timings"]["cpu"] >= 0.0
    assert "rc" not in result
    _compress.decompress("gzip", result["file"], str(tmp_path / "trace.dat"))
    assert result["raw_bytes"] == os.path.getsize(tmp_path / "trace.dat")
    assert _tracedat_reader.summary(str(tmp_path / "trace.dat"))["events"] == 11
    # Nothing left behind but the file; tracing_on and the ledger as they were.
    assert os.listdir(tmp_path / "work") == ["trace.dat.gz"]
    assert tracing_on(host) == "1" and ledger(tmp_path) == []
    assert (host.tracing / "instances/cap/trace").read_text() == ""  # cleared when it opened


def test_a_text_window_runs_the_workload(host, tmp_path):
    result, warnings = _capture_run.capture(
        params(host, tmp_path, format="text", compress="none", duration=None, command="echo out; echo err >&2")
    )
    assert besides_anchor(warnings) == []
    assert (result["cmd"], result["rc"], result["stdout"], result["stderr"]) == (
        "echo out; echo err >&2",
        0,
        "out\n",
        "err\n",
    )
    assert result["file"] == str(tmp_path / "work" / "trace.txt") and result["sha256"] == _compress.sha256(
        result["file"]
    )
    assert result["events"] == 2 * 359  # the entries in the buffer: text reads consume none
    assert os.listdir(tmp_path / "work") == ["trace.txt"]


# About half a second of CPU in a python3 of its own.
BURN = "python3 -c 'x = 0\nfor i in range(10**7): x += i'"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_the_workload_is_reaped_with_its_cpu_time(tmp_path):
    burner = _workload.Workload(BURN, str(tmp_path))
    before = children_cpu()
    assert burner.wait(60) == 0 and burner.poll() == 0
    # wait4(2) gave the shell's CPU and its python's, the same as this process's children grew by.
    assert burner.cpu >= 0.2 and abs(children_cpu() - before - burner.cpu) < 0.01
    sleeper = _workload.Workload("sleep 60", str(tmp_path))
    assert sleeper.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(0.01)
    sleeper.stop()
    assert sleeper.returncode == -signal.SIGKILL and sleeper.cpu < 0.2
    for workload in (burner, sleeper):
        workload.close()


@fake_pages
def test_the_capture_cpu_leaves_out_the_workload(host, tmp_path):
    """timings.cpu is this process's CPU and its reaped children's from just before the
    window opened until the file was ready, without the workload's: the CPU-burning
    workload's half second is in what this process's children used, not in it."""
    before = children_cpu()
    result, _warnings = _capture_run.capture(params(host, tmp_path, duration=None, command=BURN))
    burned = children_cpu() - before  # the workload and the compressors
    assert result["rc"] == 0 and burned >= 0.2
    assert 0.0 < result["timings"]["cpu"] < burned / 2
    # The capture's cost is about the same without a workload that burns CPU.
    quiet, _warnings = _capture_run.capture(params(host, tmp_path, duration=None, command="true"))
    assert result["timings"]["cpu"] < quiet["timings"]["cpu"] + burned / 4


def test_loss_and_no_events_are_warnings(host, tmp_path):
    (host.tracing / "instances/cap/set_event").write_text("")
    stats = host.tracing / "instances/cap/per_cpu/cpu1/stats"
    # The workload stands in for a kernel that overran while the window was open.
    command = "sed -i 's/^overrun: 12/overrun: 20/' %s" % stats
    result, warnings = _capture_run.capture(params(host, tmp_path, duration=None, command=command))
    assert result["lost_events"] == {"0": 0, "1": 8}
    assert besides_anchor(warnings) == [
        "no events are enabled in instance cap: the capture holds only what a tracer recorded",
        "instance cap lost 8 events during the window (per CPU: cpu0=0, cpu1=8): the reader or the "
        "buffer could not keep up; a bigger buffer_size_kb helps",
    ]
    text_result, text_warnings = _capture_run.capture(params(host, tmp_path, format="text"))
    assert besides_anchor(text_warnings) == [] and text_result["enabled_events"] == []


def test_started_then_collected(host, tmp_path):
    (host.tracing / "instances/cap/tracing_on").write_text("0\n")
    started, warnings = _capture_run.capture(params(host, tmp_path, state="started", duration=None))
    assert warnings == [] and started["started"].endswith("Z")
    assert started["clock_anchor"]["trace"] is None  # its markers are found when it is collected
    assert "file" not in started and os.listdir(tmp_path / "work") == []
    assert tracing_on(host) == "1"
    assert sorted(entry["kind"] for entry in ledger(tmp_path)) == ["capture", "knob"]
    with pytest.raises(CaptureError, match="instance cap already has a capture window open .*session 'default'"):
        _capture_run.capture(params(host, tmp_path, state="started", duration=None))

    collected, _warnings = _capture_run.capture(params(host, tmp_path, state="collected", duration=None))
    assert collected["started"] == started["started"] and collected["events"] == 2 * 359
    assert tracing_on(host) == "0" and ledger(tmp_path) == []
    with pytest.raises(CaptureError, match="no capture window is open in instance cap"):
        _capture_run.capture(params(host, tmp_path, state="collected", duration=None))


def test_collected_does_not_count_the_wait_for_an_armed_window(host, tmp_path, monkeypatch):
    """The wait for an armed window to close is the window's time: the task's own
    timings and CPU start once it has closed."""
    (host.tracing / "instances/cap/tracing_on").write_text("0\n")
    _capture_run.capture(params(host, tmp_path, state="started", duration=None))
    waited = 1000.0  # a fake clock: the wait takes 1000 s of it and no real time
    clock = {"skew": 0.0}

    class Clock:
        def __getattr__(self, name):
            return getattr(time, name)

        def monotonic(self):
            return time.monotonic() + clock["skew"]

    started_facts = _capture_run.Window.started_facts

    def waiting(window):
        clock["skew"] += waited
        return started_facts(window)

    monkeypatch.setattr(_capture_run, "time", Clock())
    monkeypatch.setattr(_capture_run.Window, "started_facts", waiting)
    collected, _warnings = _capture_run.capture(params(host, tmp_path, state="collected", duration=None))
    assert clock["skew"] == waited  # the wait happened
    assert collected["timings"]["before"] < waited
    assert collected["timings"]["after"] < waited


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(command="echo failing >&2; exit 3", duration=None), r"exited with rc 3 \(allowed_rc: \[0\]\).*failing"),
        (dict(command="sleep 5", duration=None, timeout=0.05), "ran longer than timeout=0.05 seconds"),
    ],
)
def test_a_failed_window_keeps_nothing(host, tmp_path, overrides, message):
    with pytest.raises(CaptureError, match=message):
        _capture_run.capture(params(host, tmp_path, **overrides))
    assert os.listdir(tmp_path / "work") == []
    assert tracing_on(host) == "1" and ledger(tmp_path) == []


def test_an_abandoned_window_removes_the_work_directory(host, tmp_path, monkeypatch):
    def abandon(*_args, **_kwargs):
        (tmp_path / "work" / "trace.dat.gz").write_bytes(b"half")  # a file nobody will fetch
        raise _workload.Abandoned("the controller's connection closed while the window was open")

    monkeypatch.setattr(_capture_run, "wait_window", abandon)
    with pytest.raises(_workload.Abandoned):
        _capture_run.capture(params(host, tmp_path))
    assert not (tmp_path / "work").exists()
    assert tracing_on(host) == "1" and ledger(tmp_path) == []


def test_os_errors_become_capture_errors(host, tmp_path):
    trace = host.tracing / "instances/cap/trace"
    trace.unlink()
    trace.mkdir()  # `trace` cannot be copied
    with pytest.raises(CaptureError, match="Is a directory"):
        _capture_run.capture(params(host, tmp_path, format="text", clear=False))
    assert tracing_on(host) == "1" and ledger(tmp_path) == []
    with pytest.raises(CaptureError, match="work_dir=.* is not a directory"):
        _capture_run.capture(params(host, tmp_path, work_dir=str(tmp_path / "nowhere")))


def test_without_a_work_directory_one_is_made(host, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "work"))
    monkeypatch.setattr("tempfile.tempdir", None)
    result, _warnings = _capture_run.capture(params(host, tmp_path, work_dir=None, compress="none"))
    assert os.path.dirname(os.path.dirname(result["file"])) == str(tmp_path / "work")


def test_a_buffer_without_per_cpu_is_refused(fake_host, tmp_path):
    files = {name: text for name, text in INSTANCE_FILES.items() if not name.startswith("per_cpu")}
    add_instance(fake_host, files=files)
    (tmp_path / "work").mkdir()
    with pytest.raises(CaptureError, match="cannot list"):
        _capture_run.capture(params(fake_host, tmp_path))


# ---------------------------------------------------------------- hostile hosts and edge inputs (issue 12)


def untouched(host, tmp_path):
    """Nothing of the host changed: tracing_on, the buffer (not emptied), the ledger,
    and no file left in the work directory."""
    return (
        tracing_on(host) == "1"
        and (host.tracing / "instances/cap/trace").read_text() == "# tracer: nop\n"
        and ledger(tmp_path) == []
        and os.listdir(tmp_path / "work") == []
    )


def set_online(host, monkeypatch, text):
    host.write("sys/devices/system/cpu/online", text)
    monkeypatch.setattr(_capture, "SYSFS_CPU", str(host.root / "sys/devices/system/cpu"))


@fake_pages
def test_offline_cpus_keep_their_slots_and_are_reported(host, tmp_path, monkeypatch):
    # Four possible CPUs, two online: reading cpu2 or cpu3 would give ENODEV.
    for cpu in (2, 3):
        host.write("tracing/instances/cap/per_cpu/cpu%d/stats" % cpu, STATS.replace("entries: 359", "entries: 0"))
        host.write("tracing/instances/cap/per_cpu/cpu%d/trace_pipe_raw" % cpu, "")
    set_online(host, monkeypatch, "0-1\n")
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *args: opened.append(str(path)) or real_open(path, *args))
    result, warnings = _capture_run.capture(params(host, tmp_path))
    assert besides_anchor(warnings) == []
    assert result["cpus_offline"] == [2, 3]
    assert result["events_per_cpu"] == {"0": 359, "1": 359} and result["lost_events"] == {"0": 0, "1": 0}
    assert not [path for path in opened if "cpu2" in path or "cpu3" in path]
    _compress.decompress("gzip", result["file"], str(tmp_path / "trace.dat"))
    with _tracedat_reader.TraceDat(str(tmp_path / "trace.dat")) as dat:
        assert dat.cpus == 4  # CPU numbers stay right: empty slots for cpu2 and cpu3
    assert sorted(read_back(tmp_path / "trace.dat")) == sorted([(0, 42)] * 7 + [(1, 42)] * 4)


@fake_pages
def test_a_cpu_without_a_ring_buffer_is_reported_not_fatal(host, tmp_path, monkeypatch):
    """Where sysfs cannot say which CPUs are online, a read giving ENODEV does."""
    monkeypatch.setattr(_capture, "SYSFS_CPU", str(tmp_path / "nowhere"))
    monkeypatch.delattr(os, "splice", raising=False)
    real_read = os.read
    cpu1 = str(host.tracing / "instances/cap/per_cpu/cpu1/trace_pipe_raw")
    fds = {}
    real_open = os.open

    def fake_open(path, *args):
        fd = real_open(path, *args)
        fds[fd] = str(path)
        return fd

    def read(fd, size):
        if fds.get(fd) == cpu1:
            raise OSError(errno.ENODEV, "No such device")
        return real_read(fd, size)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "read", read)
    result, _warnings = _capture_run.capture(params(host, tmp_path))
    assert result["cpus_offline"] == [1] and list(result["events_per_cpu"]) == ["0"]


@fake_pages
def test_the_budget_closes_the_window_early(host, tmp_path):
    # Three pages are waiting; the budget holds two.
    result, warnings = _capture_run.capture(params(host, tmp_path, max_bytes=2 * PAGE + 100))
    assert result["closed_by"] == "max_bytes" and result["budget_reached"] is True
    assert besides_anchor(warnings) == [
        "instance cap: the capture reached max_bytes=8292 (0.0 MiB of trace data) and stopped there; what "
        "came later is not in it (raise max_bytes for a longer capture)"
    ]
    _compress.decompress("gzip", result["file"], str(tmp_path / "trace.dat"))
    assert len(read_back(tmp_path / "trace.dat")) == 7  # cpu0's two pages; cpu1's did not fit
    assert tracing_on(host) == "1" and ledger(tmp_path) == []


def test_the_budget_cuts_a_text_capture(host, tmp_path):
    (host.tracing / "instances/cap/trace").write_text("x" * 5000)
    result, warnings = _capture_run.capture(
        params(host, tmp_path, format="text", compress="none", clear=False, max_bytes=4096)
    )
    assert result["budget_reached"] is True and result["closed_by"] == "duration"
    assert os.path.getsize(result["file"]) == 4096 and "max_bytes=4096" in besides_anchor(warnings)[0]


class StatVfs:
    def __init__(self, free, size=100 << 30):
        self.f_frsize, self.f_blocks, self.f_bavail = 4096, size // 4096, free // 4096


def test_a_full_filesystem_is_refused_before_the_buffer_is_touched(host, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "statvfs", lambda _path: StatVfs(free=200 << 20))
    with pytest.raises(CaptureError, match=r"only 200.0 MiB free on / .*leaves at least 1024.0 MiB free"):
        _capture_run.capture(params(host, tmp_path))
    assert untouched(host, tmp_path)


@fake_pages
def test_the_window_closes_when_the_filesystem_fills(host, tmp_path, monkeypatch):
    frees = iter([10 << 30] * 2 + [512 << 20] * 100)  # plenty at the start, then down to the reserve
    monkeypatch.setattr(os, "statvfs", lambda _path: StatVfs(free=next(frees)))
    result, warnings = _capture_run.capture(params(host, tmp_path, duration=5))
    assert result["closed_by"] == "free_space" and result["seconds"] < 4
    assert "to leave 1024.0 MiB free on /" in besides_anchor(warnings)[0]


def test_compress_zstd_without_zstd_is_refused_before_the_buffer_is_touched(host, tmp_path, monkeypatch):
    monkeypatch.setattr(_compress.shutil, "which", lambda _name: None)
    with pytest.raises(_compress.CompressError, match="compress=zstd: there is no zstd program on this host"):
        _capture_run.capture(params(host, tmp_path, compress="zstd"))
    assert untouched(host, tmp_path)


def test_a_second_window_on_a_buffer_is_refused(host, tmp_path):
    _capture_run.capture(params(host, tmp_path, state="started", duration=None, session="other"))
    (host.tracing / "instances/cap/trace").write_text("# tracer: nop\n")  # what the open window holds
    entries = ledger(tmp_path)
    for state in ("captured", "started"):
        with pytest.raises(
            CaptureError,
            match=r"instance cap already has a capture window open \(state=started by session 'other' at .*Z\)",
        ):
            _capture_run.capture(params(host, tmp_path, state=state, duration=0.01 if state == "captured" else None))
    with pytest.raises(CaptureError, match="was started by session 'other', not 'default'"):
        _capture_run.capture(params(host, tmp_path, state="collected", duration=None))
    assert ledger(tmp_path) == entries and (host.tracing / "instances/cap/trace").read_text() == "# tracer: nop\n"
    result, _warnings = _capture_run.capture(params(host, tmp_path, state="collected", duration=None, session="other"))
    assert result["closed_by"] == "collected" and ledger(tmp_path) == []


def test_a_sub_buffer_size_the_headers_disagree_with_is_refused(host, tmp_path):
    (host.tracing / "instances/cap/buffer_subbuf_size_kb").write_text("8\n")
    with pytest.raises(CaptureError, match="pages are 8192 bytes .* events/header_page describes 4096-byte pages"):
        _capture_run.capture(params(host, tmp_path))
    assert untouched(host, tmp_path)


def test_the_sub_buffer_size_is_the_page_size(buffer):
    assert _capture.page_size(buffer) == 4096 or os.sysconf("SC_PAGE_SIZE") != 4096
    (Path(buffer.path("buffer_subbuf_size_kb"))).write_text("8\n")
    Path(buffer.path("events", "header_page")).write_text(HEADER_PAGE.replace("size:4080", "size:8176"))
    assert _capture.page_size(buffer) == 8192


def test_data_that_is_not_whole_pages_is_a_clear_error(host, tmp_path):
    (host.tracing / "instances/cap/per_cpu/cpu0/trace_pipe_raw").write_bytes(wakeup_page(1, 1) + b"x")
    with pytest.raises(TracefleetError, match="cpu0's ring-buffer data is 4097 bytes, not whole 4096-byte pages"):
        _capture_run.capture(params(host, tmp_path))
    assert tracing_on(host) == "1" and ledger(tmp_path) == [] and os.listdir(tmp_path / "work") == []


def test_a_cleanup_failure_does_not_hide_the_real_error(host, tmp_path, monkeypatch):
    def broken_restore(*_args, **_kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_capture_run.Window, "restore", broken_restore)
    with pytest.raises(
        CaptureError,
        match=r"ran longer than timeout=0.05 seconds .*\(and cleaning up failed too: putting tracing_on back: "
        r"\[Errno 5\] Input/output error\)$",
    ):
        _capture_run.capture(params(host, tmp_path, duration=None, command="sleep 5", timeout=0.05))
    # Alone, a cleanup failure is the error.
    with pytest.raises(CaptureError, match=r"^cleaning up after the capture failed: putting tracing_on back"):
        _capture_run.capture(params(host, tmp_path))


def test_the_workloads_background_jobs_end_with_the_window(host, tmp_path, subreaper):
    result, _warnings = _capture_run.capture(
        params(host, tmp_path, duration=None, command="sleep 60 >/dev/null 2>&1 & echo $!")
    )
    pid = int(result["stdout"])
    deadline = time.monotonic() + 10
    while True:  # ours to reap (the subreaper): it must have died of SIGKILL, not of old age
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped:
            break
        assert time.monotonic() < deadline, "the background job outlived the window"
        time.sleep(0.01)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@fake_pages
def test_without_splice_a_capture_is_the_same(host, tmp_path, monkeypatch):
    """Python 3.8/3.9 (no os.splice): the same trace.dat, and no read of the page the
    kernel writes on while the window is open (the stats say nothing is full)."""
    for cpu in (0, 1):
        set_unread(TracingDir(str(host.tracing), "cap"), cpu, 100)
    monkeypatch.delattr(os, "splice", raising=False)
    reads = []
    real_read = _capture.Drainer._read

    def spy(self, fd, sink, cpu, final, limit, watcher=None):
        moved = real_read(self, fd, sink, cpu, final, limit, watcher)
        reads.append((final, moved))
        return moved

    monkeypatch.setattr(_capture.Drainer, "_read", spy)
    result, _warnings = _capture_run.capture(params(host, tmp_path))
    assert [moved for final, moved in reads if not final and moved] == []
    assert sum(moved for final, moved in reads if final) == 3 * PAGE
    _compress.decompress("gzip", result["file"], str(tmp_path / "trace.dat"))
    assert len(read_back(tmp_path / "trace.dat")) == 11


@fake_pages
def test_512_cpus_with_a_bounded_number_of_processes_and_files(fake_host, tmp_path, monkeypatch):
    cpus = 512
    files = {name: text for name, text in INSTANCE_FILES.items() if not name.startswith("per_cpu")}
    buffer = add_instance(fake_host, files=files)
    for cpu in range(cpus):
        directory = fake_host.tracing / ("instances/cap/per_cpu/cpu%d" % cpu)
        directory.mkdir(parents=True)
        (directory / "stats").write_text(STATS.replace("bytes: 19968", "bytes: 0"))
        (directory / "trace_pipe_raw").write_bytes(wakeup_page(1000 + cpu, 2, pid=cpu))
    set_online(fake_host, monkeypatch, "0-%d\n" % (cpus - 1))
    (tmp_path / "work").mkdir()
    compressors = []
    real_popen = _compress.subprocess.Popen

    def popen(argv, *args, **kwargs):
        compressors.append(argv)
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(_compress.subprocess, "Popen", popen)
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Less than the 512 trace_pipe_raw files and the live compressors' pipes need: the
    # capture raises its soft limit (the hard one allows it).
    needed = cpus + 2 * _capture_formats.LIVE_COMPRESSORS + _capture_formats.FD_SLACK
    if limits[1] != resource.RLIM_INFINITY and limits[1] < needed:
        pytest.skip("the hard open-file limit is below %d" % needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (600, limits[1]))
    try:
        result, _warnings = _capture_run.capture(params(fake_host, tmp_path))
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == needed
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    # open, close, one per live CPU, one for the spilled ones
    assert len(compressors) == 2 + _capture_formats.LIVE_COMPRESSORS + 1
    assert result["cpus_offline"] == [] and len(result["events_per_cpu"]) == cpus
    _compress.decompress("gzip", result["file"], str(tmp_path / "trace.dat"))
    events = read_back(tmp_path / "trace.dat")
    assert sorted(events) == sorted((cpu, cpu) for cpu in range(cpus) for _twice in range(2))
    assert os.listdir(tmp_path / "work") == ["trace.dat.gz"] and buffer.instance == "cap"


def test_too_few_open_files_is_refused_before_the_window(host, tmp_path, monkeypatch):
    monkeypatch.setattr(_capture_formats, "FD_SLACK", 1 << 40)
    with pytest.raises(CaptureError, match=r"reading 2 CPUs needs about \d+ open files.*RLIMIT_NOFILE"):
        _capture_run.capture(params(host, tmp_path))
    assert untouched(host, tmp_path)
