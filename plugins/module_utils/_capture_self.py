# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keeping the capture's own processes out of the events it records.

As `trace-cmd record` does, the pids of the capture's own processes go into the
buffer's `set_event_notrace_pid` (and `set_ftrace_notrace_pid` while a function
tracer runs) for the window, and come out again afterwards. Its own processes are
this module's process, the compressors it starts, and the processes Ansible ran
it in: its parents in the same session, up to (not including) sshd, or the session
leader. The kernel still records a sched_switch or sched_wakeup in which one of them
meets a traced task (that belongs to the traced task's story), and the anchor
markers this process writes.

The pid files have no removal syntax: adding appends, removing writes the others
back in one write (`TracingDir.replace_list`). Each added pid is recorded in the
ledger first (a `list_add` entry), so teardown takes it out if the play dies
with the window open.

With `options/event-fork` set, the kernel adds each child of a listed pid to the
list when it forks (and takes it out when it exits): the workload is started
before the list is written, so it and its children stay traced.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

EVENT_LIST = "set_event_notrace_pid"
FUNCTION_LIST = "set_ftrace_notrace_pid"
# Where Ansible's connection ends: the ssh daemon's processes are not the capture's.
STOP_AT = frozenset(("sshd", "sshd-session", "sshd-auth"))


def proc_stat(pid: int) -> tuple[str, list[bytes]] | None:
    """A process's /proc/PID/stat as (comm, the fields after it: state first), or None
    when it is gone. comm is cut out by its last ')', since it may hold anything."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    head, _sep, tail = text.rpartition(b")")
    return head.partition(b"(")[2].decode(errors="replace"), tail.split()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(comm, parent pid, session id) of a process, or None when it is gone."""
    stat = proc_stat(pid)
    if stat is None:
        return None
    comm, fields = stat
    try:
        return comm, int(fields[1]), int(fields[3])
    except (IndexError, ValueError):
        return None


def own_processes(pid: int | None = None) -> list[int]:
    """This process and the parents Ansible ran it in: the chain of parents in the same
    session, stopping before sshd, pid 1 or a process of another session."""
    pid = os.getpid() if pid is None else pid
    found = [pid]
    info = _stat(pid)
    if info is None:
        return found
    session = info[2]
    parent = info[1]
    while parent > 1:
        info = _stat(parent)
        if info is None or info[0] in STOP_AT or info[2] != session:
            break
        found.append(parent)
        parent = info[1]
    return found


class QuietPids:
    """The capture's pids in the buffer's notrace lists, for the window."""

    def __init__(self, buffer: TracingDir, ledger_path: str, session: str) -> None:
        self.buffer = buffer
        self.ledger_path = ledger_path
        self.session = session
        self.files = [EVENT_LIST] if buffer.has(EVENT_LIST) else []
        tracer = (buffer.read("current_tracer") or "nop").strip()
        if tracer not in ("", "nop") and buffer.has(FUNCTION_LIST):
            self.files.append(FUNCTION_LIST)
        self.added: dict = {name: [] for name in self.files}
        self.before: dict = {}  # each list as it was before the first add
        self.excluded: set = set()

    def listed(self, name: str) -> list[str]:
        return [line.strip() for line in self.buffer.lines(name) if line.strip() and line.strip() != "no pid"]

    def add(self, pids: list) -> None:
        """Append the pids not listed yet, each recorded in the ledger first."""
        for name in self.files:
            listed = self.listed(name)
            self.before.setdefault(name, listed)
            new = [str(pid) for pid in pids if str(pid) not in listed + self.added[name]]
            self.excluded.update(int(pid) for pid in pids)
            if not new:
                continue
            with Ledger(self.ledger_path) as ledger:
                ledger.record_many(
                    self.session,
                    [dict(kind="list_add", instance=self.buffer.instance, file=name, value=pid) for pid in new],
                )
            for pid in new:
                self.buffer.write(name, pid)
                self.added[name].append(pid)

    def remove(self) -> None:
        """Take out what `add` put in, and its ledger entries. The others' pids stay,
        but for those of processes that are gone which were not listed before: under
        options/event-fork the kernel listed children of ours, and one that exited
        between the read and the write of the list would come back."""
        for name in self.files:
            ours = self.added[name]
            if not ours:
                continue
            before = self.before.get(name, [])
            remaining = [
                pid
                for pid in self.listed(name)
                if pid not in ours and (pid in before or os.path.exists("/proc/%s" % pid))
            ]
            self.buffer.replace_list(name, " ".join(remaining))
            with Ledger(self.ledger_path) as ledger:
                for pid in ours:
                    entry = ledger.find(kind="list_add", instance=self.buffer.instance, file=name, value=pid)
                    if entry is not None:
                        ledger.forget(entry)
            self.added[name] = []

    @property
    def pids(self) -> list[int]:
        """Every pid the capture kept out of its events."""
        return sorted(self.excluded)
