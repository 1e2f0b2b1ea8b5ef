#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: trace_capture
short_description: Record a window of a tracing buffer and fetch it to the controller
version_added: 0.1.0
description:
  - Records what a tracing buffer (an instance, or the top level) collects during a
    window, on the traced host, and brings the result to the controller under
    C(<dest>/<run_id>/<inventory_hostname>/), with a C(manifest.json) per run.
  - The window is O(duration) seconds, or the run of a workload O(command), or spans
    tasks for long captures (O(state=started), later O(state=collected)).
  - With O(format=dat) the per-CPU ring buffers are read raw from
    C(per_cpu/cpuN/trace_pipe_raw) (consuming, whole pages, no text formatting in the
    kernel) during the window and written as a trace-cmd C(trace.dat) (file version 6)
    with the headers, the ftrace formats and the formats of the enabled events, kallsyms,
    printk formats, saved cmdlines, per-CPU stats and the trace clock, which
    C(trace-cmd report) and KernelShark open. With O(format=text) the buffer's C(trace)
    file (formatted by the kernel) is copied at the end of the window.
  - The file is compressed on the target, moved with the connection's own file transfer
    and decompressed on the controller. When the connection cannot fetch the file (a
    C(become) setup that keeps it unreadable to the login user), it is streamed in
    chunks instead, never held whole in memory.
  - Loss is reported, never hidden. The overrun, commit overrun and dropped event counts
    of C(per_cpu/cpuN/stats) are read before and after the window, and a capture that
    lost events succeeds with a warning giving the numbers.
  - When the controller goes away while the window is open (nobody reads the module's
    output any more), the window is closed, the workload and everything it started is
    killed, and the host is put back as below.
  - The capture leaves no files on the target. Afterwards the buffer's C(tracing_on) is
    back as it was; only the buffer's contents have been consumed (or, with O(clear),
    emptied at the start).
  - All hosts of one play share a O(run_id) by default. Each host's files land in its own
    directory, named after the inventory name with anything but letters, digits, C(.),
    C(_) and C(-) replaced (so C(../x) stays inside O(dest)). A host whose capture
    fails leaves no files behind; the other hosts' files and manifest entries are
    untouched.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.tracing
  - tracefleet.ftrace.tracing.INSTANCE
attributes:
  action:
    support: full
    description: Runs on the target, then fetches and files the result on the controller.
  check_mode:
    support: partial
    details:
      - In check mode the task is skipped; nothing is recorded or fetched.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Each run records a new window and writes new files.
