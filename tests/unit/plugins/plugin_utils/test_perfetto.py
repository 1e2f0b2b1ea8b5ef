# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Perfetto export: each .pftrace decoded with Perfetto's official protobuf
definitions and compared with `trace-cmd report` of its trace.dat (and with the
independent reader); the archive and its manifest as Perfetto documents them."""

from __future__ import annotations

import builtins
import collections
import hashlib
import io
import json
import os
import shutil
import tarfile

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _clock_anchor, _perfetto, _perfetto_archive
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._perfetto import PerfettoError, Task
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._run_dir import RunDirError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._tracedat_reader import TraceDat, summary

pb2 = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

S = 1_000_000_000
# The fixtures' capture (fixtures/README.md): its anchor as the manifest recorded it.
FIXTURE_ANCHOR = {"wall": 1796210731.2977355, "trace": 424.169736, "clock": "local"}
CLOCK_NAMES = {"REALTIME", "REALTIME_COARSE", "MONOTONIC", "MONOTONIC_COARSE", "MONOTONIC_RAW", "BOOTTIME"}


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def dat_capture(run_dir, host_dir, source, name="trace", anchor=None, clock="local", **extra):
    """Put a trace.dat into the run as `host_dir/<name>.dat`; its manifest entry."""
    os.makedirs(os.path.join(run_dir, host_dir), exist_ok=True)
    path = os.path.join(run_dir, host_dir, name + ".dat")
    shutil.copyfile(source, path)
    entry = {
        "name": name,
        "format": "dat",
        "trace_clock": clock,
        "clock_anchor": FIXTURE_ANCHOR if anchor is None else anchor,
        "files": [{"path": "%s/%s.dat" % (host_dir, name), "bytes": os.path.getsize(path), "sha256": sha256(path)}],
    }
    entry.update(extra)
    return entry


def write_manifest(run_dir, hosts, run_id="20261202T112531Z-0a1b2c3d"):
    manifest = {"format": 1, "run_id": run_id, "created": "2026-12-02T11:25:31Z", "hosts": hosts}
    with open(os.path.join(run_dir, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)


@pytest.fixture
def run_dir(tmp_path, real_tracedat):
    """Two hosts: web01 with the real v7 (zstd) capture, db02 with the real v6 one,
    whose anchor says its wall clock is 1.5 s ahead."""
    run = tmp_path / "20261202T112531Z-0a1b2c3d"
    run.mkdir()
    later = dict(FIXTURE_ANCHOR, wall=FIXTURE_ANCHOR["wall"] + 1.5)
    write_manifest(
        str(run),
        {
            "web01": {"dir": "web01", "captures": [dat_capture(str(run), "web01", real_tracedat["v7-zstd"])]},
            "db02": {"dir": "db02", "captures": [dat_capture(str(run), "db02", real_tracedat["v6"], anchor=later)]},
        },
    )
    return str(run)


def members(archive) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def packets(data: bytes) -> list:
    trace = pb2.Trace()
    trace.ParseFromString(data)
    return list(trace.packet)


def ftrace_events(data: bytes) -> list[tuple[int, object]]:
    """(cpu, FtraceEvent) of every event in a .pftrace, in file order."""
    return [
        (packet.ftrace_events.cpu, event)
        for packet in packets(data)
        if packet.HasField("ftrace_events")
        for event in packet.ftrace_events.event
    ]


def event_name(event) -> str:
    kind = event.WhichOneof("event")
    return event.generic.event_name if kind == "generic" else kind


def event_fields(event) -> dict:
    """An event's fields by name: a typed event's set fields, a generic one's fields."""
    kind = event.WhichOneof("event")
    if kind == "generic":
        return {field.name: getattr(field, field.WhichOneof("value")) for field in event.generic.field}
    return {descriptor.name: value for descriptor, value in getattr(event, kind).ListFields()}


# ---------------------------------------------------------------- the checks of issue 13


