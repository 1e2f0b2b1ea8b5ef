# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The keeper of an armed capture window: a process of its own on the traced host.

`trace_capture state=started` with `start_at` (or `duration`) arms a window instead
of opening it: the task records the window in the ledger, turns recording off,
empties the buffer, and leaves a keeper behind. The keeper sleeps until `start_at`,
turns `tracing_on` on (the window's real start is the time of day read just before
that write), writes the anchor markers, and, with a `duration`, turns recording off
again that many seconds later by itself. So every host of a fleet can trace the same
seconds of wall-clock time whatever order Ansible reached them in; a later
`state=collected` task reads the window out.

The keeper is started the way a daemon is (two forks, a session of its own, its
standard streams on /dev/null and no other inherited descriptor), so the task's
connection closes at once. It is in the ledger's capture entry as its pid and its
start time (the `starttime` of /proc/PID/stat), so teardown ends it and nothing
else, even after its pid is reused.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture_self import proc_stat

# Sleeping in slices no longer than this keeps the keeper's wake-up on time when the
# clock is stepped (by NTP) while it sleeps: each slice re-reads the time of day.
SLICE = 1.0


def sleep_until(wall: float) -> None:
    """Sleep until the time of day `wall` (seconds since the epoch)."""
    while True:
        left = wall - time.time()
        if left <= 0:
            return
        time.sleep(min(left, SLICE))


def start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22), or
    None when it is gone (or a zombie nobody reaped yet): with the pid it names one
    process, never a later one."""
    stat = proc_stat(pid)
    if stat is None:
        return None
    fields = stat[1]
    try:
        return None if fields[0] in (b"Z", b"X") else int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(keeper: dict | None) -> bool:
    """Whether the keeper a ledger entry names still runs."""
    if not isinstance(keeper, dict) or not isinstance(keeper.get("pid"), int):
        return False
    return start_time(keeper["pid"]) == keeper.get("start")


def stop(keeper: dict | None) -> bool:
    """End the keeper a ledger entry names, if it still runs; True when it did."""
    if not alive(keeper):
        return False
    try:
        os.kill(keeper["pid"], signal.SIGKILL)  # type: ignore[index]
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5
    while alive(keeper) and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def detach(work: Callable[[], None]) -> dict:
    """Run `work` in a process of its own that outlives the task. Returns the keeper as
    the ledger records it: {pid, start}."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked processes
        try:
            os.close(read_end)
            os.setsid()
            grandchild = os.fork()
            if grandchild:
                os.write(write_end, b"%d" % grandchild)
                os._exit(0)
            os.close(write_end)
            _detach_streams()
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            work()
        except BaseException:  # noqa: BLE001 - nothing may escape into the parent's code
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as handle:
        text = handle.read()
    os.waitpid(child, 0)
    if not text.isdigit():
        raise OSError("the capture window's keeper process did not start")
    pid = int(text)
    return dict(pid=pid, start=start_time(pid))


def _detach_streams() -> None:  # pragma: no cover - runs in the keeper
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    os.closerange(3, _max_fd())


def _max_fd() -> int:  # pragma: no cover - runs in the keeper
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 256)
    except (OSError, ValueError):
        return 4096
