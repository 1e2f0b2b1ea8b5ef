# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as an action plugin (plugins/action/perfetto_export.py)
# and runs on the controller; this file holds its documentation only.

from __future__ import annotations

DOCUMENTATION = r"""
module: perfetto_export
short_description: Write a capture run as one Perfetto archive on the controller
version_added: 0.1.0
description:
  - Reads a run directory that M(tracefleet.ftrace.trace_capture) filled, C(<dest>/<run_id>/) with its
    C(manifest.json) and one directory per host, and writes C(<run_dir>/perfetto.tar), which the Perfetto UI
    (U(https://ui.perfetto.dev), I(Open trace file)) and C(trace_processor) (v58.2 or later) open as one
    timeline with a machine per host.
  - The archive holds one Perfetto trace (C(.pftrace), Perfetto's protobuf format) per C(format=dat) capture,
    named after the host (C(web01.pftrace); C(web01.<capture>.pftrace) when a host has several captures), and
    a C(perfetto_manifest.json) in Perfetto's documented manifest format (version 1) that names each file's
    machine after its inventory host, relates every file to the first one through C(REALTIME), makes
    C(REALTIME) the timeline's clock, and carries the run id (attribute C(tracefleet.run_id)) and, per file,
    where its clock anchor came from and its uncertainty (C(tracefleet.anchor.<file>)).
  - Each C(.pftrace) holds the capture's events as C(FtraceEventBundle)s, one per ring-buffer page and CPU,
    with the page's lost-events flag. C(sched_switch), C(sched_waking), C(sched_wakeup), C(sched_wakeup_new),
    C(sched_process_exec), C(sched_process_exit), C(sched_process_fork), C(sched_process_free),
    C(task_newtask) and C(task_rename) become Perfetto's typed events, so CPU and thread tracks show, with the
    fields Perfetto's messages have (a field a newer kernel adds, such as C(sched_process_exit)'s
    C(group_dead), is not carried). Every other event (kprobes, uprobes, syscalls, C(trace_marker) writes,
    ...) is a C(GenericFtraceEvent) with all its fields. The per-CPU ring-buffer statistics the trace.dat
    recorded (overrun, dropped events) go in as C(FtraceStats).
  - "Each trace is placed on its host's wall clock by the capture's clock anchor: the host's CLOCK_REALTIME
    and trace clock read together when the window opened (in nanoseconds with its uncertainty where the
    manifest has them, else in seconds), or else the trace.dat's DATE option. In the file the host's trace
    clock stands in for C(BOOTTIME) (trace processor's clock for ftrace data), related to C(REALTIME) by a
    clock snapshot. Hosts line up as well as their wall clocks are synchronised (NTP)."
  - O(tasks) adds each host's Ansible tasks as a track of their own on that machine, one slice per task.
    The C(tracefleet.ftrace.session) role passes the tasks it ran.
  - Left out, and named in RV(problems) (the task does not fail) - text captures, captures whose trace clock
    does not count nanoseconds (C(counter), C(x86-tsc), C(uptime)), captures with neither a clock anchor nor
    a DATE option, and files that are missing or whose size or sha256 differs from the manifest's.
  - trace.dat version 6 and version 7 (zstd, zlib or uncompressed) are read. Each trace is read one page (or
    one compressed chunk) at a time and the archive is written as a stream; nothing holds a whole trace in
    memory.
  - The manifest and the trace files are host data and are checked as such; a file is only read when its
    path stays inside O(run_dir).
  - The archive is written with mode 0600 to a temporary file in O(run_dir) and renamed into place. The same
    run gives the same bytes (fixed member times and owners), and an archive that would not change is left
    alone (RV(ignore:changed=false)).
  - Runs entirely on the controller; use it once per run (C(run_once)). It never contacts a host.
requirements:
  - On the controller, the Python packages C(perfetto) (the official package, for Perfetto's protobuf
    definitions) and C(protobuf); C(zstandard) to read zstd-compressed trace.dat files. They are listed in
    the collection's C(requirements.txt); the task fails with a message naming them when they are missing.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.run
  - tracefleet.ftrace.attributes.CONTROLLER
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  bypass_host_loop:
    details: Use C(run_once); the archive covers every host in the run directory.
  check_mode:
    details:
      - Everything is read and encoded into a temporary file in O(run_dir), which is then removed; the
        archive is not written. The result says whether it would change.
options:
  tasks:
    description:
      - Ansible tasks to show per host, as inventory host name to a list of tasks, each with C(name), C(start)
        and C(end) (seconds since the epoch, as the controller's clock read them, such as
        C(now().timestamp())).
      - A host's tasks become a track named C(Ansible tasks) on that host's machine, one slice per task.
        Tasks of hosts without a capture in the run are not shown.
    type: dict
    default: {}
notes:
  - Encoding takes some seconds per million events on the controller (see C(bench/perfetto) in the source
    tree); it grows linearly with the events.
  - Open the archive in the Perfetto UI with I(Open trace file) (C(perfetto.tar) as it is, not unpacked), or
    with C(trace_processor perfetto.tar).
  - C(trace-cmd report -i HOST1/trace.dat -i HOST2/trace.dat) merges the same run's trace.dat files by
    timestamp; the run report (M(tracefleet.ftrace.run_report)) prints that command and links the archive.
seealso:
  - module: tracefleet.ftrace.trace_capture
  - module: tracefleet.ftrace.run_report
  - name: Perfetto trace manifest format
    description: The perfetto_manifest.json format, version 1.
    link: https://perfetto.dev/docs/reference/perfetto-manifest
  - name: Perfetto UI
    description: Open the archive with "Open trace file".
    link: https://ui.perfetto.dev
"""

