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
  - An armed window (O(state=started) with O(start_at) and O(duration)) opens at a
    given time of day and closes O(duration) seconds later by itself, so that every
    host of a fleet traces the same seconds whatever order Ansible reaches them in.
    Arming records the window, turns recording off and empties the buffer, and leaves
    a keeper process on the host that turns C(tracing_on) on at O(start_at) (the real
    start, RV(started), is the time of day read just before that write), writes the
    anchor markers, and turns it off again after O(duration). O(state=collected) waits
    for the keeper, then reads the window out. A host armed after O(start_at) opens its
    window at once and reports it (RV(late), RV(start_delay), a warning); it is never
    shifted silently. The keeper is in the ledger, so M(tracefleet.ftrace.teardown)
    ends it before it puts C(tracing_on) back. The hosts' clocks must agree (NTP or
    PTP), since each host opens the window by its own clock.
  - With O(format=dat) the per-CPU ring buffers are read raw from
    C(per_cpu/cpuN/trace_pipe_raw) (consuming, whole pages, no text formatting in the
    kernel) during the window and written as a trace-cmd C(trace.dat) with the headers,
    the ftrace formats and the formats of the enabled events, kallsyms, printk formats,
    saved cmdlines, per-CPU stats, the trace clock and the wall-clock offset (the DATE
    option), which C(trace-cmd report) and KernelShark open. By default it is trace-cmd's
    compressed file version 7 (O(file_version)), which travels and is stored as it is.
    With O(format=text) the buffer's C(trace) file (formatted by the kernel) is copied at
    the end of the window.
  - A version 6 trace.dat or a text file is compressed on the target, moved with the
    connection's own file transfer and decompressed on the controller. When the
    connection cannot fetch the file (a C(become) setup that keeps it unreadable to the
    login user), it is streamed in chunks instead, never held whole in memory.
  - Each window is anchored to the wall clock. Right after it opens, the module writes
    16 markers into the buffer's C(trace_marker), each between two reads of the target's
    clock (CLOCK_REALTIME), and finds them in what it reads back; the narrowest bracket
    gives RV(clock_anchor) and its uncertainty, and the trace.dat's DATE option, so
    C(trace-cmd report -i host1/trace.dat -i host2/trace.dat) shows every host's events on
    one wall-clock timeline. The markers stay in the capture
    (C(tracefleet-anchor N wall_ns=...), the time of day read just before each).
  - The capture keeps its own processes out of the events it records, as
    C(trace-cmd record) does. The module's process, its compressors, and the processes
    Ansible started it in (its parents in the same session, up to sshd) are listed in
    the buffer's C(set_event_notrace_pid) (and C(set_ftrace_notrace_pid) while a function
    tracer is set) for the window, and taken out afterwards (recorded in the ledger first,
    so M(tracefleet.ftrace.teardown) takes them out if the play dies). The workload of
    O(command) is started before that, so it and its children are traced, with
    C(options/event-fork) too. O(include_self=true) records everything.
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
    directory, named after the inventory name; a name that is not lower-case letters,
    digits, C(.), C(_) and C(-), or is one of the run's own names (C(manifest.json),
    C(report.html), C(audit)), gets a hash suffix (so C(../x) stays inside O(dest), and
    C(Web01) and C(web01) never share a directory). Directories are created 0700, files
    0600. A host whose capture fails leaves no files behind; the other hosts' files and
    manifest entries are untouched. What the host returns is checked before anything is
    fetched (see docs/security.md).
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
        V(collected) on the same O(instance) and O(session) closes it and fetches the
        result. The open window is recorded in the ledger, so M(tracefleet.ftrace.teardown)
        puts C(tracing_on) back if the play never gets to V(collected).
      - A buffer has one window at a time. While a window opened with V(started) is open,
        any other V(started) or V(captured) on that buffer is refused (naming the session
        that opened it) before anything is changed.
    type: str
    choices: [captured, started, collected]
    default: captured
  duration:
    description:
      - Length of the window in seconds, for O(state=captured), or for an armed window
        (O(state=started)), which then closes itself after it. A finite number, more
        than 0 and at most O(max_duration).
      - With O(command), an upper bound is given by O(timeout) instead.
      - O(state=captured) needs O(duration) or O(command).
    type: float
  command:
    description:
      - A workload run by C(/bin/sh -c) on the target during the window; the window closes
        when it exits. Its C(rc), C(stdout) and C(stderr) are returned.
      - It runs in a session (and process group) of its own. When the window ends, whatever
        it left running in that group (background jobs) is killed too; only processes that
        left the group (C(setsid), daemons) survive the window.
    type: str
  timeout:
    description:
      - Seconds the O(command) may run. When it runs longer it is killed, and the task
        fails without fetching anything.
      - A finite number, more than 0 and, with O(command), at most O(max_duration).
    type: float
    default: 600
  start_at:
    description:
      - For O(state=started) only. The time of day at which the window opens on the
        target, by the target's clock, as seconds since the epoch (V(1796536500.5)) or in
        ISO 8601 with a UTC offset (V(2026-12-06T03:15:00Z)). The task returns at once
        and a keeper process opens the window then (see the description); with
        O(duration) it also closes it.
      - A time already past when the window is armed opens it at once, reported as
        RV(late). Refused when more than O(max_duration) seconds ahead.
      - Without O(start_at), O(state=started) with O(duration) arms a window that opens
        at once and closes after O(duration).
    type: raw
  max_duration:
    description:
      - The longest window this task may open, in seconds. O(duration) and (with
        O(command)) O(timeout) are refused above it, before anything is changed; raise it
        deliberately for a longer capture.
    type: float
    default: 3600
  max_bytes:
    description:
      - The most trace data the capture takes on the target, before compression (the
        ring-buffer pages of a trace.dat, or the text of O(format=text)), like
        C(trace-cmd record -m). Sizes such as V(512M) or V(2G) (binary units), or bytes;
        at least V(1M).
      - When it is reached, recording stops and the window closes early (a workload runs
        on to its end); the task succeeds with a warning, and RV(budget_reached) is true.
        What the kernel recorded later is not in the capture.
      - Whatever this says, a capture never uses the last 5% (at most 1 GiB) of the
        filesystem holding the task's temporary directory on the target. It is refused
        when the filesystem is already that full, and stops early when it gets there.
    type: bytes
    default: 512M
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
      - With O(format=dat) and O(file_version=7), the compression inside the trace.dat,
        which travels and is stored as it is. V(auto) uses zstd when the target has the
        C(zstd) program, else zlib (Python's own, nothing to install). V(gzip) means
        V(zlib) here. C(trace-cmd report) opens zstd and zlib files when it was built with
        them (C(trace-cmd list -c)); Debian 12's trace-cmd 3.1.6 has zstd only.
      - Otherwise, how the file travels. V(auto) uses zstd when the target and the
        controller both have the C(zstd) program, else gzip (V(zlib) means V(gzip) here).
        The file is stored decompressed on the controller.
      - V(zstd) on a target without the C(zstd) program is refused before anything is
        changed.
    type: str
    choices: [auto, zstd, zlib, gzip, none]
    default: auto
  file_version:
    description:
      - The trace.dat's file version, for O(format=dat). V(7) is trace-cmd's sectioned
        file, compressed inside (see O(compress)); it is stored on the controller as it
        travelled, and C(trace-cmd report) (3.0 and later) reads it as it is. V(6) is the
        uncompressed file older readers take; it travels compressed and is stored
        decompressed.
      - Refused with O(format=text), which has no file version.
    type: int
    choices: [6, 7]
    default: 7
  include_self:
    description:
      - Record the capture's own processes too. By default the module, its compressors
        and the processes Ansible ran it in are kept out of the recorded events (see the
        description); the kernel still records a context switch or wakeup in which one of
        them meets a traced task, and the anchor markers.
    type: bool
    default: false
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
      - Internal. The directory on the target where the capture's file is assembled.
        The action plugin sets it to the task's temporary directory, and refuses it in a
        task.
      - O(dest), O(run_id) and O(transfer) are the action plugin's, on the controller.
        The module accepts and ignores them.
    type: path
notes:
  - The window's timestamps are the buffer's C(trace_clock). The result's RV(clock_anchor)
    pairs the target's wall-clock time with the trace clock at the window's start, for
    putting hosts on one timeline. With a clock that does not count nanoseconds
    (C(counter), C(uptime), C(x86-tsc)) the markers are written, but the anchor has no
    trace time and the trace.dat no DATE option (a warning says so). With O(state=started)
    the markers are written when the window opens and found when it is collected.
  - Only the formats of the events enabled in the buffer when the window opens are
    written into a trace.dat (plus the C(ftrace) ones); events enabled only by a
    trigger during the window show as unknown in C(trace-cmd report).
  - Only the CPUs online when the window opens are read (a trace.dat keeps an empty slot
    for each other possible CPU, so CPU numbers stay right); RV(cpus_offline) lists the
    others. A CPU that comes online during the window is not in the capture (a warning
    says so).
  - With O(format=dat) the ring buffers are read while the window is open, whole pages
    only (the page the kernel is writing on stays until the window closes), on every
    supported Python. Each of the first 32 CPUs has a compressor of its own; the pages of
    further CPUs are kept raw in the temporary directory and compressed when the window
    closes, so a host with hundreds of CPUs needs a bounded number of processes and about
    one open file per CPU (the module raises its soft open-file limit up to the hard one
    when it needs to, and refuses before the window opens when even that is too low).
  - For long captures with O(state=started), size the buffer for the whole window with
    the O(tracefleet.ftrace.tracer#module:buffer_size_kb) option of M(tracefleet.ftrace.tracer).
    Nothing reads the buffer until V(collected), and what does not fit is reported as lost.
seealso:
  - module: tracefleet.ftrace.trace_event
  - module: tracefleet.ftrace.teardown
  - name: trace-cmd.dat v7 file format
    description: The man page trace-cmd.dat.v7(5), from the trace-cmd package.
    link: https://www.trace-cmd.org/Documentation/trace-cmd/trace-cmd.dat.v7.5.html
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

# Every host of the batch traces the same 10 seconds: pick a start far enough ahead
# for every host to be armed (the session role computes it from forks).
- name: Pick a start time on the controller
  ansible.builtin.set_fact:
    window_start: "{{ now().timestamp() + 30 }}"
  run_once: true

- name: Arm the window on every host
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    state: started
    start_at: "{{ window_start }}"
    duration: 10

- name: Collect every host's window once it has closed
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    state: collected

- name: Capture a workload that may exit 1, with a named file, without kallsyms
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    command: /usr/local/bin/flaky-test
    allowed_rc: [0, 1]
    name: flaky-run
    kallsyms: false
    clear: false

- name: An uncompressed version 6 trace.dat for an old reader, streamed in chunks
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    duration: 2
    file_version: 6
    compress: gzip
    transfer: chunks

- name: A version 7 trace.dat without compression, the capture's own processes included
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    duration: 2
    compress: none
    include_self: true
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
  description:
    - Bytes stored on the controller. A version 7 trace.dat is stored as it travelled
      (RV(bytes)); other files decompressed.
  returned: when a capture was fetched
  type: int
  sample: 1893422
transfer:
  description: How the file reached the controller, V(fetch) or V(chunks) (see O(transfer)).
  returned: when a capture was fetched
  type: str
  sample: fetch
format:
  description: The capture's format, as asked (O(format)).
  returned: when a window was collected
  type: str
  sample: dat
file_version:
  description: The trace.dat's file version (O(file_version)).
  returned: when a window was collected with O(format=dat)
  type: int
  sample: 7
instance:
  description: The buffer captured (O(instance)); null for the top level.
  returned: when a window was collected
  type: str
  sample: tracefleet
excluded_pids:
  description:
    - The processes kept out of the recorded events (see O(include_self)); empty with
      O(include_self=true).
  returned: when a window was collected
  type: list
  elements: int
  sample: [4242, 4240, 4239, 4243, 4244]
seconds:
  description: Length of the window in seconds.
  returned: when a window was collected
  type: float
  sample: 5.01
started:
  description:
    - Wall-clock time on the target when the window opened (UTC, ISO 8601).
    - Null when a window was armed (O(state=started) with O(start_at) or O(duration));
      its keeper opens it later, and O(state=collected) returns when.
  returned: always, unless skipped
  type: str
  sample: "2026-11-27T03:15:02.123456Z"
start_at:
  description: When an armed window was to open (UTC, ISO 8601), as O(start_at) asked.
  returned: when a window was armed with O(start_at), and when it is collected
  type: str
  sample: "2026-11-27T03:15:00.000000Z"
late:
  description:
    - Whether the window was armed after O(start_at), so it opened as soon as it was
      armed rather than at O(start_at) (RV(started) says when).
  returned: when a window was armed with O(start_at), and when it is collected
  type: bool
  sample: false
start_delay:
  description:
    - Seconds from O(start_at) to the window's real start (RV(started)), by the target's
      clock. For a window armed in time that is the keeper's wake-up latency; more for a late one.
  returned: when a window armed with O(start_at) was collected
  type: float
  sample: 0.000412
clock_anchor:
  description:
    - Which time of day was which trace-clock time when the window opened, from the
      anchor markers (see the description). C(wall_ns) is the middle of the narrowest
      bracket of CLOCK_REALTIME reads (nanoseconds since the epoch), C(trace_ns) the
      trace-clock timestamp of its marker, C(uncertainty_ns) the bracket's width (the
      marker was written within it). C(wall) and C(trace) are the same in seconds,
      C(clock) the buffer's trace clock.
    - C(trace_ns) and C(uncertainty_ns) are null when no marker was found (a warning says
      why), C(trace_ns) also with a clock that does not count nanoseconds, and with
      O(state=started), whose markers are found when the window is collected.
  returned: always, unless skipped
  type: dict
  sample:
    wall: 1795750502.123456
    trace: 1234.567891
    clock: local
    wall_ns: 1795750502123456789
    trace_ns: 1234567891234
    uncertainty_ns: 2050
compress:
  description: The compression inside a version 7 trace.dat, or how another file travelled.
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
cpus_offline:
  description:
    - The buffer's possible CPUs that were not read, because they were offline when the
      window opened (or the kernel has no ring buffer for them). Their slots in a
      trace.dat are empty.
  returned: when a window was opened or collected
  type: list
  elements: int
  sample: [2, 3]
closed_by:
  description:
    - What ended the window. V(duration), V(command) (the workload exited), V(collected)
      (a window opened with O(state=started)), V(max_bytes) (the budget O(max_bytes) was
      used up) or V(free_space) (the target's filesystem got down to its reserve).
  returned: when a window was collected
  type: str
  sample: duration
budget_reached:
  description:
    - Whether the capture stopped early at its budget (O(max_bytes), or the free space
      the target keeps), so the window closed early or the text was cut.
  returned: when a window was collected
  type: bool
  sample: false
enabled_events:
  description:
    - The events enabled in the buffer when the window opened, as C(system/event) (the
      form M(tracefleet.ftrace.tracefs_info) and M(tracefleet.ftrace.trace_event) use);
      a system whose events are all enabled as C(system/*).
  returned: when a window was collected
  type: list
  elements: str
  sample: ["sched/sched_switch", "sched/sched_wakeup"]
timings:
  description:
    - Seconds on the target. C(before) is opening the window; C(window) the window
      itself; C(during) this module's own work while the window was open (ring-buffer
      reads, and the formats and kallsyms of a trace.dat); C(after) from the end of the
      window until the compressed file was ready; C(compress_cpu) the CPU time of the
      compressor processes, which run alongside.
    - C(cpu) is the capture's whole cost in CPU time on the target (user and system
      seconds of this module and of the compressor processes it starts) from
      just before the window opened until the file was ready to fetch, without the
      O(command) workload's own CPU (nor anything the workload started). The module's
      start (Python and its imports, before the window) is not in it; for
      O(state=collected), the window was open before this task, and C(before) and
      C(cpu) count from its end (for an armed window with a duration, from the moment
      it closed, however long this task waited for that).
  returned: when a window was collected
  type: dict
  sample: {"before": 0.02, "window": 5.0, "during": 0.41, "after": 0.08, "compress_cpu": 0.3, "cpu": 0.62}
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture_run, _capture_spec
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError


def main() -> None:
    # dest, run_id and transfer are the action plugin's: accepted here and ignored.
    module = AnsibleModule(
        argument_spec=_capture_spec.MODULE_SPEC,
        mutually_exclusive=_capture_spec.MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="check mode: no window recorded, nothing fetched")
    problem = _capture_spec.problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        result, warnings = _capture_run.capture(module.params)
    except TracefleetError as exc:
        module.fail_json(msg="trace_capture (instance=%s): %s" % (module.params["instance"], exc))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
