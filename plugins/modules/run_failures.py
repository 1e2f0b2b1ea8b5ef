# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as an action plugin (plugins/action/run_failures.py) and
# runs on the controller; this file holds its documentation only.

from __future__ import annotations

DOCUMENTATION = r"""
module: run_failures
short_description: Record the hosts of a capture run that failed in its manifest
version_added: 0.1.0
description:
  - Records the hosts of a run that failed or were unreachable, and why, in the run's
    C(manifest.json), C(<run_dir>/manifest.json), as its C(failed) map - host name to the
    reason, whether the host was unreachable, the task that failed and when it was recorded -
    so that a run says which hosts it lacks and why.
    M(tracefleet.ftrace.run_report) lists them.
  - The C(tracefleet.ftrace.session) role uses it at its end, once for the play, with the
    hosts of the play that failed so far and the message of each one's last failed or
    unreachable task.
  - What it is given comes from the hosts' registered results, so it is checked as host data. A
    reason is kept whatever it holds, as one line of text (line breaks become spaces; control
    characters, bidirectional overrides and invalid Unicode become visible backslash escapes) of
    at most 2000 characters, longer ones cut with a note of their length; a C(task) the
    same, at most 255 characters. A value of the wrong type (a host name or a reason that is not
    a string, C(unreachable) that is not a boolean, a key not listed here) refuses the
    whole record, and nothing is written.
  - Each host's record in the manifest is written under the manifest's lock, as
    M(tracefleet.ftrace.trace_capture) writes it, and C(manifest.json) is then rewritten
    from the records. A host already recorded with the same reason, reachability and task is left as it is
    (RV(ignore:changed=false)), so every batch of a rollout under C(serial) may record every host
    that failed so far. A host that has captures in the run and failed after them (at the
    teardown, say) is recorded as failed and keeps its captures. Hosts already recorded and not in
    O(failures) stay recorded; a later capture of a host in the same run (the run id used again)
    removes its record.
  - When no host was captured, the run may have neither a manifest nor a directory yet; both are
    made (the directory's name must then be a valid run id), with the manifest's usual fields and
    no hosts. Runs entirely on the controller; it never contacts a host.
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
    details: Use C(run_once); O(failures) names the hosts.
  check_mode:
    details:
      - The records are checked and returned, with what would change; nothing is written.
options:
  failures:
    description:
      - The failed hosts, by inventory name. Each value is a dictionary of
        C(reason) (a string, required), why the host failed, typically the C(msg) of its failed
        task's result; C(unreachable) (a boolean, default V(false)), whether it was unreachable
        rather than failed; and C(task) (a string, optional), the task that failed as the play's
        output names it.
      - An empty dictionary records nothing (and makes no run directory).
    type: dict
    required: true
seealso:
  - module: tracefleet.ftrace.trace_capture
  - module: tracefleet.ftrace.run_report
"""

EXAMPLES = r"""
# The tracefleet.ftrace.session role records the hosts of its play that failed this way,
# with the message of each one's last failed or unreachable task.
- name: Record a host that did not answer and one whose capture failed
  tracefleet.ftrace.run_failures:
    run_dir: traces/20261127T031500Z-1a2b3c4d
    failures:
      web07:
        reason: "Failed to connect to the host via ssh: ssh: connect to host web07 port 22: No route to host"
        unreachable: true
        task: "tracefleet.ftrace.tracefs : Create the tracing group"
      web19:
        reason: "the workload exited with rc 2, not one of allowed_rc [0]"
        task: "tracefleet.ftrace.session : Capture the host's own window and fetch it to the controller"
  run_once: true
  delegate_to: localhost
  become: false
  register: recorded

- name: Say which hosts the run lacks
  ansible.builtin.debug:
    msg: "{{ recorded.msg }}"
  run_once: true
"""

RETURN = r"""
failures:
  description:
    - The records of the hosts in O(failures) as the manifest holds them (or, in check mode, would),
      by host name. A host already recorded the same way keeps its record and its time.
  returned: success
  type: dict
  sample:
    web07:
      reason: "Failed to connect to the host via ssh: ssh: connect to host web07 port 22: No route to host"
      unreachable: true
      task: "tracefleet.ftrace.tracefs : Create the tracing group"
      time: "2026-11-27T03:16:40Z"
recorded:
  description: The hosts whose record is new or changed (or, in check mode, would be), sorted.
  returned: success
  type: list
  elements: str
  sample: [web07]
manifest:
  description: The run's manifest.
  returned: success
  type: str
  sample: /srv/traces/20261127T031500Z-1a2b3c4d/manifest.json
msg:
  description: What was recorded.
  returned: always
  type: str
"""