def test_every_capture_has_the_events_trace_cmd_reports(run_dir, real_tracedat, report_events):
    """Decoding each .pftrace with the official definitions gives the same number of
    events, per event name, as `trace-cmd report` of its trace.dat."""
    result = _perfetto_archive.export(run_dir)
    assert result["problems"] == [] and result["changed"]
    files = members(result["path"])
    assert sorted(files) == ["db02.pftrace", "perfetto_manifest.json", "web01.pftrace"]
    for member, source in (("web01.pftrace", "v7-zstd"), ("db02.pftrace", "v6")):
        ours = collections.Counter(event_name(event) for _cpu, event in ftrace_events(files[member]))
        reader = {
            name.split(":", 1)[1]: count for name, count in summary(real_tracedat[source])["events_by_name"].items()
        }
        assert ours == reader
        assert sum(ours.values()) == 971
        entry = next(item for item in result["files"] if item["path"] == member)
        assert entry["events_by_name"] == dict(ours) and entry["events"] == 971
        theirs = report_events(real_tracedat[source])
        if theirs is None:
            pytest.skip("trace-cmd is not installed: the counts were checked against the reader only")
        assert ours == collections.Counter(name for _cpu, _stamp, _pid, name in theirs)


def test_every_field_agrees_with_trace_cmd_report(run_dir, real_tracedat, raw_events, raw_fields):
    """Every event's timestamp, CPU, pid and fields in web01.pftrace against `trace-cmd
    report -R` of its trace.dat; and three events checked by their values."""
    files = members(_perfetto_archive.export(run_dir)["path"])
    ours = sorted(ftrace_events(files["web01.pftrace"]), key=lambda item: (item[1].timestamp, item[0]))
    theirs = raw_events(real_tracedat["v7-zstd"])
    if theirs is None:
        pytest.skip("trace-cmd is not installed: no cross-check")
    assert len(ours) == len(theirs) == 971
    with TraceDat(real_tracedat["v7-zstd"]) as dat:
        order = {
            event.name: [plan.name for plan in dat.decoder(event_id).plans] for event_id, event in dat.formats.items()
        }
    typed_fields_compared = generic_fields_compared = 0
    for (cpu, event), (their_cpu, stamp, pid, name, text) in zip(ours, theirs):
        assert (cpu, event.timestamp, event.pid, event_name(event)) == (their_cpu, stamp, pid, name)
        fields = event_fields(event)
        split = raw_fields.split(text, order[name])
        assert split is not None
        for field, value in fields.items():
            assert raw_fields.agree(value, split[field], 8), (name, field, value, split[field])
        if event.WhichOneof("event") == "generic":
            # A generic event carries every field of the event.
            assert list(fields) == list(split)
            generic_fields_compared += len(fields)
        else:
            typed_fields_compared += len(fields)
    assert typed_fields_compared > 1000 and generic_fields_compared > 1000

    by_name = {}
    for _cpu, event in ours:
        by_name.setdefault(event_name(event), event)
    switch = by_name["sched_switch"].sched_switch
    assert (switch.prev_comm, switch.prev_pid, switch.prev_prio, switch.prev_state) == ("python3", 13398, 120, 2)
    assert (switch.next_comm, switch.next_pid, switch.next_prio) == ("ansible-playboo", 13206, 120)
    assert event_fields(by_name["pfbash"]) == {
        "__probe_ip": 0x55A8A2D83FE0,
        "cmd": "cat /etc/hostname > /dev/null; echo hello-$i > /sys/kernel/tracing/instances/pffix/trace_marker",
        "flags": 20,
        "from": 0x55A8A2DD2090,
    }
    assert event_fields(by_name["print"]) == {"ip": 0xFFFFFFFF814AA7C1, "buf": "hello-\n"}
    exec_ = by_name["sched_process_exec"].sched_process_exec
    assert (exec_.filename, exec_.pid, exec_.old_pid) == ("/bin/sh", 13399, 13399)


