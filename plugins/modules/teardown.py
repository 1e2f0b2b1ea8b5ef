#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: teardown
short_description: Undo exactly what tracefleet changed on a host, from its ledger
version_added: 0.1.0
description:
  - Reads the ledger that the tracefleet modules keep on the target and undoes its
    entries, newest first - knobs back to their original values, list entries and
    triggers removed or put back, events and filters restored, instances tracefleet
    created removed, mounts it made unmounted, boot-time setups of
    M(tracefleet.ftrace.trace_persist) removed from the next boot's configuration - and
    forgets each entry once undone.
  - Works from a later, separate play too, for example after the play that made the
    changes was killed; an interrupted teardown can simply be run again.
  - Anything not in the ledger (other users' instances, probes, knobs) is left alone.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.tracing.LEDGER
attributes:
  check_mode:
    support: full
    details:
      - Lists what would be undone.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  session:
    description:
      - Undo only this session's entries.
      - When omitted, the session V(default), the one the other modules record under when
        they are given no O(session). Entries of other sessions (concurrent plays, other
        users) are left alone; undoing every session takes O(all_sessions=true).
    type: str
  all_sessions:
    description:
      - Undo the entries of every session in the ledger, including those of plays that
        may still be running. Mutually exclusive with O(session).
    type: bool
    default: false
  keep_mounts:
    description: Leave mounts tracefleet made (for example by M(tracefleet.ftrace.tracefs)) in place.
    type: bool
    default: false
  tracefs_path:
    description: The tracefs directory. By default the one C(/proc/self/mountinfo) names.
    type: path
notes:
  - Needs root (use become).
seealso:
  - module: tracefleet.ftrace.trace_instance
  - module: tracefleet.ftrace.tracer
  - module: tracefleet.ftrace.trace_event
  - module: tracefleet.ftrace.trace_persist
"""

EXAMPLES = r"""
- name: Undo this session's tracing changes
  tracefleet.ftrace.teardown:
    session: incident-4711

- name: Undo everything tracefleet did on the host, every session, but keep tracefs mounted
  tracefleet.ftrace.teardown:
    all_sessions: true
    keep_mounts: true
"""

RETURN = r"""
undone:
  description: What was undone (or would be, in check mode), newest change first.
  returned: always
  type: list
  elements: str
  sample: ["remove instance tracefleet", "restore current_tracer of top level to 'nop'"]
notes:
  description: Entries there was nothing left to undo for (for example an instance someone already removed).
  returned: always
  type: list
  elements: str
remaining:
  description: Number of ledger entries left (other sessions, kept mounts, failures).
  returned: always
  type: int
reboot_required:
  description:
    - Whether a boot-time setup (M(tracefleet.ftrace.trace_persist)) was removed. Its undo changes
      what the next boot does; the running kernel keeps tracing as it was until a reboot.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import LEDGER_PATH_ARG
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import failure
from ansible_collections.tracefleet.ftrace.plugins.module_utils._teardown import run


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            session=dict(type="str"),
            all_sessions=dict(type="bool", default=False),
            keep_mounts=dict(type="bool", default=False),
            ledger_path=LEDGER_PATH_ARG,
            tracefs_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except TracefleetError as exc:
        module.fail_json(**failure(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
