#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: trace_event
short_description: Enable or disable trace events, with filters and triggers
version_added: 0.1.0
description:
  - Makes a list of trace events match what is asked for, in one task and one pass over
    the kernel's state, changing only the difference.
  - An entry's O(events[].name) is C(system/event), a whole C(system), or a glob such as
    C(sched/sched_wak*) or C(*/sys_enter_open*). Later entries override earlier ones for
    the events they both match.
  - Every name is resolved against the instance's C(events/) tree before the first write;
    an unknown event or system fails the task and changes nothing.
  - Filters are written first. The kernel validates them; when it rejects one, the
    message quotes the filter and the kernel's C(error_log), and whatever the task had
    already changed is put back.
  - Triggers are added and removed one at a time, removals in dependency order (control
    triggers, then hist triggers with actions, then plain hist triggers).
  - On the top level, or in an instance tracefleet did not create, each change is recorded
    in the ledger with the original state, for M(tracefleet.ftrace.teardown).
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.FULL_SUPPORT
  - tracefleet.ftrace.tracing
  - tracefleet.ftrace.tracing.INSTANCE
options:
  events:
    description: The events and what they should look like.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: C(system/event), C(system), or a glob over either part.
        type: str
        required: true
      state:
        description: Whether the matched events are enabled.
        type: str
        choices: [enabled, disabled]
        default: enabled
      filter:
        description:
          - Filter expression for the matched events, such as V(prev_pid == 1). An empty
            string removes the filter. Not managed when omitted.
        type: str
      triggers:
        description:
          - The exact set of triggers the matched events should have, such as
            V(traceoff) or V(hist:keys=common_pid). Triggers not listed are removed. An
            empty list removes all. Not managed when omitted.
        type: list
        elements: str
  exclusive:
    description:
      - Make the enabled events of the instance exactly the ones listed with
        V(state=enabled), as the kernel's own C(set_event) shows them; every other
        enabled event is disabled.
      - An event with a trigger stays active even when its C(enable) is off (it reads
        C(0*) and stays in C(set_event), and a C(stacktrace) trigger keeps firing), so
        every event that is not listed also loses its triggers. Each trigger removed is
        recorded in the ledger, and M(tracefleet.ftrace.teardown) puts it back.
      - Filters of the events that are not listed are left as they are (a filter
        enables nothing).
      - Listed entries are managed as they say, also with V(state=disabled); give such
        an entry O(events[].triggers=[]) to remove its triggers too. A trigger of a
        listed event that enables another event (C(enable_event)) keeps that event in
        the kernel's soft mode.
    type: bool
    default: false
seealso:
  - module: tracefleet.ftrace.trace_instance
  - module: tracefleet.ftrace.tracer
  - module: tracefleet.ftrace.teardown
"""

EXAMPLES = r"""
- name: Scheduler and open syscalls in our instance, and nothing else
  tracefleet.ftrace.trace_event:
    instance: tracefleet
    session: incident-4711
    exclusive: true
    events:
      - name: sched/sched_switch
        filter: prev_pid != 0
      - name: sched/sched_process_*
      - name: syscalls/sys_enter_openat
        triggers:
          - hist:keys=common_pid

- name: A whole system, then one of its events off
  tracefleet.ftrace.trace_event:
    instance: tracefleet
    events:
      - name: block
      - name: block/block_rq_insert
        state: disabled

- name: Names as set_event spells them work too; results always say system/event
  tracefleet.ftrace.trace_event:
    instance: tracefleet
    events:
      - name: "irq:softirq_raise"
  register: irq

- name: Show the event's state after the task
  ansible.builtin.debug:
    msg: "{{ irq.events['irq/softirq_raise'].after }}"
"""

RETURN = r"""
events:
  description: Per event, its state before and after (predicted in check mode) and whether it changed.
  returned: always
  type: dict
  sample:
    sched/sched_switch:
      changed: true
      before: {enabled: false, filter: null, triggers: []}
      after: {enabled: true, filter: "prev_pid != 0", triggers: []}
changes:
  description: The writes made (or that would be made), in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._events import ensure
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import COMMON_ARGS, failure


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            instance=dict(type="str"),
            events=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    name=dict(type="str", required=True),
                    state=dict(type="str", default="enabled", choices=["enabled", "disabled"]),
                    filter=dict(type="str"),
                    triggers=dict(type="list", elements="str"),
                ),
            ),
            exclusive=dict(type="bool", default=False),
            **COMMON_ARGS,
        ),
        supports_check_mode=True,
    )
    try:
        result = ensure(module.params, module.check_mode, module._diff)
    except TracefleetError as exc:
        module.fail_json(**failure(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