def test_the_manifest_is_perfettos_documented_format(run_dir):
    result = _perfetto_archive.export(run_dir)
    files = members(result["path"])
    raw = files["perfetto_manifest.json"]
    # Trace processor finds it by content: `{"perfetto_manifest"`, whitespace ignored.
    assert b"".join(raw.split()).startswith(b'{"perfetto_manifest"')
    document = json.loads(raw)
    assert list(document) == ["perfetto_manifest"]
    manifest = document["perfetto_manifest"]
    assert manifest["version"] == 1
    assert set(manifest) <= {"version", "trace_time", "files", "attributes"}
    paths = [entry["path"] for entry in manifest["files"]]
    assert sorted(paths) == ["db02.pftrace", "web01.pftrace"]
    assert all(path in files for path in paths)
    assert {entry["path"]: entry["machine"]["name"] for entry in manifest["files"]} == {
        "db02.pftrace": "db02",
        "web01.pftrace": "web01",
    }
    assert manifest["trace_time"]["clock"] in CLOCK_NAMES and manifest["trace_time"]["file"] in paths
    for entry in manifest["files"]:
        assert set(entry) <= {"path", "machine", "clocks"}
        if "clocks" in entry:
            clocks = entry["clocks"]
            assert clocks["clock"] in CLOCK_NAMES and clocks["sync_to"]["clock"] in CLOCK_NAMES
            assert clocks["sync_to"]["file"] in paths and clocks["sync_to"]["file"] != entry["path"]
            assert isinstance(clocks["offset_ns"], int)
    attributes = manifest["attributes"]
    assert attributes["tracefleet.run_id"] == "20261202T112531Z-0a1b2c3d"
    assert all(isinstance(value, (str, int)) and key for key, value in attributes.items())


def test_each_trace_is_placed_on_its_hosts_wall_clock(run_dir):
    files = members(_perfetto_archive.export(run_dir)["path"])
    snapshots = {}
    for member in ("web01.pftrace", "db02.pftrace"):
        first = packets(files[member])[0]
        assert first.HasField("clock_snapshot")
        snapshots[member] = {clock.clock_id: clock.timestamp for clock in first.clock_snapshot.clocks}
    boottime, realtime = _perfetto.BUILTIN_CLOCK_BOOTTIME, _perfetto.BUILTIN_CLOCK_REALTIME
    assert snapshots["web01.pftrace"] == {
        boottime: 424_169_736_000,
        realtime: _clock_anchor.seconds_to_ns(1796210731.2977355),
    }
    # The same trace clock reading, 1.5 s later on db02's wall clock.
    assert snapshots["db02.pftrace"][boottime] == 424_169_736_000
    assert snapshots["db02.pftrace"][realtime] - snapshots["web01.pftrace"][realtime] == pytest.approx(1.5 * S, abs=512)
    # No bundle names a clock: trace processor reads them as BOOTTIME, which the snapshot relates.
    for member in ("web01.pftrace", "db02.pftrace"):
        for packet in packets(files[member]):
            if packet.HasField("ftrace_events"):
                assert not packet.ftrace_events.HasField("ftrace_clock")


def test_nanosecond_anchors_are_used_when_the_manifest_has_them(tmp_path, real_tracedat):
    run = str(tmp_path)
    anchor = {"wall_ns": 1796210731297735512, "trace_ns": 424169736123, "uncertainty_ns": 8400, "wall": 1.0}
    dat_capture(run, "web01", real_tracedat["v6"], anchor=anchor)
    # The checked manifest carries the ns fields once _host_result's schema has them;
    # the anchor is read the same way from either.
    placed = _clock_anchor.from_manifest(anchor)
    assert placed == _clock_anchor.Anchor(1796210731297735512, 424169736123, 8400, _clock_anchor.FROM_NS)
    with TraceDat(os.path.join(run, "web01", "trace.dat")) as dat:
        out = io.BytesIO()
        _perfetto.write_host(out, dat, "web01", placed)
    snapshot = packets(out.getvalue())[0].clock_snapshot
    assert [(clock.clock_id, clock.timestamp) for clock in snapshot.clocks] == [
        (_perfetto.BUILTIN_CLOCK_BOOTTIME, 424169736123),
        (_perfetto.BUILTIN_CLOCK_REALTIME, 1796210731297735512),
    ]
    assert _clock_anchor.describe_uncertainty(placed) == "8.4 \u00b5s"