options:
  state:
    description:
      - V(captured) opens the window, waits for O(duration) or O(command), and collects.
      - V(started) opens a window and returns; the buffer records until a later task with
        V(collected) on the same O(instance) closes it and fetches the result. The open
        window is recorded in the ledger, so M(tracefleet.ftrace.teardown) puts
        C(tracing_on) back if the play never gets to V(collected).
    type: str
    choices: [captured, started, collected]
    default: captured
  duration:
    description:
      - Length of the window in seconds, for O(state=captured).
      - With O(command), an upper bound is given by O(timeout) instead.
    type: float
  command:
    description:
      - A workload run by C(/bin/sh -c) on the target during the window; the window closes
        when it exits. Its C(rc), C(stdout) and C(stderr) are returned.
    type: str
  timeout:
    description:
      - Seconds the O(command) may run. When it runs longer it is killed, and the task
        fails without fetching anything.
    type: float
    default: 600
  allowed_rc:
    description:
      - Exit codes of O(command) that count as success. Any other fails the task, and no
        files are kept.
    type: list
    elements: int
    default: [0]
  format:
    description:
      - V(dat) writes a trace-cmd trace.dat from the raw ring buffer; V(text) copies the
        kernel's text rendering of the buffer (C(trace)).
    type: str
    choices: [dat, text]
    default: dat
  compress:
    description:
      - How the file travels. V(auto) uses zstd when the target and the controller both
        have the C(zstd) program, else gzip. The file is stored decompressed on the
        controller.
    type: str
    choices: [auto, zstd, gzip, none]
    default: auto
  clear:
    description:
      - Empty the buffer when the window opens, so the capture holds only the window.
        With V(false) what the buffer already holds is captured too.
    type: bool
    default: true
  kallsyms:
    description:
      - Include C(/proc/kallsyms) in a trace.dat, so that function addresses (function
        tracer, kprobe and stack events) show as names. It is the biggest part of the
        header (a few MiB before compression).
    type: bool
    default: true
  dest:
    description:
      - Directory on the controller for the results. Relative paths are taken from the
        controller's current working directory.
    type: path
    default: traces
  run_id:
    description:
      - The run's directory name under O(dest). By default one id is made for the play,
        shared by all its hosts (and all its batches with C(serial)), from the time and a
        random part, such as C(20261127T031500Z-1a2b3c4d).
      - Only letters, digits, C(.), C(_) and C(-), not starting with C(.).
    type: str
  name:
    description:
      - Base name of the capture's file in the host's directory (C(<name>.dat) or
        C(<name>.txt)). A later capture with the same name in the same run replaces it.
    type: str
    default: trace
  transfer:
    description:
      - How the file reaches the controller. V(auto) uses the connection's file transfer
        and falls back to V(chunks) when that fails; V(chunks) streams it through the
        connection's shell in 4 MiB pieces.
    type: str
    choices: [auto, fetch, chunks]
    default: auto
  work_dir:
    description:
      - Directory on the target where the capture is assembled. The action plugin sets it
        to the task's temporary directory and removes it afterwards; there is no need to
        set it.
    type: path
notes:
  - The window's timestamps are the buffer's C(trace_clock). The result's RV(clock_anchor)
    pairs the target's wall-clock time with the trace clock at the window's start, for
    putting hosts on one timeline.
  - Only the formats of the events enabled in the buffer when the window opens are
    written into a trace.dat (plus the C(ftrace) ones); events enabled only by a
    trigger during the window show as unknown in C(trace-cmd report).
  - For long captures with O(state=started), size the buffer for the whole window with
    the O(tracefleet.ftrace.tracer#module:buffer_size_kb) option of M(tracefleet.ftrace.tracer).
    Nothing reads the buffer until V(collected), and what does not fit is reported as lost.
seealso:
  - module: tracefleet.ftrace.trace_event
  - module: tracefleet.ftrace.teardown
  - name: trace-cmd.dat v6 file format
    description: The man page trace-cmd.dat.v6(5), from the trace-cmd package.
    link: https://www.trace-cmd.org/Documentation/trace-cmd/trace-cmd.dat.v6.5.html
"""

EXAMPLES = r"""
- name: Capture five seconds of the session's instance
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    duration: 5

- name: Capture while a workload runs, into a named run
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    command: /usr/local/bin/reproduce-issue --iterations 100
    timeout: 120
    dest: /srv/traces
    run_id: incident-4711
  register: capture

- name: Start a long capture, do other work, then collect it
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    state: started

- name: Collect it as text
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    state: collected
    format: text
"""

RETURN = r"""
run_id:
  description: The run the files belong to.
  returned: when a capture was fetched
  type: str
  sample: 20261127T031500Z-1a2b3c4d
path:
  description: The host's directory on the controller.
  returned: when a capture was fetched
  type: str
  sample: /home/me/traces/20261127T031500Z-1a2b3c4d/web01
files:
  description: The files stored on the controller.
  returned: when a capture was fetched
  type: list
  elements: str
  sample: [/home/me/traces/20261127T031500Z-1a2b3c4d/web01/trace.dat]
manifest:
  description: The run's manifest on the controller.
  returned: when a capture was fetched
  type: str
  sample: /home/me/traces/20261127T031500Z-1a2b3c4d/manifest.json
events:
  description:
    - Events captured, as the kernel counts them (events read out of the ring buffer for
      V(dat), entries in the buffer for V(text)).
  returned: when a window was collected
  type: int
  sample: 135211
events_per_cpu:
  description: RV(events) per CPU.
  returned: when a window was collected
  type: dict
  sample: {"0": 70101, "1": 65110}
lost_events:
  description: Events lost per CPU during the window (overrun, commit overrun and dropped).
  returned: when a window was collected
  type: dict
  sample: {"0": 0, "1": 0}
bytes:
  description: Bytes moved from the target to the controller (compressed).
  returned: when a capture was fetched
  type: int
  sample: 1893422
stored_bytes:
  description: Bytes stored on the controller (decompressed).
  returned: when a capture was fetched
  type: int
  sample: 9127936
seconds:
  description: Length of the window in seconds.
  returned: when a window was collected
  type: float
  sample: 5.01
started:
  description: Wall-clock time on the target when the window opened (UTC, ISO 8601).
  returned: always, unless skipped
  type: str
  sample: "2026-11-27T03:15:02.123456Z"
clock_anchor:
  description:
    - The target's wall clock (seconds since the epoch) and the buffer's trace clock
      (seconds) read together when the window opened.
  returned: always, unless skipped
  type: dict
  sample: {"wall": 1795750502.123456, "trace": 1234.567891, "clock": "local"}
compress:
  description: How the file travelled.
  returned: when a window was collected
  type: str
  sample: zstd
kernel:
  description: The target's kernel release.
  returned: always, unless skipped
  type: str
  sample: 6.1.0-56-cloud-amd64
trace_clock:
  description: The buffer's trace clock.
  returned: always, unless skipped
  type: str
  sample: local
enabled_events:
  description: The events enabled in the buffer when the window closed.
  returned: when a window was collected
  type: list
  elements: str
  sample: ["sched:sched_switch", "sched:sched_wakeup"]
timings:
  description:
    - Seconds on the target. C(before) is opening the window; C(window) the window
      itself; C(during) this module's own work while the window was open (ring-buffer
      reads, and the formats and kallsyms of a trace.dat); C(after) from the end of the
      window until the compressed file was ready; C(compress_cpu) the CPU time of the
      compressor processes, which run alongside.
  returned: when a window was collected
  type: dict
  sample: {"before": 0.02, "window": 5.0, "during": 0.41, "after": 0.08, "compress_cpu": 0.3}
