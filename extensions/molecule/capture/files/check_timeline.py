# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check a run's trace.dat files with the controller's own trace-cmd, not tracefleet's code.

    check_timeline.py RUN_DIR CAPTURE_NAME HOST [HOST ...]

1. `trace-cmd report -t -i H1/trace.dat -i H2/trace.dat ...` merges the hosts on wall-clock
   time: every line's timestamp is not earlier than the one before it, and every
   `tracefleet-anchor N wall_ns=X` marker (X: the time of day read just before it was
   written) is printed no earlier than X and no later than X plus the anchor's recorded
   uncertainty for the marker the anchor was taken from (the one whose bracket holds
   the anchor's wall_ns), or X plus 100 ms for the others: each has its own bracket,
   which the trace does not carry, and on a busy TCG guest one write took 4.5 ms
   (measured); a wrong offset would be off by far more. 1 us of slack below,
   trace-cmd's DATE offset being in microseconds.
2. Per host, no event belongs to one of the capture's own processes (the manifest's
   `excluded_pids`) except what the kernel records for a switch or a wakeup that
   involves a traced task, and the anchor markers themselves.
Prints one JSON line with what it found; exits 1 on a failed check.
"""

import json
import os
import re
import subprocess
import sys

LINE = re.compile(
    r"^(?:\S+:\s+)?\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?P<event>[^:\s]+):\s*(?P<rest>.*)$"
)
MARKER = re.compile(r"tracefleet-anchor (\d+) wall_ns=(\d+)")
ALLOWED_FROM_SELF = {"sched_switch", "sched_wakeup", "sched_waking", "sched_wakeup_new"}


def report(paths):
    cmd = ["trace-cmd", "report", "-t"]
    for path in paths:
        cmd += ["-i", path]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        match = LINE.match(line)
        if match:
            frac = match.group("frac")
            ns = int(match.group("sec")) * 10**9 + int((frac + "000000000")[:9])
            yield ns, int(match.group("pid")), match.group("event"), match.group("rest")


def main(run_dir, name, hosts):
    with open(os.path.join(run_dir, "manifest.json")) as handle:
        manifest = json.load(handle)
    captures = {}
    for host in hosts:
        capture = [c for c in manifest["hosts"][host]["captures"] if c["name"] == name][-1]
        captures[host] = capture
    problems = []
    paths = [os.path.join(run_dir, captures[h]["files"][0]["path"]) for h in hosts]
    anchors = [(c["clock_anchor"]["wall_ns"], c["clock_anchor"]["uncertainty_ns"]) for c in captures.values()]
    previous = 0
    markers = worst_other = worst_anchor = 0
    found_anchor = set()
    for ns, _pid, event, rest in report(paths):
        if ns < previous:
            problems.append("merged report goes back in time: %d after %d" % (ns, previous))
        previous = ns
        marker = MARKER.search(rest) if event == "print" else None
        if not marker:
            continue
        markers += 1
        carried = int(marker.group(2))
        late = ns - carried
        anchor = [(wall, width) for wall, width in anchors if wall - width <= carried <= wall]
        bound = anchor[0][1] + 1000 if anchor else 100000000
        if anchor:
            found_anchor.add(anchor[0][0])
            worst_anchor = max(worst_anchor, late)
        else:
            worst_other = max(worst_other, late)
        if not -1000 <= late <= bound:
            problems.append(
                "marker %s (wall_ns=%d) printed %d ns after the time it carries (allowed: -1000..%d)"
                % (marker.group(1), carried, late, bound)
            )
    if found_anchor != {wall for wall, _width in anchors}:
        problems.append(
            "no marker of the anchors %s in the merged report"
            % sorted({wall for wall, _width in anchors} - found_anchor)
        )
    own = {}
    for host, path in zip(hosts, paths):
        excluded = set(captures[host].get("excluded_pids") or [])
        own[host] = sum(
            1
            for _ns, pid, event, rest in report([path])
            if pid in excluded and event not in ALLOWED_FROM_SELF and not (event == "print" and MARKER.search(rest))
        )
        if not excluded:
            problems.append("%s: no excluded_pids recorded" % host)
        if own[host]:
            problems.append("%s: %d events of the capture's own processes" % (host, own[host]))
    print(
        json.dumps(
            {
                "markers": markers,
                "worst_anchor_ns": worst_anchor,
                "worst_other_ns": worst_other,
                "own_events": own,
                "problems": problems,
            }
        )
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