def test_the_date_option_places_a_capture_without_an_anchor(tmp_path, tracedat):
    builder = tracedat()
    builder.add_page(0, builder.page(5 * S, [builder.data(0, builder.wakeup(1))]))
    path = builder.write(tmp_path / "x.dat")
    with TraceDat(path) as dat:
        dat.date = "0x%x" % (1_796_000_000 * 1_000_000)  # wall - trace, in microseconds
        anchor = _perfetto_archive._place(
            _perfetto_archive._Capture("h", "h", "trace", "h / trace", path, "local", None), dat, []
        )
    assert anchor == _clock_anchor.Anchor(1_796_000_000 * S + 5 * S, 5 * S, None, _clock_anchor.FROM_DATE)


# ---------------------------------------------------------------- lost events, stats, tasks


def test_lost_events_per_cpu_and_the_ring_buffer_stats(tmp_path, tracedat):
    builder = tracedat(cpus=2)
    builder.add_page(0, builder.page(1 * S, [builder.data(0, builder.wakeup(1))]))
    builder.add_page(1, builder.page(2 * S, [builder.data(0, builder.wakeup(1))], missed=True))
    builder.add_page(1, builder.page(3 * S, [builder.data(0, builder.print_(42, b"mark"))], missed_count=5))
    path = builder.write_v7(tmp_path / "x.dat", compression="zlib")
    out = io.BytesIO()
    with TraceDat(path) as dat:
        stats = _perfetto.write_host(out, dat, "h", _clock_anchor.Anchor(10 * S, 0, None, "test"))
    assert stats.lost_pages == {"0": 0, "1": 2} and stats.events == 3 and stats.bundles == 3
    bundles = [packet.ftrace_events for packet in packets(out.getvalue()) if packet.HasField("ftrace_events")]
    assert [(bundle.cpu, bundle.lost_events, len(bundle.event)) for bundle in bundles] == [
        (0, False, 1),
        (1, True, 1),
        (1, True, 1),
    ]
    ftrace_stats = [packet.ftrace_stats for packet in packets(out.getvalue()) if packet.HasField("ftrace_stats")]
    assert len(ftrace_stats) == 1 and ftrace_stats[0].phase == _perfetto.FTRACE_STATS_END_OF_TRACE
    cpu1 = [entry for entry in ftrace_stats[0].cpu_stats if entry.cpu == 1][0]
    assert (cpu1.overrun, cpu1.dropped_events, cpu1.read_events, cpu1.now_ts) == (3, 1, 11, 105.0)
    generic = bundles[2].event[0].generic
    assert generic.event_name == "print"
    assert {field.name: field.str_value for field in generic.field if field.name == "buf"} == {"buf": "mark"}
    info = [packet.system_info for packet in packets(out.getvalue()) if packet.HasField("system_info")][0]
    assert (info.utsname.sysname, info.utsname.release, info.machine_name, info.num_cpus) == (
        "Linux",
        "6.1.0-56-cloud-amd64",
        "h",
        2,
    )


def test_an_empty_page_after_a_loss_still_says_so(tmp_path, tracedat):
    builder = tracedat(cpus=1)
    builder.add_page(0, builder.page(1 * S, [], missed=True))
    out = io.BytesIO()
    with TraceDat(builder.write(tmp_path / "x.dat")) as dat:
        stats = _perfetto.write_host(out, dat, "h", _clock_anchor.Anchor(10 * S, 0, None, "test"))
    bundles = [packet.ftrace_events for packet in packets(out.getvalue()) if packet.HasField("ftrace_events")]
    assert stats.events == 0 and [(bundle.lost_events, len(bundle.event)) for bundle in bundles] == [(True, 0)]