EXAMPLES = r"""
- name: Capture five seconds of scheduler events on every host
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    duration: 5
    dest: "{{ playbook_dir }}/traces"
  become: true
  register: capture

- name: Write the run as one Perfetto archive
  tracefleet.ftrace.perfetto_export:
    run_dir: "{{ capture.manifest | dirname }}"
  run_once: true
  delegate_to: localhost
  become: false
  register: perfetto

- name: Say how to open it
  ansible.builtin.debug:
    msg: "{{ perfetto.open_with }}"
  run_once: true

- name: Export a run with each host's Ansible tasks beside its trace
  tracefleet.ftrace.perfetto_export:
    run_dir: traces/20261127T031500Z-1a2b3c4d
    tasks:
      web01:
        - name: configure
          start: 1795755302.114
          end: 1795755303.902
        - name: capture
          start: 1795755303.902
          end: 1795755310.455
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The archive, C(<run_dir>/perfetto.tar).
  returned: success
  type: str
  sample: /home/ops/traces/20261127T031500Z-1a2b3c4d/perfetto.tar
run_id:
  description: The run id from the manifest.
  returned: success
  type: str
  sample: 20261127T031500Z-1a2b3c4d
files:
  description: The traces in the archive, one per capture, in the archive's order.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: The file's name in the archive.
      type: str
      sample: web01.pftrace
    host:
      description: The inventory host, which names its machine.
      type: str
      sample: web01
    capture:
      description: The capture's name.
      type: str
      sample: trace
    bytes:
      description: The size of the C(.pftrace).
      type: int
      sample: 1843211
    events:
      description: The events written, as many as the trace.dat holds.
      type: int
      sample: 18342
    events_by_name:
      description: The events written per name (a typed event's Perfetto name, a generic event's own), most first.
      type: dict
      sample: {"sched_switch": 9112, "sys_enter_openat": 4200}
    pages_lost_events:
      description: Per CPU, the ring-buffer pages the kernel flagged as following lost events.
      type: dict
      sample: {"0": 0, "1": 2}
    tasks:
      description: The Ansible tasks shown on the host's track.
      type: int
      sample: 4
    anchor:
      description: Where the clock anchor that places the trace on the wall clock came from.
      type: str
      sample: the capture's clock anchor
    uncertainty_ns:
      description: How uncertain that anchor is, in nanoseconds; null when unknown.
      type: int
      sample: 8400
hosts:
  description: The number of hosts in the archive.
  returned: success
  type: int
  sample: 2
events:
  description: The events in the archive, all files together.
  returned: success
  type: int
  sample: 36684
bytes:
  description: The size of the archive.
  returned: success
  type: int
  sample: 3686400
problems:
  description:
    - What was left out and why - text captures, traces on clocks that cannot be placed, files missing or
      differing from the manifest, traces that could not be read. They do not fail the task.
  returned: success
  type: list
  elements: str
  sample: ["web3 / trace: trace clock x86-tsc does not count nanoseconds, ..."]
open_with:
  description: How to open the archive; null when nothing was exported.
  returned: success
  type: str
  sample: open https://ui.perfetto.dev, choose 'Open trace file' and pick /home/ops/traces/r1/perfetto.tar
msg:
  description: What was written, and the totals.
  returned: always
  type: str
"""
