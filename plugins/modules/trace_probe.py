#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: trace_probe
short_description: Define or remove kprobes, kretprobes, uprobes and uretprobes
version_added: 0.1.0
description:
  - Defines a dynamic probe event C(GROUP/NAME) by appending one line to C(dynamic_events),
    or removes it with C(-:GROUP/NAME); other probes are never touched.
  - Idempotent on the kernel's read-back, which normalises definitions (a kretprobe reads
    back as C(r10:...), uprobe offsets are zero-padded). The same definition is not a
    change; a different one replaces the old probe and keeps its enabled state in every
    instance.
  - "Uprobes by symbol: O(target=/path/to/binary:symbol) is resolved to a file offset by
    reading the ELF file (symtab and dynsym, PIE or not, through the executable load
    segment). O(target=/path:0xOFFSET) is accepted too. The kernel accepts offsets beyond
    the file or outside executable code without complaint, so the module refuses them."
  - Kprobe targets are checked against C(available_filter_functions) and C(/proc/kallsyms);
    a kretprobe at a non-zero offset is refused.
  - A definition the kernel rejects fails with the kernel's C(error_log) lines, caret
    included, and leaves C(dynamic_events) unchanged.
  - Probes created by the module are recorded in the ledger. Replacing or removing a probe
    tracefleet did not create needs O(force=true); so does removing a probe that is enabled
    in some instance (the module disables it there first).
  - Enable a probe's event in an instance with M(tracefleet.ftrace.trace_event) (name
    C(GROUP/NAME)).
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.FULL_SUPPORT
  - tracefleet.ftrace.tracing
options:
  name:
    description: Event name of the probe (letters, digits, C(_)).
    type: str
    required: true
  group:
    description: Event group (system) of the probe.
    type: str
    default: tracefleet
  type:
    description: Kind of probe.
    type: str
    choices: [kprobe, kretprobe, uprobe, uretprobe]
    default: kprobe
  target:
    description:
      - For kprobes and kretprobes, C(SYMBOL[+OFFSET]) or C(MODULE:SYMBOL[+OFFSET]).
      - For uprobes and uretprobes, C(/path/to/binary:SYMBOL[+OFFSET]) or
        C(/path/to/binary:0xFILEOFFSET).
      - Required with V(state=present).
    type: str
  fetchargs:
    description:
      - Arguments to record, each C(NAME=FETCHARG), such as V(filename=+0($arg2\):string),
        V(fd=%di:s32) or V(ret=$retval) (return probes only).
    type: list
    elements: str
    default: []
  state:
    description: Whether the probe should be defined.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Replace or remove a probe tracefleet did not create, and remove a probe that is
        enabled in some instance (after disabling it there).
    type: bool
    default: false
notes:
  - Uprobes attach to the file's inode; replacing the binary on disk leaves the probe on
    the old file. Re-run the task after upgrading the binary.
seealso:
  - module: tracefleet.ftrace.trace_event
  - module: tracefleet.ftrace.teardown
  - name: Kprobe-based event tracing
    description: The kernel's documentation of kprobe_events.
    link: https://docs.kernel.org/trace/kprobetrace.html
  - name: Uprobe-tracer
    description: The kernel's documentation of uprobe_events.
    link: https://docs.kernel.org/trace/uprobetracer.html
"""

EXAMPLES = r"""
- name: Record the file name of every open
  tracefleet.ftrace.trace_probe:
    name: open
    target: do_sys_openat2
    fetchargs: ["filename=+0($arg2):string"]

- name: And the return value
  tracefleet.ftrace.trace_probe:
    name: open_ret
    type: kretprobe
    target: do_sys_openat2
    fetchargs: ["ret=$retval"]

- name: A uprobe on a function of bash, found by symbol
  tracefleet.ftrace.trace_probe:
    name: readline
    type: uprobe
    target: /usr/bin/bash:readline

- name: And what readline returned (the line typed), in a group of its own
  tracefleet.ftrace.trace_probe:
    name: readline_ret
    group: bash
    type: uretprobe
    target: /usr/bin/bash:readline
    fetchargs: ["line=+0($retval):string"]

- name: A uprobe at a file offset, for a stripped binary (offset from objdump or perf probe)
  tracefleet.ftrace.trace_probe:
    name: handler
    group: myapp
    type: uprobe
    target: /opt/myapp/bin/server:0x4a5c0
    session: incident-4711

- name: Enable them in our instance (a probe's event is GROUP/NAME)
  tracefleet.ftrace.trace_event:
    instance: tracefleet
    events:
      - name: tracefleet
      - name: bash/readline_ret

- name: Remove a probe even though it is enabled somewhere
  tracefleet.ftrace.trace_probe:
    name: open
    state: absent
    force: true
"""

RETURN = r"""
definition:
  description: The probe as the kernel reads it back from C(dynamic_events); V(null) when absent.
  returned: always
  type: str
  sample: "p:tracefleet/open do_sys_openat2 filename=+0($arg2):string"
written:
  description: The definition line the module wrote (or would write); V(null) when nothing was written.
  returned: always
  type: str
enabled_in:
  description: Where the probe's event is enabled (V(top) for the top level, otherwise instance names).
  returned: always
  type: list
  elements: str
owned:
  description: Whether the ledger records the probe as created by tracefleet.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._probes import TYPES, ensure
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import COMMON_ARGS, failure


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            group=dict(type="str", default="tracefleet"),
            type=dict(type="str", default="kprobe", choices=list(TYPES)),
            target=dict(type="str"),
            fetchargs=dict(type="list", elements="str", default=[]),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            force=dict(type="bool", default=False),
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