def test_the_hosts_ansible_tasks_are_a_track_of_slices_in_realtime(run_dir):
    tasks = {
        "web01": [
            {"name": "session demo: configure", "start": 1796210730.5, "end": 1796210731.25},
            {"name": "session demo: capture", "start": "1796210731.25", "end": 1796210733.0},
        ],
        "elsewhere": [{"name": "not in the run", "start": 1.0, "end": 2.0}],
    }
    result = _perfetto_archive.export(run_dir, tasks=_perfetto.tasks_option(tasks))
    files = members(result["path"])
    assert [item["tasks"] for item in result["files"]] == [0, 2]  # db02, web01
    web = packets(files["web01.pftrace"])
    descriptors = [packet for packet in web if packet.HasField("track_descriptor")]
    assert len(descriptors) == 1
    uuid = descriptors[0].track_descriptor.uuid
    assert descriptors[0].track_descriptor.name == "Ansible tasks" and uuid == _perfetto.track_uuid("web01")
    assert descriptors[0].sequence_flags == _perfetto.SEQ_INCREMENTAL_STATE_CLEARED
    slices = [
        (packet.timestamp, packet.track_event.type, packet.track_event.name)
        for packet in web
        if packet.HasField("track_event")
    ]
    assert slices == [
        (1796210730500000000, _perfetto.TYPE_SLICE_BEGIN, "session demo: configure"),
        (1796210731250000000, _perfetto.TYPE_SLICE_END, ""),
        (1796210731250000000, _perfetto.TYPE_SLICE_BEGIN, "session demo: capture"),
        (1796210733000000000, _perfetto.TYPE_SLICE_END, ""),
    ]
    for packet in web:
        if packet.HasField("track_event"):
            assert packet.timestamp_clock_id == _perfetto.BUILTIN_CLOCK_REALTIME
            assert packet.track_event.track_uuid == uuid
            assert packet.trusted_packet_sequence_id == descriptors[0].trusted_packet_sequence_id
    assert not [packet for packet in packets(files["db02.pftrace"]) if packet.HasField("track_event")]


