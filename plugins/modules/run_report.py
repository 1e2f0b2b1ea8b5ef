# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as an action plugin (plugins/action/run_report.py) and
# runs on the controller; this file holds its documentation only.

from __future__ import annotations

DOCUMENTATION = r"""
module: run_report
short_description: Write a capture run's HTML report on the controller
version_added: 0.1.0
description:
  - Reads a run directory that M(tracefleet.ftrace.trace_capture) filled, C(<dest>/<run_id>/) with
    its C(manifest.json) and one directory per host, and writes one self-contained page,
    C(<run_dir>/report.html).
  - The page shows, per host and capture, the kernel, trace clock, instance, capture window,
    events captured (per CPU), events lost per CPU (loss highlighted), bytes transferred and stored,
    and the files with their sha256 and links relative to the page; then the event counts by event
    name (the top O(top_events)) and a timeline, a histogram of events over the capture window
    with one row per C(format=dat) capture.
  - Event counts by name, the timeline, and the pages the kernel flagged as having missed events
    are read from each C(trace.dat) itself, by a reader of the trace-cmd file format (version 6, and
    version 7 compressed with zstd or zlib or not at all) independent of the writer on the targets. A count that differs from the manifest's, a missing
    file, or a file whose size or sha256 differs from the manifest's is listed under the page's
    problems and in RV(problems). A C(format=text) capture has no C(trace.dat); its row shows the
    manifest's counts and has no timeline.
  - Each host's trace timestamps come from its own clock. When every capture on the timeline has a
    clock anchor (its host's wall clock and trace clock read together when the window opened; in
    nanoseconds with its uncertainty where the manifest has them, else in seconds, else the
    trace.dat's DATE option) and a trace clock counting nanoseconds, the rows are aligned on the
    hosts' wall clocks, time 0 being the earliest window start. Otherwise each row starts at its
    host's first event. The page says which, and shows each capture's anchor and its uncertainty.
  - The hosts of the run that failed or were unreachable, as M(tracefleet.ftrace.run_failures)
    recorded them in the manifest (the C(tracefleet.ftrace.session) role records them), get a
    row each in the hosts table, marked failed or unreachable, with the reason and the task that
    failed (after their captures when they failed after one), and each is a problem on the page
    and in RV(problems) - its name, C(failed) or C(unreachable), and the reason. RV(failed_hosts)
    counts them.
  - The page links the run's Perfetto archive, C(perfetto.tar), when
    M(tracefleet.ftrace.perfetto_export) wrote one, says how to open it, and gives the
    C(trace-cmd report -i HOST1/trace.dat -i HOST2/trace.dat) command that merges the run's
    trace.dat files by timestamp.
  - The page has inline CSS and inline SVG, no script, no fonts or images to fetch, and a
    content security policy that loads nothing. Host names and everything else from the
    manifest are escaped, and a file is only linked when its path stays inside O(run_dir).
  - The manifest is checked field by field as host data; a value of the wrong type, out of
    range (a 1e300 or NaN float) or not valid Unicode is left out of the page and named under
    its problems, never a traceback.
  - The file is written with mode 0600 (whatever the umask) to a temporary file and renamed
    into place. The page holds no clock time
    of its own, so an unchanged run directory gives the same bytes, and the file is then left
    alone (RV(ignore:changed=false)).
  - Runs entirely on the controller; use it once per run (C(run_once)). It never contacts a host.
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
    details: Use C(run_once); the report covers every host in the run directory.
  check_mode:
    details:
      - Everything is read and checked; nothing is written. The result says whether the page
        would change.
options:
  title:
    description:
      - The page's title and heading.
      - Defaults to C(tracefleet run <run_id>).
    type: str
  audit:
    description:
      - A compliance result, the C(compliance.json) that M(tracefleet.ftrace.audit_report) writes,
        to summarise on the page (compliant and violating hosts, check totals) and link to, with the
        C(compliance.html) next to it when there is one. Links are only made to files inside
        O(run_dir).
      - A relative path is relative to the directory C(ansible-playbook) was started in.
      - When omitted, C(<run_dir>/audit/compliance.json) is used if it exists. When given and the file
        is missing or is not such a result, the page says so; the task does not fail.
    type: path
  top_events:
    description: How many event names to list per capture, most frequent first; the rest are summed.
    type: int
    default: 10
notes:
  - Reading the traces takes about a second per million events on the controller; each
    C(trace.dat) is read one page at a time, never whole into memory.
  - trace.dat versions 6 and 7 are read. A zstd-compressed version 7 file needs the Python package
    C(zstandard) on the controller (the collection's C(requirements.txt)); without it the page names
    the file as not read, and why.
seealso:
  - module: tracefleet.ftrace.trace_capture
  - module: tracefleet.ftrace.run_failures
  - module: tracefleet.ftrace.audit_report
  - module: tracefleet.ftrace.perfetto_export
  - name: trace-cmd.dat.v6(5)
    description: The trace.dat file format, version 6.
    link: https://git.kernel.org/pub/scm/utils/trace-cmd/trace-cmd.git/tree/Documentation/trace-cmd/trace-cmd.dat.v6.5.txt
  - name: trace-cmd.dat.v7(5)
    description: The trace.dat file format, version 7.
    link: https://git.kernel.org/pub/scm/utils/trace-cmd/trace-cmd.git/tree/Documentation/trace-cmd/trace-cmd.dat.v7.5.txt
"""