cmd:
  description: The workload command.
  returned: when O(command) was given
  type: str
rc:
  description: The workload's exit code.
  returned: when O(command) was given
  type: int
stdout:
  description: The workload's standard output.
  returned: when O(command) was given
  type: str
stderr:
  description: The workload's standard error.
  returned: when O(command) was given
  type: str
"""

import datetime
import os
import re
import subprocess
import sys
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture, _compress, _instance, _tracedat_writer
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import Buffer, CaptureError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._session import (
    COMMON_ARGS,
    TracingUnavailable,
    open_instance,
)

ARGUMENT_SPEC = dict(
    instance=dict(type="str"),
    state=dict(type="str", default="captured", choices=["captured", "started", "collected"]),
    duration=dict(type="float"),
    command=dict(type="str"),
    timeout=dict(type="float", default=600),
    allowed_rc=dict(type="list", elements="int", default=[0]),
    format=dict(type="str", default="dat", choices=["dat", "text"]),
    compress=dict(type="str", default="auto", choices=["auto", "zstd", "gzip", "none"]),
    clear=dict(type="bool", default=True),
    kallsyms=dict(type="bool", default=True),
    dest=dict(type="path", default="traces"),
    run_id=dict(type="str"),
    name=dict(type="str", default="trace"),
    transfer=dict(type="str", default="auto", choices=["auto", "fetch", "chunks"]),
    work_dir=dict(type="path"),
    **COMMON_ARGS,
)
MUTUALLY_EXCLUSIVE = [("duration", "command")]


def _iso(wall: float) -> str:
    stamp = datetime.datetime.fromtimestamp(wall, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Window:
    """Opening and closing a capture window on one buffer, with tracing_on put back."""

    def __init__(self, buffer: Buffer, params: dict) -> None:
        self.buffer = buffer
        self.params = params
        self.cpus = buffer.cpus()

    def _ledger(self) -> Ledger:
        return Ledger(self.params["ledger_path"])

    def open(self, record_capture: bool) -> dict:
        """Empty the buffer if asked, note tracing_on, turn it on. Returns the facts the
        close needs (kept in the ledger for a window that spans tasks)."""
        buffer = self.buffer
        was_on = buffer.tracing_on()
        facts = dict(instance=buffer.instance, was_on=was_on)
        with self._ledger() as ledger:
            if record_capture and ledger.find(kind="capture", instance=buffer.instance) is not None:
                raise CaptureError(
                    "a capture window is already open in %s (state=started earlier); "
                    "collect it first with state=collected" % self.where()
                )
            # tracing_on is switched during the window (on while it is open, off while it
            # is read out): record its value so teardown restores it if we die here.
            facts["recorded_knob"] = ledger.record(
                self.params["session"],
                kind="knob",
                instance=buffer.instance,
                file="tracing_on",
                original="1" if was_on else "0",
            )
            if record_capture:
                ledger.record(
                    self.params["session"],
                    kind="capture",
                    instance=buffer.instance,
                    was_on=was_on,
                    recorded_knob=facts["recorded_knob"],
                )
        if self.params["clear"]:
            buffer.clear()
        facts["before"] = buffer.stats(self.cpus)
        facts["wall"] = time.time()
        facts["trace_now"] = next(iter(facts["before"].values()), {}).get("now ts")
        if not was_on:
            buffer.control.write(buffer.rel("tracing_on"), "1")
        return facts

    def stop(self) -> None:
        self.buffer.control.write(self.buffer.rel("tracing_on"), "0")

    def restore(self, facts: dict, forget_capture: bool) -> None:
        buffer = self.buffer
        buffer.control.write(buffer.rel("tracing_on"), "1" if facts["was_on"] else "0")
        with self._ledger() as ledger:
            if facts.get("recorded_knob"):
                entry = ledger.find(kind="knob", instance=buffer.instance, file="tracing_on")
                if entry is not None:
                    ledger.forget(entry)
            if forget_capture:
                entry = ledger.find(kind="capture", instance=buffer.instance)
                if entry is not None:
                    ledger.forget(entry)

    def where(self) -> str:
        return "instance %s" % self.buffer.instance if self.buffer.instance else "the top level"


def _started_facts(window: Window) -> dict:
    with Ledger(window.params["ledger_path"], dry_run=True) as ledger:
        entry = ledger.find(kind="capture", instance=window.buffer.instance)
    if entry is None:
        raise CaptureError("no capture window is open in %s: start one with state=started" % window.where())
    return dict(
        was_on=entry["was_on"],
        recorded_knob=entry.get("recorded_knob"),
        wall=entry.get("wall"),
        trace_now=entry.get("trace_now"),
        before={int(cpu): stats for cpu, stats in entry.get("before", {}).items()},
    )


def _remember_start(window: Window, facts: dict) -> None:
    """Keep the window's start facts in its capture entry, for state=collected."""
    with Ledger(window.params["ledger_path"]) as ledger:
        entry = ledger.find(kind="capture", instance=window.buffer.instance)
        if entry is not None:
            ledger.update(
                entry,
                wall=facts["wall"],
                trace_now=facts["trace_now"],
                before={str(cpu): stats for cpu, stats in facts["before"].items()},
            )


