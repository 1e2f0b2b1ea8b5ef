# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check a run's perfetto.tar against the controller's trace-cmd, not tracefleet's reader.

    check_perfetto.py RUN_DIR HOST [HOST ...]

- The archive holds a `perfetto_manifest.json` in Perfetto's documented format
  (version 1; every file it names is in the archive; a machine name per file; the run
  id as an attribute) and a `.pftrace` per host.
- Each `.pftrace`, decoded with Perfetto's official protobuf definitions
  (perfetto_trace_pb2), holds as many events of each name as `trace-cmd report` prints
  from the host's trace.dat, and the first three events agree with the report in time
  (after the DATE option: REALTIME), CPU and pid.
Prints one JSON line; exits 1 on a failed check.
"""

import collections
import json
import os
import re
import subprocess
import sys
import tarfile

from perfetto.protos.perfetto.trace import perfetto_trace_pb2

LINE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?P<event>[^:\s]+):"
)


def report(path):
    out = subprocess.run(["trace-cmd", "report", "-t", "-i", path], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        match = LINE.match(line)
        if match:
            ns = int(match.group("sec")) * 10**9 + int((match.group("frac") + "000000000")[:9])
            yield ns, int(match.group("cpu")), int(match.group("pid")), match.group("event")


def pftrace_events(data):
    """(timestamp in the file's clock, cpu, pid, name) per ftrace event, and the snapshot's
    (trace clock, REALTIME) pair that places the file on REALTIME."""
    trace = perfetto_trace_pb2.Trace()
    trace.ParseFromString(data)
    events, snapshot = [], None
    realtime = perfetto_trace_pb2.BuiltinClock.Value("BUILTIN_CLOCK_REALTIME")
    boottime = perfetto_trace_pb2.BuiltinClock.Value("BUILTIN_CLOCK_BOOTTIME")
    for packet in trace.packet:
        if packet.HasField("clock_snapshot"):
            clocks = {c.clock_id: c.timestamp for c in packet.clock_snapshot.clocks}
            if realtime in clocks and boottime in clocks:
                snapshot = (clocks[boottime], clocks[realtime])
        if packet.HasField("ftrace_events"):
            bundle = packet.ftrace_events
            for event in bundle.event:
                kind = event.WhichOneof("event")
                name = event.generic.event_name if kind == "generic" else kind
                events.append((event.timestamp, bundle.cpu, event.pid, name))
    return events, snapshot


def main(run_dir, hosts):
    problems = []
    with open(os.path.join(run_dir, "manifest.json")) as handle:
        run_manifest = json.load(handle)
    with tarfile.open(os.path.join(run_dir, "perfetto.tar")) as archive:
        members = {m.name: m for m in archive.getmembers()}
        document = json.load(archive.extractfile(members["perfetto_manifest.json"]))
        # The document is one object whose only key is "perfetto_manifest" (how Perfetto
        # recognises the file among the archive's members).
        if list(document) != ["perfetto_manifest"]:
            problems.append("manifest top level %s, not perfetto_manifest" % sorted(document))
        manifest = document.get("perfetto_manifest", {})
        if manifest.get("version") != 1:
            problems.append("manifest version %r" % manifest.get("version"))
        if manifest.get("attributes", {}).get("tracefleet.run_id") != run_manifest["run_id"]:
            problems.append("manifest run id %r" % manifest.get("attributes"))
        named = {entry["path"]: entry for entry in manifest.get("files", [])}
        for path in named:
            if path not in members:
                problems.append("manifest names %s, not in the archive" % path)
        counts = {}
        for host in hosts:
            path = host + ".pftrace"
            if path not in named or named[path].get("machine", {}).get("name") != host:
                problems.append("%s: no file with machine name %s in the manifest" % (host, host))
                continue
            events, snapshot = pftrace_events(archive.extractfile(members[path]).read())
            trace_dat = os.path.join(run_dir, host, "trace.dat")
            reported = list(report(trace_dat))
            mine = collections.Counter(name for _t, _c, _p, name in events)
            theirs = collections.Counter(name for _t, _c, _p, name in reported)
            counts[host] = dict(theirs)
            if mine != theirs:
                problems.append(
                    "%s: per-name counts differ: pftrace %s, trace-cmd %s" % (host, dict(mine), dict(theirs))
                )
            if snapshot is None:
                problems.append("%s: no clock snapshot relating the trace clock to REALTIME" % host)
                continue
            ordered = sorted(events)[:3]
            for (stamp, cpu, pid, name), (ns, rcpu, rpid, rname) in zip(ordered, reported[:3]):
                wall = stamp - snapshot[0] + snapshot[1]
                if (cpu, pid, name) != (rcpu, rpid, rname) or abs(wall - ns) > 1000:
                    problems.append(
                        "%s: event %s differs: pftrace %s, trace-cmd %s"
                        % (host, name, (wall, cpu, pid, name), (ns, rcpu, rpid, rname))
                    )
    print(json.dumps({"events_by_name": counts, "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