EXAMPLES = r"""
- name: Capture five seconds of scheduler events on every host
  tracefleet.ftrace.trace_capture:
    instance: tracefleet
    duration: 5
    dest: "{{ playbook_dir }}/traces"
  become: true
  register: capture

- name: Write the run report on the controller
  tracefleet.ftrace.run_report:
    run_dir: "{{ capture.manifest | dirname }}"
    title: Scheduler latency check
  run_once: true
  delegate_to: localhost
  become: false
  register: report

- name: Say where it is
  ansible.builtin.debug:
    msg: "{{ report.path }} ({{ report.events }} events, {{ report.lost_events }} lost)"
  run_once: true

- name: Report on a run directory already on the controller, with its audit
  tracefleet.ftrace.run_report:
    run_dir: traces/20261127T031500Z-1a2b3c4d
    audit: traces/20261127T031500Z-1a2b3c4d/audit/compliance.json
    top_events: 20
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The report, C(<run_dir>/report.html).
  returned: success
  type: str
  sample: /home/ops/traces/20261127T031500Z-1a2b3c4d/report.html
run_id:
  description: The run id from the manifest.
  returned: success
  type: str
  sample: 20261127T031500Z-1a2b3c4d
hosts:
  description:
    - The number of hosts in the manifest's C(hosts) map, the hosts whose captures were filed
      (a host that only failed is counted in RV(failed_hosts)).
  returned: success
  type: int
  sample: 2
failed_hosts:
  description:
    - The number of hosts the manifest records as failed or unreachable (its C(failed) map,
      written by M(tracefleet.ftrace.run_failures)), whether or not they have captures.
  returned: success
  type: int
  sample: 1
captures:
  description: The number of captures of all hosts.
  returned: success
  type: int
  sample: 2
events:
  description:
    - The events captured, all hosts and captures together, as the manifest counts them (the
      C(trace.dat)'s own count where the manifest has none).
  returned: success
  type: int
  sample: 18342
lost_events:
  description: The events lost, all hosts, captures and CPUs together, as the manifest counts them.
  returned: success
  type: int
  sample: 0
problems:
  description:
    - What did not check out - hosts that failed or were unreachable, missing files, sizes or
      sha256 that differ from the manifest, unreadable traces, event counts that differ between
      manifest and trace. The page lists them too. They do not fail the task.
  returned: success
  type: list
  elements: str
  sample: ["web3 / trace: web3/trace.dat: sha256 differs", "web7: unreachable: Failed to connect to the host via ssh"]
msg:
  description: What was written, and the totals.
  returned: always
  type: str
"""