def test_overlapping_tasks_still_nest(tmp_path):
    out = io.BytesIO()
    _perfetto._write_tasks(out, "h", [Task("a", 10.0, 20.0), Task("b", 15.0, 30.0), Task("c", 16.0, 17.0)])
    slices = [(packet.timestamp, packet.track_event.type) for packet in packets(out.getvalue())[1:]]
    # b starts where a ended; c, inside b, keeps its times.
    assert [stamp // S for stamp, _kind in slices] == [10, 20, 20, 30, 16, 17]


@pytest.mark.parametrize(
    "value,message",
    [
        ([1], "a dict of host name"),
        ({"h": "x"}, r"tasks\['h'\]: a host name with a list of tasks"),
        ({"h": [{"name": "a", "start": 1.0}]}, r"tasks\['h'\]\[0\]=.*name, start and end"),
        ({"h": [{"name": "", "start": 1.0, "end": 2.0}]}, r"tasks\['h'\]\[0\].name=''"),
        ({"h": [{"name": "a", "start": "soon", "end": 2.0}]}, r"tasks\['h'\]\[0\].start='soon': seconds since"),
        ({"h": [{"name": "a", "start": float("nan"), "end": 2.0}]}, r"\.start=nan"),
        ({"h": [{"name": "a", "start": True, "end": 2.0}]}, r"\.start=True"),
        ({"h": [{"name": "a", "start": 3.0, "end": 2.0}]}, r"ends \(2.0\) before it starts \(3.0\)"),
    ],
)
def test_bad_tasks_are_refused_by_name(value, message):
    with pytest.raises(PerfettoError, match=message):
        _perfetto.tasks_option(value)


# ---------------------------------------------------------------- the archive


def test_the_archive_is_a_plain_ustar_written_once(run_dir):
    first = _perfetto_archive.export(run_dir)
    path = first["path"]
    assert first["changed"] and os.stat(path).st_mode & 0o777 == 0o600
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            assert member.isfile() and (member.uid, member.gid, member.mode) == (0, 0, 0o600)
            assert len(member.name.encode()) <= 99 and "/" not in member.name
            assert member.mtime == 1796210731  # the run's creation time
    assert os.path.getsize(path) % 10240 == 0 and first["bytes"] == os.path.getsize(path)
    again = _perfetto_archive.export(run_dir)
    assert not again["changed"] and again["files"] == first["files"]
    assert sorted(os.listdir(run_dir)) == ["db02", "manifest.json", "perfetto.tar", "web01"]


def test_check_mode_writes_nothing_and_predicts(run_dir):
    predicted = _perfetto_archive.export(run_dir, dry_run=True)
    assert predicted["changed"] and not os.path.exists(predicted["path"])
    assert sorted(os.listdir(run_dir)) == ["db02", "manifest.json", "web01"]
    _perfetto_archive.export(run_dir)
    assert not _perfetto_archive.export(run_dir, dry_run=True)["changed"]
    tasks = _perfetto.tasks_option({"web01": [{"name": "t", "start": 1796210731.0, "end": 1796210732.0}]})
    assert _perfetto_archive.export(run_dir, tasks=tasks, dry_run=True)["changed"]


def test_what_cannot_be_exported_is_named_and_left_out(tmp_path, real_tracedat, tracedat):
    run = str(tmp_path)
    tsc = tracedat(clock="x86-tsc")
    tsc.add_page(0, tsc.page(1000, [tsc.data(0, tsc.wakeup(1))]))
    tsc_path = tsc.write(tmp_path / "tsc-source.dat")
    tampered = dat_capture(run, "tampered", real_tracedat["v6"])
    with open(os.path.join(run, "tampered", "trace.dat"), "r+b") as handle:
        handle.seek(100)
        handle.write(b"X")
    escaping = dat_capture(run, "escaping", real_tracedat["v6"])
    escaping["files"][0]["path"] = "../../etc/passwd.dat"
    write_manifest(
        run,
        {
            "good": {"dir": "good", "captures": [dat_capture(run, "good", real_tracedat["v6"])]},
            "text": {"dir": "text", "captures": [{"name": "trace", "format": "text", "files": []}]},
            "tsc": {"dir": "tsc", "captures": [dat_capture(run, "tsc", tsc_path, clock="x86-tsc")]},
            "unanchored": {
                "dir": "unanchored",
                "captures": [dat_capture(run, "unanchored", real_tracedat["v6"], anchor={})],
            },
            "tampered": {"dir": "tampered", "captures": [tampered]},
            "escaping": {"dir": "escaping", "captures": [escaping]},
            "missing": {
                "dir": "missing",
                "captures": [{"name": "trace", "format": "dat", "files": [{"path": "missing/trace.dat", "bytes": 5}]}],
            },
        },
    )
    os.remove(os.path.join(run, "tsc-source.dat"))
    result = _perfetto_archive.export(run)
    assert [item["path"] for item in result["files"]] == ["good.pftrace"]
    problems = "\n".join(result["problems"])
    assert "text / trace: a text capture has no trace.dat" in problems
    assert "tsc / trace: trace clock x86-tsc does not count nanoseconds" in problems
    assert "unanchored / trace: no clock anchor in the manifest and no DATE option" in problems
    assert "tampered / trace: tampered/trace.dat: sha256 differs" in problems
    assert "escaping / trace: ../../etc/passwd.dat: not inside the run directory" in problems
    assert "missing / trace: missing/trace.dat: missing" in problems
    assert len(result["problems"]) == 6
    assert sorted(members(result["path"])) == ["good.pftrace", "perfetto_manifest.json"]


def test_a_damaged_trace_is_left_out_and_the_others_kept(tmp_path, real_tracedat, tracedat):
    run = str(tmp_path)
    broken = tracedat(cpus=1)
    page = bytearray(broken.page(1000, [broken.data(0, broken.wakeup(1))]))
    page[8:16] = (5000).to_bytes(8, "little")  # more than a page
    broken.add_page(0, bytes(page))
    source = broken.write(tmp_path / "broken-source.dat")
    write_manifest(
        run,
        {
            "a-broken": {"dir": "a-broken", "captures": [dat_capture(run, "a-broken", source)]},
            "good": {"dir": "good", "captures": [dat_capture(run, "good", real_tracedat["v6"])]},
        },
    )
    result = _perfetto_archive.export(run)
    assert [item["path"] for item in result["files"]] == ["good.pftrace"]
    assert len(result["problems"]) == 1
    assert result["problems"][0].startswith("a-broken / trace: not exported: a-broken/trace.dat: CPU 0 page")
    files = members(result["path"])
    assert sorted(files) == ["good.pftrace", "perfetto_manifest.json"]
    assert len(ftrace_events(files["good.pftrace"])) == 971


def test_nothing_to_export_writes_nothing(tmp_path):
    write_manifest(str(tmp_path), {"h": {"dir": "h", "captures": [{"name": "trace", "format": "text"}]}})
    result = _perfetto_archive.export(str(tmp_path))
    assert result["files"] == [] and not result["changed"]
    assert result["problems"][-1] == "no trace.dat capture in the run: nothing to export"
    assert not os.path.exists(tmp_path / "perfetto.tar")


def test_the_archive_is_never_written_through_a_link_or_over_a_directory(run_dir, tmp_path):
    outside = tmp_path / "outside.tar"
    os.symlink(str(outside), os.path.join(run_dir, "perfetto.tar"))
    with pytest.raises(PerfettoError, match="a link leading outside the run directory"):
        _perfetto_archive.export(run_dir)
    assert not outside.exists()
    os.remove(os.path.join(run_dir, "perfetto.tar"))
    os.mkdir(os.path.join(run_dir, "perfetto.tar"))
    with pytest.raises(PerfettoError, match="not a regular file"):
        _perfetto_archive.export(run_dir)


def test_a_run_dir_without_a_manifest(tmp_path):
    with pytest.raises(RunDirError, match="no manifest.json there"):
        _perfetto_archive.export(str(tmp_path))
    with pytest.raises(RunDirError, match="is not a directory"):
        _perfetto_archive.export(str(tmp_path / "nowhere"))


def test_missing_packages_are_named(run_dir, monkeypatch):
    monkeypatch.setattr(_perfetto, "_protos", None)
    real_import = builtins.__import__

    def without_perfetto(name, *args, **kwargs):
        if name.startswith("perfetto"):
            raise ImportError("No module named 'perfetto'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_perfetto)
    with pytest.raises(
        PerfettoError, match=r"needs the Python packages perfetto and protobuf .*perfetto==.*protobuf=="
    ):
        _perfetto_archive.export(run_dir)
    assert not os.path.exists(os.path.join(run_dir, "perfetto.tar"))


@pytest.mark.parametrize(
    "captures,names",
    [
        ([("web01", "web01", "trace")], ["web01.pftrace"]),
        (
            [("web01", "web01", "trace"), ("web01", "web01", "boot"), ("db", "db", "trace")],
            ["web01.trace.pftrace", "web01.boot.pftrace", "db.pftrace"],
        ),
        # A host directory that reads like another host's capture gets a hash.
        (
            [("a", "a", "b"), ("a", "a", "c"), ("a.b", "a.b", "trace")],
            ["a.b.pftrace", "a.c.pftrace", "a.b+%s.pftrace" % hashlib.sha256(b"a.b\0trace").hexdigest()[:12]],
        ),
    ],
)
def test_member_names(captures, names):
    assert _perfetto_archive.member_names(captures) == names


def test_long_member_names_are_shortened():
    [name] = _perfetto_archive.member_names([("h" * 100, "h" * 100, "trace")])
    assert len(name) <= 99 and name.endswith(".pftrace") and "+" in name
