"""One batch's shared window, from the run's manifest: every host of the batch was
armed in time (none late) for one start_at, its window opened within LIMIT of every
other host's and lasted the asked duration, and the start it reports agrees with its
trace: the anchor markers the keeper wrote right after it turned recording on were
found in the fetched trace.dat at a time of day just after that start. Prints the
measured spread.

usage: check_window.py RUN_DIR DURATION HOST...
"""

import datetime
import json
import sys

LIMIT = 0.100  # seconds between the earliest and the latest host's start
SLACK = 0.25  # a window's length may exceed the asked duration by this (keeper wake-up)


def when(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def main() -> int:
    run_dir, duration, hosts = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    with open(run_dir + "/manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    entries = {
        name: host["captures"][-1] for name, host in manifest["hosts"].items() if host.get("captures") and name in hosts
    }
    problems = []
    if sorted(entries) != sorted(hosts):
        problems.append("captures in the manifest for %s, expected %s" % (sorted(entries), sorted(hosts)))
    start_ats = {entry.get("start_at") for entry in entries.values()}
    if len(start_ats) != 1 or None in start_ats:
        problems.append("the hosts were not armed for one start_at: %s" % sorted(map(str, start_ats)))
    starts = {}
    for name, entry in sorted(entries.items()):
        if entry.get("late") is not False:
            problems.append("%s: late=%r (started %s)" % (name, entry.get("late"), entry.get("started")))
        if entry.get("closed_by") != "duration":
            problems.append("%s: closed_by=%r, not by its keeper after the duration" % (name, entry.get("closed_by")))
        if not duration <= entry["seconds"] <= duration + SLACK:
            problems.append("%s: a window of %s s, asked %s" % (name, entry["seconds"], duration))
        starts[name] = when(entry["started"])
    if starts:
        first, last = min(starts.values()), max(starts.values())
        spread = last - first
        delays = sorted(entry["start_delay"] for entry in entries.values())
        print(
            "window: %d hosts, start_at %s, started within %.1f ms of each other "
            "(start_delay min %.1f ms, median %.1f ms, max %.1f ms)"
            % (
                len(starts),
                sorted(start_ats, key=str)[0],
                spread * 1000,
                delays[0] * 1000,
                delays[len(delays) // 2] * 1000,
                delays[-1] * 1000,
            )
        )
        if spread > LIMIT:
            problems.append("the hosts' windows opened %.1f ms apart, more than %d ms" % (spread * 1000, LIMIT * 1000))
    # The kernel's own record: the keeper wrote the anchor markers right after it turned
    # recording on, and the controller found them in each host's trace.dat.
    for name, entry in sorted(entries.items()):
        anchor = entry.get("clock_anchor") or {}
        if anchor.get("wall_ns") is None or anchor.get("uncertainty_ns") is None:
            problems.append("%s: no anchor marker found in its trace: %s" % (name, anchor))
            continue
        marker = anchor["wall_ns"] / 1e9
        if not starts[name] <= marker <= starts[name] + SLACK:
            problems.append(
                "%s: its first marker is at %.6f, not just after its start %.6f" % (name, marker, starts[name])
            )
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
