#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: trace_instance
short_description: Create or remove a tracefs instance (an isolated ring buffer)
version_added: 0.1.0
description:
  - An instance (C(instances/NAME) in tracefs) has its own ring buffer, events, tracer
    knobs and trace files, so tracing in it does not disturb other users of the host or
    the top-level buffer.
  - Instances created by this module are recorded in the ledger. Removing an instance
    tracefleet did not create needs O(force=true).
  - Removal first disables the instance's enabled events one by one (an enabled probe
    makes C(rmdir) fail with EBUSY), then removes the directory.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.FULL_SUPPORT
  - tracefleet.ftrace.tracing
options:
  name:
    description: Instance name (letters, digits, C(_), C(-), C(.); no C(/), not C(..)).
    type: str
    required: true
  state:
    description: Whether the instance should exist.
    type: str
    choices: [present, absent]
    default: present
  force:
    description: With V(state=absent), also remove an instance that tracefleet did not create.
    type: bool
    default: false
seealso:
  - module: tracefleet.ftrace.tracer
  - module: tracefleet.ftrace.trace_event
  - module: tracefleet.ftrace.teardown
"""

EXAMPLES = r"""
- name: An instance of our own for this session
  tracefleet.ftrace.trace_instance:
    name: tracefleet
    session: incident-4711

- name: Remove it again
  tracefleet.ftrace.trace_instance:
    name: tracefleet
    state: absent

- name: Remove an instance someone else left behind (not in the ledger, so force)
  tracefleet.ftrace.trace_instance:
    name: old-debug
    state: absent
    force: true
"""

RETURN = r"""
path:
  description: The instance's directory.
  returned: always
  type: str
  sample: /sys/kernel/tracing/instances/tracefleet
exists:
  description: Whether the instance exists after the task (predicted in check mode).
  returned: always
  type: bool
owned:
  description: Whether the ledger records the instance as created by tracefleet.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._instance import ensure
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import COMMON_ARGS, failure


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            force=dict(type="bool", default=False),
            **COMMON_ARGS,
        ),
        supports_check_mode=True,
    )
    # RV(path) is the instance directory; keep AnsibleModule from adding its stat.
    module.add_path_info = lambda kwargs: kwargs
    try:
        result = ensure(module.params, module.check_mode, module._diff)
    except TracefleetError as exc:
        module.fail_json(**failure(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
