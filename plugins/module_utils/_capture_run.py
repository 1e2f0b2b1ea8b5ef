# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One trace_capture task on the traced host, from its options to its result.

`capture(params)` is what the module calls: `state=started` opens a window and
returns (`_capture_window`); `captured` and `collected` close a window, read it out
into a file in the action's work directory (`_capture_formats`, one class per
format), and return what the action needs to fetch and file it. A workload, when
there is one, runs during the window (`_workload`).

Whatever happens, tracing_on is put back, the workload and the compressors are
stopped and the partial files removed; when the controller went away, the capture's
own files go too, since nobody will fetch them.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture, _compress
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import CaptureError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture_formats import FORMATS, CaptureFormat
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture_window import Window
from ansible_collections.tracefleet.ftrace.plugins.module_utils._instance import open_instance
from ansible_collections.tracefleet.ftrace.plugins.module_utils._workload import Abandoned, Workload, wait_window


def capture(params: dict) -> tuple[dict, list[str]]:
    """Run the task with the module's validated `params`; returns the result and the
    warnings. Expected failures raise TracefleetError (an OSError becomes a
    CaptureError with the same text)."""
    try:
        run = CaptureRun(params)
        if params["state"] == "started":
            return run.start(), []
        return run.collect()
    except OSError as exc:
        raise CaptureError(str(exc)) from exc


def iso(wall: float) -> str:
    stamp = datetime.datetime.fromtimestamp(wall, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CaptureRun:
    def __init__(self, params: dict) -> None:
        self.params = params
        self.buffer = open_instance(params["tracefs_path"], params["instance"])
        self.window = Window(self.buffer, params["ledger_path"], params["session"], params["clear"])
        self.result: dict = dict(changed=True, kernel=os.uname().release, trace_clock=_capture.clock(self.buffer))

    def _anchor(self, facts: dict) -> dict:
        return dict(wall=facts.get("wall"), trace=facts.get("trace_now"), clock=self.result["trace_clock"])

    def start(self) -> dict:
        """state=started: open a window that a later task collects."""
        facts = self.window.open(record_capture=True)
        self.window.remember_start(facts)
        return dict(self.result, started=iso(facts["wall"]), clock_anchor=self._anchor(facts))

    def collect(self) -> tuple[dict, list[str]]:
        """state=captured (open, wait, close) or collected (close what `started` opened):
        read the window out into <work_dir>/<name>.<dat|txt>[.zst|.gz]."""
        params, state = self.params, self.params["state"]
        work_dir = params["_work_dir"] or tempfile.mkdtemp(prefix="tracefleet-capture-")
        if not os.path.isdir(work_dir):
            raise CaptureError("work_dir=%s is not a directory" % work_dir)
        parts_dir = tempfile.mkdtemp(prefix="parts-", dir=work_dir)
        method = _compress.choose(params["compress"])
        kind = FORMATS[params["format"]]
        plain = os.path.join(work_dir, params["name"] + kind.suffix)
        packed = plain + _compress.SUFFIX[method]
        output = kind(self.buffer, self.window.cpus, method, parts_dir, plain, params["kallsyms"])
        timings = dict(before=0.0, window=0.0, during=0.0, after=0.0, compress_cpu=0.0)
        workload = None
        abandoned = False
        try:
            began = time.monotonic()
            facts = self.window.started_facts() if state == "collected" else self.window.open(record_capture=False)
            events = _capture.enabled_events(self.buffer)
            timings["before"] = round(time.monotonic() - began, 6)
            try:
                output.start()
                if state == "captured":
                    workload = self._start_workload(work_dir)
                during = time.monotonic()
                output.prepare(events)
                timings["during"] = time.monotonic() - during
                if state == "captured":
                    self._wait(workload, output.drain)
                self.window.stop()
                closed = time.monotonic()
                timings["window"] = round(time.time() - (facts.get("wall") or time.time()), 6)
                timings["during"] = round(timings["during"] + output.busy, 6)
                output.window_closed()
                # One read of each CPU's stats: the text goes into a trace.dat as it is.
                after_text = [_capture.stats_text(self.buffer, cpu) for cpu in self.window.cpus]
            finally:
                try:
                    self.window.restore(facts, forget_capture=state == "collected")
                finally:
                    output.close_reader()
            if workload is not None:
                self.result.update(workload.result())
                self._check_rc(workload)
            stored, compress_cpu = output.pack(after_text, packed)
            timings["compress_cpu"] = round(compress_cpu, 6)
            timings["after"] = round(time.monotonic() - closed, 6)
            # zstd frames and gzip members carry their own checksums, which the controller's
            # decompression verifies; an uncompressed file gets a sha256.
            digest = _compress.sha256(packed) if method == "none" else None
            _hand_over(packed, work_dir)
        except Abandoned:
            abandoned = True
            raise
        finally:
            if workload is not None:
                workload.stop()
            output.abort()
            if workload is not None:
                workload.close()
            for name in os.listdir(parts_dir):
                os.unlink(os.path.join(parts_dir, name))
            os.rmdir(parts_dir)
            if abandoned:
                _remove_capture_files(work_dir, params["name"])

        after = {
            cpu: _capture.parse_stats(text.decode(errors="replace")) for cpu, text in zip(self.window.cpus, after_text)
        }
        counts = _capture.kernel_events(facts["before"], after, consumed=output.consumes)
        lost = _capture.loss(facts["before"], after)
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
            seconds=timings["window"],
            started=iso(facts["wall"]) if facts.get("wall") else None,
            clock_anchor=self._anchor(facts),
            enabled_events=_capture.summarise_events(self.buffer, events),
            timings=timings,
            format=params["format"],
            instance=params["instance"],
        )
        return self.result, self._warnings(output, events, lost)

    def _start_workload(self, work_dir: str) -> Workload | None:
        if self.params["command"] is None:
            if self.params["duration"] is None:
                raise CaptureError("state=captured needs duration or command")
            return None
        return Workload(self.params["command"], work_dir)

    def _wait(self, workload: Workload | None, drain) -> None:
        """Wait out the duration, or the workload up to its timeout."""
        params = self.params
        finished = wait_window(
            params["duration"] if workload is None else None,
            workload.process if workload is not None else None,
            drain,
            time.monotonic() + params["timeout"] if workload is not None else None,
        )
        if not finished:
            if workload is None:
                raise AssertionError("a command window without a workload")
            workload.stop()
            raise CaptureError(
                "command=%r ran longer than timeout=%s seconds and was "
                "killed; nothing was fetched" % (params["command"], params["timeout"])
            )

    def _check_rc(self, workload: Workload) -> None:
        params = self.params
        if workload.returncode not in params["allowed_rc"]:
            raise CaptureError(
                "command=%r exited with rc %s (allowed_rc: %s); nothing was fetched. stderr: %s"
                % (params["command"], workload.returncode, params["allowed_rc"], self.result["stderr"][-2000:].strip())
            )

    def _warnings(self, output: CaptureFormat, events: list, lost: dict) -> list[str]:
        where = self.window.where()
        warnings = []
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
