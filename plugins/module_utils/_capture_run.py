# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One trace_capture task on the traced host, from its options to its result.

`capture(params)` is what the module calls: `state=started` opens a window and
returns (`_capture_window`); `captured` and `collected` close a window, read it out
into a file in the action's work directory (`_capture_formats`, one class per
format), and return what the action needs to fetch and file it. A workload, when
there is one, runs during the window (`_workload`).

The capture keeps itself out of what it records (`_capture_self`): its helper
processes and a held workload are started before the window, then its own pids go
into the buffer's notrace lists, then the window opens, the anchor markers are
written (`_capture_anchor`), and only then is the workload let go. When the window
has closed the pids come out of the lists again.

Whatever happens, tracing_on is put back, the workload and the compressors are
stopped and the partial files removed; when the controller went away, the capture's
own files go too, since nobody will fetch them.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import resource
import tempfile
import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils import (
    _capture,
    _capture_anchor,
    _capture_spec,
    _compress,
    _tracedat_writer,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import CaptureError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture_formats import (
    Budget,
    CaptureFormat,
    format_class,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture_self import QuietPids, own_processes
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture_window import Window
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._instance import open_instance
from ansible_collections.tracefleet.ftrace.plugins.module_utils._workload import Abandoned, Workload, wait_window


def capture(params: dict) -> tuple[dict, list[str]]:
    """Run the task with the module's validated `params`; returns the result and the
    warnings. Expected failures raise TracefleetError (an OSError becomes a
    CaptureError with the same text). A failure while cleaning up after another one
    is added to its message, never put in its place."""
    run = None
    try:
        run = CaptureRun(params)
        if params["state"] == "started":
            if params["start_at"] is not None or params["duration"] is not None:
                return run.arm()
            return run.start(), []
        return run.collect()
    except OSError as exc:
        message = str(exc)
        if exc.errno in _compress.NO_SPACE:
            message = str(_compress.no_space(exc.filename or params["work_dir"] or "/", exc.strerror))
        raise CaptureError(_with_cleanup(message, run)) from exc
    except TracefleetError as exc:
        if run is not None and run.cleanup_problems:
            exc.args = (_with_cleanup(str(exc), run),)
        raise


def _with_cleanup(message: str, run: CaptureRun | None) -> str:
    if run is None or not run.cleanup_problems:
        return message
    return "%s (and cleaning up failed too: %s)" % (message, "; ".join(run.cleanup_problems))


def iso(wall: float) -> str:
    stamp = datetime.datetime.fromtimestamp(wall, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CaptureRun:
    def __init__(self, params: dict) -> None:
        self.params = params
        self.cleanup_problems: list[str] = []
        self.buffer = open_instance(params["tracefs_path"], params["instance"])
        self.window = Window(self.buffer, params["ledger_path"], params["session"], params["clear"])
        self.result: dict = dict(changed=True, kernel=os.uname().release, trace_clock=_capture.clock(self.buffer))
        self.quiet = (
            None if params["include_self"] else QuietPids(self.buffer, params["ledger_path"], params["session"])
        )
        self.anchor_problem: str | None = None

    def _quiet(self, pids: list) -> None:
        if self.quiet is not None:
            self.quiet.add(pids)

    def _unquiet(self) -> None:
        if self.quiet is not None:
            self.quiet.remove()

    def _samples(self) -> dict | None:
        """The anchor markers, written into the open window."""
        samples, self.anchor_problem = _capture_anchor.take_samples(self.buffer, self.window.captured)
        return samples

    @contextlib.contextmanager
    def _cleanup(self, *steps):
        """Run each (label, callable) step when the block ends, however it ends. A step
        that fails does not stop the others; its error goes into cleanup_problems, and
        is raised only when the block itself succeeded."""
        failed_before = len(self.cleanup_problems)
        try:
            yield
        except BaseException:
            self._run_steps(steps)
            raise
        self._run_steps(steps)
        if len(self.cleanup_problems) > failed_before:
            problems = self.cleanup_problems[failed_before:]
            del self.cleanup_problems[failed_before:]
            raise CaptureError("cleaning up after the capture failed: %s" % "; ".join(problems))

    def _run_steps(self, steps) -> None:
        for label, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - every step runs, and each failure is reported
                self.cleanup_problems.append("%s: %s" % (label, exc))

    def start(self) -> dict:
        """state=started: open a window that a later task collects. The anchor's
        markers are found when it is collected."""
        with self._cleanup(("taking the capture's pids out of the notrace lists", self._unquiet)):
            self._quiet(own_processes())
            facts = self.window.open(record_capture=True)
            facts["anchor"] = self._samples()
            self.window.remember_start(facts)
        return dict(
            self.result,
            started=iso(facts["wall"]),
            clock_anchor=_capture_anchor.anchor(facts["anchor"], {}, self.result["trace_clock"]),
            cpus_offline=self.window.offline,
        )

    def arm(self) -> tuple[dict, list[str]]:
        """state=started with start_at or duration: arm a window that its keeper opens
        at start_at (or at once) and closes after duration (or when collected)."""
        params = self.params
        start_at = _capture_spec.start_time(params["start_at"])
        armed = self.window.arm(start_at, params["duration"])
        result = dict(
            self.result,
            started=None,
            start_at=iso(start_at) if start_at is not None else None,
            late=armed["late"],
            clock_anchor=_capture_anchor.anchor(None, {}, self.result["trace_clock"]),
            cpus_offline=self.window.offline,
        )
        warnings = []
        if armed["late"]:
            warnings.append(
                "%s: armed after start_at=%s: the window opened as soon as it was armed, late (collect it to "
                "see when)" % (self.window.where(), result["start_at"])
            )
        return result, warnings

    def collect(self) -> tuple[dict, list[str]]:
        """state=captured (open, wait, close) or collected (close what `started` opened):
        read the window out into <work_dir>/<name>.<dat|txt>[.zst|.gz]."""
        params, state = self.params, self.params["state"]
        work_dir = params["work_dir"] or tempfile.mkdtemp(prefix="tracefleet-capture-")
        if not os.path.isdir(work_dir):
            raise CaptureError("work_dir=%s is not a directory" % work_dir)
        # What can be refused is refused before the buffer is touched.
        inside = params["format"] == "dat" and params["file_version"] == 7
        method = _compress.choose(params["compress"], inside=inside)
        budget = Budget(params["max_bytes"], work_dir)
        budget.check_start()
        kind = format_class(params["format"], params["file_version"])
        plain = os.path.join(work_dir, params["name"] + kind.suffix)
        packed = plain if inside else plain + _compress.SUFFIX[method]
        parts_dir = tempfile.mkdtemp(prefix="parts-", dir=work_dir)
        output = kind(
            self.buffer, self.window.cpus, self.window.captured, method, parts_dir, plain, params["kallsyms"], budget
        )
        output.started = lambda pid: self._quiet([pid])
        timings = dict(before=0.0, window=0.0, during=0.0, after=0.0, compress_cpu=0.0, cpu=0.0)
        self.workload: Workload | None = None
        abandoned: list[bool] = []

        def remove_parts() -> None:
            for name in os.listdir(parts_dir):
                os.unlink(os.path.join(parts_dir, name))
            os.rmdir(parts_dir)

        def stop_workload() -> None:
            if self.workload is not None:
                self.workload.stop()

        def close_workload() -> None:
            if self.workload is not None:
                self.workload.close()

        def remove_abandoned() -> None:
            if abandoned:
                _remove_capture_files(work_dir, params["name"])

        with self._cleanup(
            ("stopping the workload", stop_workload),
            ("stopping the compressors", output.abort),
            ("closing the workload's output", close_workload),
            ("removing %s" % parts_dir, remove_parts),
            ("removing the capture's files", remove_abandoned),
            ("taking the capture's pids out of the notrace lists", self._unquiet),
        ):
            try:
                output.check()
                if state == "collected":
                    # The window ends as this task begins: nothing of its own work is recorded.
                    # An armed window is waited for first; its time is the window's, not
                    # this task's (the timings and the CPU start after it).
                    facts = self.window.started_facts()
                    self.window.stop()
                began = time.monotonic()
                cpu_began = cpu_seconds()
                pids = output.spawn()
                if state == "captured":
                    # Made before the pids are listed (see _capture_self), run once the window is open.
                    self.workload = self._start_workload(work_dir, output)
                    self._quiet(own_processes() + pids)
                    facts = self.window.open(record_capture=False)
                    facts["anchor"] = self._samples()
                events = _capture.enabled_events(self.buffer)
                timings["before"] = round(time.monotonic() - began, 6)
                finder = None
                if facts.get("anchor") and params["format"] == "dat":
                    count = len(facts["anchor"]["samples"])
                    finder = _capture_anchor.MarkerFinder(self.buffer, output.page_size, count)
                with self._cleanup(
                    ("taking the capture's pids out of the notrace lists", self._unquiet),
                    (
                        "putting tracing_on back",
                        lambda: self.window.restore(facts, forget_capture=state == "collected"),
                    ),
                    ("closing the ring buffer", output.close_reader),
                ):
                    output.start({facts["anchor"]["cpu"]: finder} if finder else None)
                    if self.workload is not None:
                        self.workload.release()
                    during = time.monotonic()
                    output.prepare(events)
                    timings["during"] = time.monotonic() - during
                    closed_by = "duration" if facts.get("closed") is not None else "collected"
                    if state == "captured":
                        closed_by = self._wait(output)
                    self.window.stop()
                    closed = time.monotonic()
                    ended = facts.get("closed") or time.time()
                    timings["window"] = round(max(0.0, ended - (facts.get("wall") or ended)), 6)
                    timings["during"] = round(timings["during"] + output.busy, 6)
                    output.window_closed()
                    # One read of each CPU's stats: the text goes into a trace.dat as it is.
                    after_text = [_capture.stats_text(self.buffer, cpu) for cpu in self.window.cpus]
                if self.workload is not None:
                    self.result.update(self.workload.result())
                    self._check_rc(self.workload)
                anchor = self._anchor(facts.get("anchor"), finder, output)
                date = b""
                if anchor["trace_ns"] is not None:
                    date = _tracedat_writer.date_option(anchor["wall_ns"] - anchor["trace_ns"])
                stored, compress_cpu = output.pack(after_text, packed, date)
                timings["compress_cpu"] = round(compress_cpu, 6)
                timings["after"] = round(time.monotonic() - closed, 6)
                # zstd frames and gzip members carry their own checksums, which the controller's
                # decompression verifies; an uncompressed file gets a sha256.
                digest = _compress.sha256(packed) if method == "none" or inside else None
                _hand_over(packed, work_dir)
                # The whole capture's CPU from here on: this process and its reaped
                # children (the compressors, reaped in pack), but the workload's own.
                spent = cpu_seconds() - cpu_began - (self.workload.cpu if self.workload is not None else 0.0)
                timings["cpu"] = round(max(0.0, spent), 6)
            except Abandoned:
                abandoned.append(True)
                raise

        stats_after = {
            cpu: _capture.parse_stats(text.decode(errors="replace"))
            for cpu, text in zip(self.window.cpus, after_text)
            if cpu in self.window.captured and cpu not in output.no_buffer
        }
        counts = _capture.kernel_events(facts["before"], stats_after, consumed=output.consumes)
        lost = _capture.loss(facts["before"], stats_after)
        self.result.update(
            file=packed,
            file_name=os.path.basename(plain),
            compress=method,
            bytes=os.path.getsize(packed),
            raw_bytes=stored,
            sha256=digest,
            events=sum(counts.values()),
            events_per_cpu={str(k): v for k, v in counts.items()},
            lost_events={str(k): v for k, v in lost.items()},
            cpus_offline=sorted(self.window.offline + output.no_buffer),
            closed_by=closed_by,
            budget_reached=budget.reached is not None,
            seconds=timings["window"],
            started=iso(facts["wall"]) if facts.get("wall") else None,
            clock_anchor=anchor,
            enabled_events=_capture.summarise_events(self.buffer, events),
            timings=timings,
            format=params["format"],
            instance=params["instance"],
            excluded_pids=self.quiet.pids if self.quiet is not None else [],
        )
        if params["format"] == "dat":
            self.result["file_version"] = params["file_version"]
        if facts.get("start_at") is not None:
            self.result.update(
                start_at=iso(facts["start_at"]),
                late=facts["late"],
                start_delay=round(facts["wall"] - facts["start_at"], 6),
            )
        if facts.get("anchor_problem"):
            self.anchor_problem = facts["anchor_problem"]
        warnings = self._warnings(output, events, lost)
        if facts.get("late"):
            warnings.append(
                "%s: the window was armed after start_at=%s and opened %.3f s late, at %s"
                % (self.window.where(), self.result["start_at"], self.result["start_delay"], self.result["started"])
            )
        if facts.get("keeper_gone"):
            warnings.append(
                "%s: the window's keeper process (pid %s) is gone: it did not close the window after its "
                "duration; this task closed it, %.1f s after it opened"
                % (self.window.where(), facts["keeper_gone"], timings["window"])
            )
        return self.result, warnings

    def _anchor(self, samples: dict | None, finder, output: CaptureFormat) -> dict:
        """The anchor from the markers found in the pages (dat) or the text."""
        clock = self.result["trace_clock"]
        if not samples:
            return _capture_anchor.anchor(None, {}, clock)
        if finder is not None:
            return _capture_anchor.anchor(samples, finder.found, clock)
        if os.path.exists(output.plain):
            found = _capture_anchor.find_in_text(output.plain, len(samples["samples"]))
            return _capture_anchor.anchor(samples, found, clock, extra_ns=1000)
        return _capture_anchor.anchor(samples, {}, clock)

    def _start_workload(self, work_dir: str, output: CaptureFormat) -> Workload | None:
        if self.params["command"] is None:
            return None
        return Workload(self.params["command"], work_dir, output.nofile_before, held=True)

    def _wait(self, output: CaptureFormat) -> str:
        """Wait out the duration, or the workload up to its timeout, draining the buffer
        as it goes. Returns what closed the window: `duration`, `command`, or the
        budget (`max_bytes`, `free_space`): then recording stops there, and a workload
        runs on to its end (or its timeout). What the workload left running in its
        process group (background jobs) is killed when the window ends."""
        params, workload = self.params, self.workload
        process = workload  # reaped by the Workload itself, which keeps its CPU time apart from ours
        deadline = time.monotonic() + params["timeout"] if workload is not None else None
        finished = wait_window(params["duration"] if workload is None else None, process, output.drain, deadline)
        closed_by = "command" if workload is not None else "duration"
        if finished and output.budget.reached:
            closed_by = output.budget.reached
            self.window.stop()
            if process is not None:
                finished = wait_window(None, process, None, deadline)
        if workload is not None:
            workload.stop()
        if not finished:
            raise CaptureError(
                "command=%r ran longer than timeout=%s seconds and was "
                "killed; nothing was fetched" % (params["command"], params["timeout"])
            )
        return closed_by

    def _check_rc(self, workload: Workload) -> None:
        params = self.params
        if workload.returncode not in params["allowed_rc"]:
            raise CaptureError(
                "command=%r exited with rc %s (allowed_rc: %s); nothing was fetched. stderr: %s"
                % (params["command"], workload.returncode, params["allowed_rc"], self.result["stderr"][-2000:].strip())
            )

    def _warnings(self, output: CaptureFormat, events: list, lost: dict) -> list[str]:
        where = self.window.where()
        warnings = [warning for warning in [output.budget.warning(where)] if warning]
        anchor = self.result["clock_anchor"]
        if anchor["uncertainty_ns"] is None:
            warnings.append(
                "%s: no wall-clock anchor: %s; the file cannot be put on one timeline with other hosts'"
                % (where, self.anchor_problem or "its markers were not found in the capture (overwritten or lost)")
            )
        elif anchor["trace_ns"] is None:
            warnings.append(
                "%s: trace_clock=%s does not count nanoseconds: the anchor markers are in the capture, but "
                "clock_anchor has no trace time and the trace.dat no DATE option" % (where, anchor["clock"])
            )
        online_now = _capture.online_cpus() or set()
        for cpu in sorted((online_now & set(self.window.cpus)) - set(self.window.captured)):
            warnings.append("cpu%d came online during the window: its events are not in the capture" % cpu)
        if not events:
            warning = output.no_events_warning(where)
            if warning:
                warnings.append(warning)
        if sum(lost.values()):
            warnings.append(
                "%s lost %d events during the window (per CPU: %s): the reader or the "
                "buffer could not keep up; a bigger buffer_size_kb helps"
                % (where, sum(lost.values()), ", ".join("cpu%s=%d" % item for item in sorted(lost.items())))
            )
        return warnings


def cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its children reaped so far
    (with what they reaped in turn)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _hand_over(path: str, work_dir: str) -> None:
    """Give the file to the owner of work_dir (the login user, when the module ran with
    become), so the connection can fetch it."""
    info = os.stat(work_dir)
    if os.geteuid() == 0 and info.st_uid != 0:
        os.chown(path, info.st_uid, info.st_gid)


def _remove_capture_files(work_dir: str, name: str) -> None:
    """Nobody will fetch or clean up after an abandoned window: leave no trace of the
    capture on the host."""
    for entry in os.listdir(work_dir):
        if entry.startswith(name + "."):
            os.unlink(os.path.join(work_dir, entry))
    try:
        os.rmdir(work_dir)
    except OSError:
        pass
