#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: tracer
short_description: Set the tracer and its knobs in a tracefs instance or at the top level
version_added: 0.1.0
description:
  - Makes the knobs of one tracing directory match what is asked for, and changes only
    the difference. Options left out are not managed.
  - Everything is checked against what the kernel offers (tracers, clocks, trace options,
    functions, the host's memory and CPUs) before the first write. If the kernel still
    refuses a write, what the task already changed is put back, and the error quotes the
    kernel's C(error_log).
  - Shared list files (C(set_ftrace_filter), C(set_ftrace_notrace), C(set_graph_function))
    get single entries appended or removed (C(!name)), never a truncating write.
  - On the top level, or in an instance tracefleet did not create, each change is recorded
    in the ledger with the original value, for M(tracefleet.ftrace.teardown).
  - Changing O(tracer), O(trace_clock) or O(buffer_subbuf_size_kb) clears that ring buffer
    (the kernel does this).
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.FULL_SUPPORT
  - tracefleet.ftrace.tracing
  - tracefleet.ftrace.tracing.INSTANCE
options:
  tracer:
    description: The tracer (C(current_tracer)); must be in C(available_tracers).
    type: str
  tracing_on:
    description: Whether the ring buffer records. Written last, after every other knob.
    type: bool
  buffer_size_kb:
    description:
      - Ring buffer size per CPU in KiB. A reading that the kernel rounded to whole
        ring-buffer pages (sub-buffers, see O(buffer_subbuf_size_kb)) counts as the same size.
      - More than a quarter of the host's memory across all CPUs is refused.
    type: int
  buffer_subbuf_size_kb:
    description:
      - Size of the ring buffer's sub-buffers (the pages C(trace_pipe_raw) hands out and a
        trace.dat declares) in KiB, C(buffer_subbuf_size_kb). Linux 6.8 and later; on an
        older kernel the task fails naming the option and changes nothing.
      - The kernel rounds the size up to a power-of-two number of memory pages, from 1 to
        128 pages. Where pages are 4 KiB that is V(1) to V(512), V(5) reading back as V(8) and
        V(1) as V(4); V(0) and sizes past 128 pages are refused before any write, on every
        kernel. A reading of the rounded size counts as the same size (idempotence).
      - An event must fit in one sub-buffer, so larger sub-buffers hold larger events (long
        stack traces, big C(trace_marker) writes).
      - Changing it clears that ring buffer. It is written before O(buffer_size_kb), which
        the kernel then allocates, and rounds, in sub-buffers of the new size.
    type: int
  trace_clock:
    description: The trace clock; must be one the kernel offers (C(trace_clock)).
    type: str
  options:
    description:
      - Trace options as a dict of option name to bool (files under C(options/)).
        Options of a tracer can be set in the same task that sets O(tracer).
    type: dict
  cpumask:
    description: CPUs to trace, as a hexadecimal mask (C(tracing_cpumask)), such as V('3').
    type: str
  function_filter:
    description:
      - Entries for C(set_ftrace_filter). C(name) or a glob is added, C(!name) removed;
        entries not listed are left alone. Names must be in C(available_filter_functions).
    type: list
    elements: str
  function_notrace:
    description: Entries for C(set_ftrace_notrace), as for O(function_filter).
    type: list
    elements: str
  graph_functions:
    description: Entries for C(set_graph_function), as for O(function_filter).
    type: list
    elements: str
  pids:
    description:
      - Process ids for C(set_event_pid) and C(set_ftrace_pid). C(1234) is added,
        C(!1234) removed. The kernel has no removal syntax for pid files, so a removal
        rewrites the remaining pids (other users' included) in one write.
    type: list
    elements: str
seealso:
  - module: tracefleet.ftrace.trace_instance
  - module: tracefleet.ftrace.trace_event
  - module: tracefleet.ftrace.teardown
"""

EXAMPLES = r"""
- name: Function graph tracing of the open path in our instance
  tracefleet.ftrace.tracer:
    instance: tracefleet
    tracer: function_graph
    graph_functions: [do_sys_openat2]
    options:
      funcgraph-proc: true
    buffer_size_kb: 4096
    trace_clock: mono
    tracing_on: true

- name: The function tracer on the vfs layer, CPUs 0 and 1 only, without the noisy helpers
  tracefleet.ftrace.tracer:
    instance: tracefleet
    session: incident-4711
    tracer: function
    cpumask: "3"
    function_filter: ["vfs_*"]
    function_notrace: ["vfs_getattr*"]
    tracing_on: true

- name: Only the processes of the service (events and functions), one pid dropped
  tracefleet.ftrace.tracer:
    instance: tracefleet
    pids: ["{{ service_pid }}", "!4711"]

- name: Sub-buffers of 8 KiB in our instance (Linux 6.8+), so events up to about 8 KiB fit
  tracefleet.ftrace.tracer:
    instance: tracefleet
    buffer_subbuf_size_kb: 8
    buffer_size_kb: 4096

- name: Stop recording in the instance
  tracefleet.ftrace.tracer:
    instance: tracefleet
    tracing_on: false

- name: Drop one function from the shared filter list of the top level
  tracefleet.ftrace.tracer:
    function_filter: ["!vfs_read"]
"""

RETURN = r"""
before:
  description: The changed knobs before the task (list options are reported in RV(after) only).
  returned: always
  type: dict
  sample: {"tracer": "nop", "tracing_on": true}
after:
  description:
    - The changed knobs after the task (predicted in check mode). For the list options,
      the entries C(added) and C(removed).
  returned: always
  type: dict
  sample: {"tracer": "function_graph", "tracing_on": true}
changes:
  description: The writes made (or that would be made), in order.
  returned: always
  type: list
  elements: str
  sample: ["instances/tracefleet/current_tracer <- function_graph"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._knob_changes import configure
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import COMMON_ARGS, failure


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            instance=dict(type="str"),
            tracer=dict(type="str"),
            tracing_on=dict(type="bool"),
            buffer_size_kb=dict(type="int"),
            buffer_subbuf_size_kb=dict(type="int"),
            trace_clock=dict(type="str"),
            options=dict(type="dict"),
            cpumask=dict(type="str"),
            function_filter=dict(type="list", elements="str"),
            function_notrace=dict(type="list", elements="str"),
            graph_functions=dict(type="list", elements="str"),
            pids=dict(type="list", elements="str"),
            **COMMON_ARGS,
        ),
        supports_check_mode=True,
    )
    try:
        result = configure(module.params, module.check_mode, module._diff)
    except TracefleetError as exc:
        module.fail_json(**failure(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
