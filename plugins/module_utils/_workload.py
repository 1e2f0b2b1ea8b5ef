# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The window's clock: a workload run during it, and the wait until it closes.

A workload is `/bin/sh -c COMMAND` in a session of its own (so that it and
everything it starts can be killed as one process group), its output going to
unnamed temporary files. It runs alongside the ring-buffer reader, which is why
it is started with Popen and not run to completion. It is reaped here, with
wait4(2), which also says how much CPU it and what it waited for used: the capture
counts its own CPU without the workload's (`Workload.cpu`).

`wait_window` waits out a duration or the workload, draining the buffer as it
goes, and notices when the controller went away (nobody reads the module's
output any more): then the window is abandoned, so the host is put back without
waiting for a workload nobody will collect.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import functools
import os
import resource
import select
import signal
import subprocess
import tempfile
import time
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import CaptureError

OUTPUT_LIMIT = 1 << 20  # bytes of stdout and of stderr returned
# A held workload: wait for "go" on the pipe, then become `/bin/sh -c COMMAND` ($0).
# Its standard input is the pipe; the command gets /dev/null, as an unheld one does.
HOLD = 'IFS= read -r go && [ "$go" = go ] && exec /bin/sh -c "$0" </dev/null'


class Abandoned(CaptureError):
    """The controller went away while the window was open."""


class Workload:
    """A command running during the window."""

    def __init__(self, command: str, work_dir: str, nofile: tuple | None = None, held: bool = False) -> None:
        """`nofile`: the open-file limits to run the command with, when this process
        raised its own for a capture of many CPUs. `held`: the process is made now but
        runs the command only at `release()` (a shell waiting on a pipe, which then
        execs `/bin/sh -c COMMAND` in the same process), so that it exists before the
        capture lists its own pids (a child forked later would be listed with them
        under options/event-fork); if this process dies first, it exits unrun."""
        self.command = command
        self.gate: int | None = None
        self.cpu = 0.0  # user+sys seconds of the command and its reaped children, once it is reaped
        self.outputs = {name: tempfile.TemporaryFile(dir=work_dir) for name in ("stdout", "stderr")}  # noqa: SIM115
        argv = ["/bin/sh", "-c", command]
        stdin: int = subprocess.DEVNULL
        try:
            if held:
                stdin, self.gate = os.pipe()
                argv = ["/bin/sh", "-c", HOLD, command]
            self.process = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=self.outputs["stdout"],
                stderr=self.outputs["stderr"],
                start_new_session=True,
                preexec_fn=functools.partial(resource.setrlimit, resource.RLIMIT_NOFILE, nofile) if nofile else None,
            )
        except BaseException:
            self.close()
            raise
        finally:
            if stdin != subprocess.DEVNULL:
                os.close(stdin)

    def release(self) -> None:
        """Let a held workload run its command."""
        if self.gate is not None:
            gate, self.gate = self.gate, None
            try:
                os.write(gate, b"go\n")
            finally:
                os.close(gate)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def _reap(self, block: bool) -> bool:
        """Reap the command if it has exited (with `block`: once it has) with wait4(2),
        keeping its CPU time in `cpu`; True once it is reaped. Its Popen is told the
        exit status, so it never waits for the process itself."""
        if self.process.returncode is not None:
            return True
        try:
            pid, status, usage = os.wait4(self.process.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            # Reaped by the kernel (SIGCHLD ignored): its CPU went nowhere, as with Popen.
            self.process.returncode = 0
            return True
        if pid == 0:
            return False
        self.cpu = usage.ru_utime + usage.ru_stime
        self.process.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return True

    def poll(self) -> int | None:
        """The exit status once the command has exited, else None (as Popen.poll)."""
        self._reap(block=False)
        return self.process.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command to exit, at most `timeout` seconds (as Popen.wait:
        subprocess.TimeoutExpired when it has not)."""
        if timeout is None:
            self._reap(block=True)
            return self.process.returncode
        end = time.monotonic() + timeout
        pause = 0.0005
        while not self._reap(block=False):
            left = end - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.command, timeout)
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
        return self.process.returncode

    def stop(self) -> None:
        stop_workload(self)

    def result(self) -> dict:
        """cmd, rc, and the first OUTPUT_LIMIT bytes of stdout and stderr."""
        texts = {}
        for name, handle in self.outputs.items():
            handle.seek(0)
            texts[name] = handle.read(OUTPUT_LIMIT).decode(errors="replace")
        return dict(cmd=self.command, rc=self.process.returncode, **texts)

    def close(self) -> None:
        if self.gate is not None:
            os.close(self.gate)  # a held workload that was never released exits unrun
            self.gate = None
        for handle in self.outputs.values():
            handle.close()


def controller_gone(fd: int = 1) -> bool:
    """True when nobody reads our standard output any more: the connection that ran
    this module closed (a killed ansible-playbook, a lost controller). The write end
    of a pipe whose reader has gone polls as an error."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError):
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _fd, mask in events)


def wait_window(
    duration: float | None,
    process: subprocess.Popen | Workload | None,
    drain: Callable[[], object] | None,
    deadline: float | None,
    interval: float = 0.25,
    gone: Callable[[], bool] = controller_gone,
) -> bool:
    """Wait out the window, calling `drain` as we go. Returns True when the window is
    over (the duration passed, the workload exited, or `drain` returned True: the
    capture's budget is used up), False when `deadline` passed first (the workload is
    still running). Raises Abandoned when the controller went away, so that the window
    is closed and the host put back without waiting for the workload."""
    end = time.monotonic() + duration if duration is not None else None
    while True:
        now = time.monotonic()
        if process is not None and process.poll() is not None:
            return True
        if end is not None and now >= end:
            return True
        if deadline is not None and now >= deadline:
            return False
        if gone():
            raise Abandoned(
                "the controller's connection closed while the window was open; "
                "the window was closed and tracing_on put back"
            )
        if drain is not None and drain():
            return True
        pause = interval
        if end is not None:
            pause = min(pause, max(0.0, end - time.monotonic()))
        if process is not None:
            try:
                process.wait(timeout=pause)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(pause)


def stop_workload(process: subprocess.Popen | Workload | None) -> None:
    """Kill the workload and whatever it started that is still in its process group
    (it runs in a session of its own), also when the shell itself has exited: its
    background jobs do not outlive the window. (What left the group with setsid or
    by daemonizing is beyond reach.)"""
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # nothing of the group is left
    process.wait()
