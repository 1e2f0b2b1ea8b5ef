"""The fleet's two rollouts, from their manifests and the controller's files.

Main run (fleet-main): the 14 reachable aliases captured; fleet-gone (down from the
start) and fleet-b (frozen mid-capture) are in the manifest's `failed` map as
unreachable, with a reason, and have no files; each batch after the canary shares one
start_at (the canary's window is its own); nothing partial is left in dest.
Budget run (fleet-budget, batches [fleet-a-15], [fleet-gone, fleet-a-16], [fleet-a-17]):
fleet-a-15 and fleet-a-16 captured, fleet-gone failed, and the failure budget (30%,
the batch had 50% unreachable) stopped the rollout before fleet-a-17.

usage: check_fleet.py DEST
"""

import json
import os
import sys

BATCH_2 = ["fleet-a-%d" % i for i in range(2, 8)]
BATCH_3 = ["fleet-a-%d" % i for i in range(8, 15)]


def manifest(dest: str, run: str) -> dict:
    with open(os.path.join(dest, run, "manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


def main() -> int:
    dest = sys.argv[1]
    problems = []
    main_run = manifest(dest, "fleet-main")
    captured = sorted(name for name, host in main_run["hosts"].items() if host.get("captures"))
    expected = sorted(["fleet-a-1"] + BATCH_2 + BATCH_3)
    if captured != expected:
        problems.append("fleet-main captured %s, expected %s" % (captured, expected))
    failed = main_run.get("failed") or {}
    if sorted(failed) != ["fleet-b", "fleet-gone"]:
        problems.append("fleet-main failed hosts: %s, expected fleet-b and fleet-gone" % sorted(failed))
    for name, record in sorted(failed.items()):
        if not record.get("unreachable") or not str(record.get("reason") or "").strip():
            problems.append("fleet-main: %s is not recorded as unreachable with a reason: %s" % (name, record))
        if os.path.exists(os.path.join(dest, "fleet-main", name)):
            problems.append("fleet-main: the failed host %s has a directory in the run" % name)
    for label, batch in (("batch 2", BATCH_2), ("batch 3", BATCH_3)):
        starts = {
            main_run["hosts"][name]["captures"][-1].get("start_at") for name in batch if name in main_run["hosts"]
        }
        if len(starts) != 1 or None in starts:
            problems.append("fleet-main %s did not share one window: start_at %s" % (label, sorted(map(str, starts))))
    canary = main_run["hosts"].get("fleet-a-1", {}).get("captures", [{}])[-1]
    if canary.get("start_at") is not None:
        problems.append("fleet-main: the canary (a batch of one) was given a shared window: %s" % canary)
    leftovers = [
        os.path.join(root, name) for root, dirs, files in os.walk(dest) for name in dirs + files if ".partial-" in name
    ]
    if leftovers:
        problems.append("partial files left under %s: %s" % (dest, leftovers))
    budget = manifest(dest, "fleet-budget")
    captured = sorted(name for name, host in budget["hosts"].items() if host.get("captures"))
    if captured != ["fleet-a-15", "fleet-a-16"]:
        problems.append("fleet-budget captured %s, expected fleet-a-15 and fleet-a-16" % captured)
    if sorted(budget.get("failed") or {}) != ["fleet-gone"]:
        problems.append("fleet-budget failed hosts: %s, expected fleet-gone" % sorted(budget.get("failed") or {}))
    print(
        "fleet-main: %d captured, failed: %s; fleet-budget: captured %s, failed %s"
        % (
            len([name for name, host in main_run["hosts"].items() if host.get("captures")]),
            json.dumps({name: record.get("reason", "")[:120] for name, record in failed.items()}),
            captured,
            sorted(budget.get("failed") or {}),
        )
    )
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
