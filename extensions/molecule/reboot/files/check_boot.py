"""Check, from the kernel's own files read right after a reboot (verify.yml pipes them
in as "== section" blocks), that the reboot scenario's persisted setup is there from
boot: the command line words, the tracefs mount with the policy, debugfs unmounted, the
events and the kprobe enabled, the instance's filter, and events recorded before sshd
started (so before any login could have set anything up)."""

from __future__ import annotations

import argparse
import re
import sys

EVENT_RE = re.compile(r"\s(\d+\.\d+):\s+([\w]+):\s*(.*)$")


def sections(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


def events(lines: list[str]) -> list[tuple[float, str, str]]:
    out = []
    for line in lines:
        match = EVENT_RE.search(line)
        if match:
            out.append((float(match.group(1)), match.group(2), match.group(3)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--buffer-kb", type=int, required=True)
    parser.add_argument("--filter", required=True)
    args = parser.parse_args()
    got = sections(sys.stdin.read())
    problems: list[str] = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    if "end" not in got:
        print("the host's output is cut short: %s" % sorted(got))
        return 1
    cmdline = got["cmdline"][0].split()
    need(any(w.startswith("trace_event=") for w in cmdline), "no trace_event= in /proc/cmdline: %s" % cmdline)
    need(any(w.startswith("kprobe_event=") for w in cmdline), "no kprobe_event= in /proc/cmdline")
    tracefs = [line for line in got["mountinfo"] if " - tracefs " in line]
    need(len(tracefs) == 1, "tracefs mounts: %s" % tracefs)
    if tracefs:
        fields = tracefs[0].split()
        need(fields[4] == "/sys/kernel/tracing", "tracefs at %s" % fields[4])
        need({"nosuid", "nodev", "noexec"} <= set(fields[5].split(",")), "mount options %s" % fields[5])
        need({"gid=100", "mode=750"} <= set(fields[-1].split(",")), "superblock options %s" % fields[-1])
    need(not [line for line in got["mountinfo"] if " - debugfs " in line], "debugfs is mounted after the reboot")
    need(got["stat"] == ["100 750"], "tracefs root gid/mode %s" % got["stat"])
    need("sched:sched_process_exec" in got["set_event"], "set_event: %s" % got["set_event"])
    need("tfboot:tf_boot_exec" in got["set_event"], "kprobe event not enabled: %s" % got["set_event"])
    need(
        any(line.startswith("p:tfboot/tf_boot_exec ") and "__x64_sys_execve" in line for line in got["dynamic_events"]),
        "dynamic_events: %s" % got["dynamic_events"],
    )
    # trace_buf_size= is in bytes; the kernel rounds the per-CPU buffer up to whole pages
    # plus its own (measured: 2048k reads back as 2051 on 6.1).
    size = int(got["buffer_size_kb"][0]) if got["buffer_size_kb"][:1] and got["buffer_size_kb"][0].isdigit() else 0
    need(args.buffer_kb <= size <= args.buffer_kb + 16, "buffer_size_kb %s" % got["buffer_size_kb"])
    need(got["instance"][:1] == [args.filter], "instance filter %s" % got["instance"][:1])
    need(got["instance"][1:2] == ["1"], "instance event enable %s" % got["instance"][1:2])
    need(got["unit"] == ["active"], "the unit is %s" % got["unit"])
    sshd = int(got["sshd_started_us"][0]) / 1e6 if got["sshd_started_us"][:1] != [""] else 0.0
    need(sshd > 0, "no start time for ssh.service")
    top = events(got["top"])
    inst = events(got["inst"])
    early_exec = [e for e in top if e[1] == "sched_process_exec" and e[0] < sshd]
    early_probe = [e for e in top if e[1] == "tf_boot_exec" and e[0] < sshd]
    early_inst = [e for e in inst if e[0] < sshd]
    need(bool(early_exec), "no sched_process_exec before sshd started (%.3f s)" % sshd)
    need(bool(early_probe), "no tf_boot_exec hit before sshd started (%.3f s)" % sshd)
    need(bool(early_inst), "the instance recorded nothing before sshd started (%.3f s)" % sshd)
    outside = [e for e in inst if "filename=/usr/sbin/" not in e[2]]
    need(not outside, "the instance's filter let through %s" % outside[:3])
    need(any("filename=/usr/sbin/sshd" in e[2] for e in inst), "the instance has no exec of /usr/sbin/sshd")
    for line in problems:
        print("FAIL: " + line)
    if problems:
        return 1
    first = min(e[0] for e in top)
    print(
        "from boot: first top-level event at %.3f s, %d exec events and %d probe hits before sshd started at %.3f s; "
        "instance: %d filtered exec events before it (first %.3f s)"
        % (first, len(early_exec), len(early_probe), sshd, len(early_inst), min(e[0] for e in early_inst))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