def run(module: AnsibleModule) -> dict:
    params = module.params
    control = open_instance(params["tracefs_path"], params["instance"])
    buffer = Buffer(control, params["instance"])
    window = Window(buffer, params)
    state = params["state"]
    result = dict(changed=True, kernel=os.uname().release, trace_clock=buffer.clock())

    if state == "started":
        facts = window.open(record_capture=True)
        _remember_start(window, facts)
        result.update(
            started=_iso(facts["wall"]),
            clock_anchor=dict(wall=facts["wall"], trace=facts["trace_now"], clock=result["trace_clock"]),
        )
        return result

    work_dir = params["work_dir"] or tempfile.mkdtemp(prefix="tracefleet-capture-")
    if not os.path.isdir(work_dir):
        raise CaptureError("work_dir=%s is not a directory" % work_dir)
    parts_dir = tempfile.mkdtemp(prefix="parts-", dir=work_dir)
    dat = params["format"] == "dat"
    method = _compress.choose(params["compress"])
    plain = os.path.join(work_dir, params["name"] + (".dat" if dat else ".txt"))
    packed = plain + _compress.SUFFIX[method]
    timings = dict(before=0.0, window=0.0, during=0.0, after=0.0, compress_cpu=0.0)
    process, outputs, streams, closing = None, {}, [], None
    try:
        began = time.monotonic()
        facts = _started_facts(window) if state == "collected" else window.open(False)
        events = buffer.enabled_events()
        timings["before"] = round(time.monotonic() - began, 6)
        drainer = None
        try:
            if dat:
                streams = [
                    _compress.Stream(method, os.path.join(parts_dir, "%d-cpu%d" % (2 + cpu, cpu)))
                    for cpu in window.cpus
                ]
                drainer = _capture.Drainer(buffer, window.cpus, streams)
                # Started now, fed when the window has closed: one process less to
                # start then.
                closing = _compress.Stream(method, os.path.join(parts_dir, "1-close"))
            if state == "captured":
                process, outputs = _start_workload(params, work_dir)
            during = time.monotonic()
            if dat:  # the formats and kallsyms, prepared while the workload runs
                layout = _capture.opening_layout(buffer, events, params["kallsyms"])
                opening = _tracedat_writer.opening_bytes(layout)
                streams.insert(0, _compress.Stream(method, os.path.join(parts_dir, "0-open")))
                streams[0].write(opening)
                streams[0].finish()
            timings["during"] = time.monotonic() - during
            if state == "captured":
                finished = _capture.wait_window(
                    params["duration"] if process is None else None,
                    process,
                    drainer,
                    time.monotonic() + params["timeout"] if process is not None else None,
                )
                if not finished:
                    _capture.stop_workload(process)
                    raise CaptureError(
                        "command=%r ran longer than timeout=%s seconds and was "
                        "killed; nothing was fetched" % (params["command"], params["timeout"])
                    )
            window.stop()
            closed = time.monotonic()
            timings["window"] = round(time.time() - (facts.get("wall") or time.time()), 6)
            if drainer is not None:
                timings["during"] = round(timings["during"] + drainer.busy, 6)
                drainer.drain(final=True)
            # One read of each CPU's stats: the text goes into the trace.dat as it is.
            after_text = [buffer.stats_text(cpu) for cpu in window.cpus]
            after = {
                cpu: _capture.parse_stats(text.decode(errors="replace")) for cpu, text in zip(window.cpus, after_text)
            }
            if not dat:  # copied while recording is off: our own reads are not traced
                _capture.copy_text(buffer, plain)
        finally:
            try:
                window.restore(facts, forget_capture=state == "collected")
            finally:
                if drainer is not None:
                    drainer.close()
        result.update(_workload_result(params, process, outputs))
        if process is not None and process.returncode not in params["allowed_rc"]:
            raise CaptureError(
                "command=%r exited with rc %d (allowed_rc: %s); nothing was "
                "fetched. stderr: %s"
                % (params["command"], process.returncode, params["allowed_rc"], result["stderr"][-2000:].strip())
            )
        if dat:
            _compress.finish_all(streams[1:])
            _capture.closing(layout, buffer, after_text)
            sizes = [stream.raw_bytes for stream in streams[1:]]
            _tracedat_writer.check_pages(layout, sizes)
            closing.write(_tracedat_writer.closing_bytes(layout, len(opening), sizes))
            closing.finish()
            streams.insert(1, closing)
            _compress.concatenate([stream.path for stream in streams], packed)
            stored = sum(stream.raw_bytes for stream in streams)
            timings["compress_cpu"] = round(sum(stream.cpu_seconds for stream in streams), 6)
        else:
            stored = os.path.getsize(plain)
            if packed != plain:
                _compress.compress(method, plain, packed)
                os.unlink(plain)
        timings["after"] = round(time.monotonic() - closed, 6)
        # zstd frames and gzip members carry their own checksums, which the controller's
        # decompression verifies; an uncompressed file gets a sha256.
        digest = _compress.sha256(packed) if method == "none" else None
        _hand_over(packed, work_dir)

        counts = _capture.kernel_events(facts["before"], after, consumed=dat)
        lost = _capture.loss(facts["before"], after)
        result.update(
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
            started=_iso(facts["wall"]) if facts.get("wall") else None,
            clock_anchor=dict(wall=facts.get("wall"), trace=facts.get("trace_now"), clock=result["trace_clock"]),
            enabled_events=buffer.summarise_events(events),
            timings=timings,
            format=params["format"],
            instance=params["instance"],
        )
        if not events and dat:
            module.warn("no events are enabled in %s: the capture holds only what a tracer recorded" % window.where())
        if sum(lost.values()):
            module.warn(
                "%s lost %d events during the window (per CPU: %s): the reader or the "
                "buffer could not keep up; a bigger buffer_size_kb helps"
                % (window.where(), sum(lost.values()), ", ".join("cpu%s=%d" % item for item in sorted(lost.items())))
            )
        return result
    finally:
        _capture.stop_workload(process)
        for stream in streams + ([closing] if closing is not None and closing not in streams else []):
            stream.abort()
        for handle in outputs.values():
            handle.close()
        for name in os.listdir(parts_dir):
            os.unlink(os.path.join(parts_dir, name))
        os.rmdir(parts_dir)
        if sys.exc_info()[0] is _capture.Abandoned:
            # Nobody will fetch or clean up: leave no trace of the capture on the host.
            for name in os.listdir(work_dir):
                if name.startswith(params["name"] + "."):
                    os.unlink(os.path.join(work_dir, name))
            try:
                os.rmdir(work_dir)
            except OSError:
                pass


