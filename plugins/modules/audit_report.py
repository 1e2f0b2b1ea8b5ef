# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as an action plugin (plugins/action/audit_report.py) and
# runs on the controller; this file holds its documentation only.

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_report
short_description: Write a compliance run's reports on the controller (JSON, JUnit XML, Markdown, HTML)
version_added: 0.1.0
description:
  - Collects the M(tracefleet.ftrace.audit_check) results of every host of a run and writes
    the run's reports into C(<dest>/<run_id>/) on the controller.
  - V(json) is C(compliance.json), every host's checks and the totals, for machines.
    V(junit) is C(compliance-junit.xml), JUnit XML for CI systems - one C(<testsuite>) per
    host, one C(<testcase>) per check, a C(<failure>) for a violation, C(<skipped>) for a
    check that could not be evaluated, and an C(<error>) for a host without a result.
    V(markdown) (C(compliance.md)) and V(html) (C(compliance.html)) are summaries for people;
    the HTML page is self-contained (inline style, no script, a content security policy that
    loads nothing).
  - Each file is written with mode 0600 (in a directory created 0700, whatever the umask) to a
    temporary file and renamed into place. A file that already holds
    the same bytes is left alone, so writing the same results under the same O(run_id) again
    reports RV(ignore:changed=false). The reports hold no clock time for that reason; the
    default O(run_id) is the time.
  - Host names and everything else that came from the hosts is escaped in every format (line
    breaks, control characters such as ESC and NUL, and lone surrogates become visible escapes)
    and never becomes part of a path; only O(run_id) names a directory, and it must be a single
    safe path component.
  - Runs entirely on the controller; use it once per play (C(run_once)). It never contacts a
    host.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.CONTROLLER
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  bypass_host_loop:
    details: Use C(run_once), and pass every host's result in O(results).
  check_mode:
    details:
      - Nothing is written; RV(written) lists the files that would be.
  idempotent:
    details:
      - With a fixed O(run_id). The default O(run_id) is the time, a new directory each run.
options:
  results:
    description:
      - The run's results, as inventory host name -> the registered result of
        M(tracefleet.ftrace.audit_check) for that host.
      - A host whose value is V(null) or a failed result is reported as having no result (an
        error in the JUnit file), for example a host that was unreachable.
    type: dict
    required: true
  dest:
    description:
      - The directory on the controller the run's directory is made in. A relative path is
        relative to the directory C(ansible-playbook) was started in.
    type: path
    default: ./audit
  formats:
    description: The reports to write.
    type: list
    elements: str
    choices: [json, junit, markdown, html]
    default: [json, junit, markdown]
  run_id:
    description:
      - The name of the run's directory under O(dest). Letters, digits, C(.), C(_) and C(-),
        not starting with C(.).
      - Defaults to the current UTC time, such as C(20250101T120000Z).
    type: str
notes:
  - A host counts as compliant when none of its checks failed; skipped checks are listed but
    do not count as violations.
seealso:
  - module: tracefleet.ftrace.audit_check
  - module: tracefleet.ftrace.tracefs_info
"""

EXAMPLES = r"""
# On each host: read the state, judge it (see tracefleet.ftrace.audit_check).
- name: Read the tracing state (read-only)
  become: true
  tracefleet.ftrace.tracefs_info:
  register: tracing

- name: Judge it against the default policy
  tracefleet.ftrace.audit_check:
    facts: "{{ tracing }}"
  register: audit

# Then once, on the controller. ansible_play_hosts_all keeps a host that became
# unreachable or failed a task: it has no result (null), and the reports list it as an
# error instead of leaving it out.
- name: Write the run's reports on the controller
  tracefleet.ftrace.audit_report:
    results: >-
      {{ dict(ansible_play_hosts_all
              | zip(ansible_play_hosts_all | map('extract', hostvars)
                    | map(attribute='audit', default=none))) }}
    dest: "{{ playbook_dir }}/audit"
    formats: [json, junit, html]
    run_id: nightly
  run_once: true
  delegate_to: localhost
  become: false
  register: report

- name: Where the JUnit file is, and who violates the policy
  ansible.builtin.debug:
    msg: "{{ report.files.junit }}: {{ report.violating.keys() | join(', ') or 'no violations' }}"
  run_once: true
"""

RETURN = r"""
run_id:
  description: The run's id, the name of its directory under O(dest).
  returned: success
  type: str
  sample: 20250101T120000Z
path:
  description: The run's directory, C(<dest>/<run_id>), as an absolute path.
  returned: success
  type: str
  sample: /home/ops/audit/20250101T120000Z
files:
  description: The report file of each format asked for.
  returned: success
  type: dict
  sample:
    json: /home/ops/audit/20250101T120000Z/compliance.json
    junit: /home/ops/audit/20250101T120000Z/compliance-junit.xml
    markdown: /home/ops/audit/20250101T120000Z/compliance.md
written:
  description: The files written (in check mode, that would be written); files that already
    held the same bytes are not.
  returned: success
  type: list
  elements: str
compliant:
  description: Whether every host had a result and none of them violated the policy.
  returned: success
  type: bool
  sample: false
violating:
  description: The hosts with violations, each with the names of its failed checks.
  returned: success
  type: dict
  sample: {"web3": ["debugfs_not_mounted", "no_leftover_instances"]}
summary:
  description: The run's totals.
  returned: success
  type: dict
  contains:
    hosts:
      description: The number of hosts in O(results).
      type: int
    compliant:
      description: The compliant hosts.
      type: list
      elements: str
    violating:
      description: The same as RV(violating).
      type: dict
    no_result:
      description: The hosts without a result.
      type: list
      elements: str
    checks:
      description: The number of checks of each status, V(pass), V(fail) and V(skip).
      type: dict
msg:
  description: What was written, and the totals.
  returned: always
  type: str
"""