def _start_workload(params: dict, work_dir: str):
    if params["command"] is None:
        if params["duration"] is None:
            raise CaptureError("state=captured needs duration or command")
        return None, {}
    outputs = {name: tempfile.TemporaryFile(dir=work_dir) for name in ("stdout", "stderr")}  # noqa: SIM115
    process = subprocess.Popen(
        ["/bin/sh", "-c", params["command"]],
        stdin=subprocess.DEVNULL,
        stdout=outputs["stdout"],
        stderr=outputs["stderr"],
        start_new_session=True,
    )
    return process, outputs


def _workload_result(params: dict, process, outputs: dict) -> dict:
    if process is None:
        return {}
    texts = {}
    for name, handle in outputs.items():
        handle.seek(0)
        texts[name] = handle.read(1 << 20).decode(errors="replace")
    return dict(cmd=params["command"], rc=process.returncode, **texts)


def _hand_over(path: str, work_dir: str) -> None:
    """Give the file to the owner of work_dir (the login user, when the module ran with
    become), so the connection can fetch it."""
    info = os.stat(work_dir)
    if os.geteuid() == 0 and info.st_uid != 0:
        os.chown(path, info.st_uid, info.st_gid)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="check mode: no window recorded, nothing fetched")
    params = module.params
    if params["state"] != "captured" and (params["duration"] is not None or params["command"]):
        module.fail_json(
            msg="duration and command are for state=captured; with state=%s the window spans tasks" % params["state"]
        )
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", params["name"]):
        module.fail_json(
            msg="name=%r: use letters, digits, '.', '_' and '-', not starting with "
            "'.' (it names a file)" % params["name"]
        )
    if params["duration"] is not None and params["duration"] <= 0:
        module.fail_json(msg="duration=%s: must be more than 0 seconds" % params["duration"])
    try:
        result = run(module)
    except (
        _instance.InstanceError,
        TracingUnavailable,
        CaptureError,
        ControlError,
        LedgerError,
        _compress.CompressError,
        OSError,
    ) as exc:
        module.fail_json(msg="trace_capture (instance=%s): %s" % (params["instance"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
