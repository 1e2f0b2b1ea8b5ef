# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as an action plugin (plugins/action/audit_check.py) and
# runs on the controller; this file holds its documentation only.

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_check
short_description: Judge a host's tracefs facts against a compliance policy, on the controller
version_added: 0.1.0
description:
  - Evaluates a registered M(tracefleet.ftrace.tracefs_info) result against a mount and
    tracing policy and returns one result per check, with the status V(pass), V(fail) or
    V(skip) (the facts could not answer the check).
  - Runs entirely on the controller. It never contacts the host, never changes anything and
    always returns RV(ignore:changed=false).
  - The facts are host data and are checked before any check reads them; a value of the wrong
    type or size fails the task with a message naming the field and the value.
  - "Default policy: tracefs mounted at O(policy.tracefs_path) with O(policy.tracefs_options),
    and mounted the same way at the next boot (O(policy.require_persistent)); debugfs not mounted;
    no instances, probes or enabled events left behind by tracefleet."
  - "Opt-in checks: debugfs not allowed at all (O(policy.require_debugfs_disallowed)), a minimum
    lockdown mode (O(policy.min_lockdown)), the group (O(policy.tracefs_gid)) and mode
    (O(policy.tracefs_mode)) of the tracefs mount."
  - The M(tracefleet.ftrace.audit_report) action writes the reports of a whole run from these
    results; the C(tracefleet.ftrace.compliance) role does both for every host of a play.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.CONTROLLER
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    details:
      - This action does not modify state.
  diff_mode:
    details:
      - This action does not modify state.
options:
  facts:
    description:
      - The registered result of M(tracefleet.ftrace.tracefs_info) for this host, gathered at the
        top level (without O(tracefleet.ftrace.tracefs_info#module:instance)).
      - The leftover checks need its V(instances), V(instance_events), V(events),
        V(dynamic_events) and V(ledger) subsets (all of them are in the default V(all)); a check
        whose facts are missing is reported as V(skip) and says which subset to gather.
      - Gather them with become, otherwise the ledger cannot be read and the checks that need
        it are skipped.
    type: dict
    required: true
  policy:
    description:
      - The policy to check. Every key is optional; the defaults are the default policy.
    type: dict
    default: {}
    suboptions:
      tracefs_path:
        description: Where tracefs must be mounted.
        type: str
        default: /sys/kernel/tracing
      tracefs_options:
        description:
          - Per-mount options every tracefs mount must have. Checked on every tracefs mount,
            not only the one at O(policy.tracefs_path). V([]) turns the check off.
        type: list
        elements: str
        default: [nosuid, nodev, noexec]
      tracefs_gid:
        description:
          - The numeric group id tracefs must be mounted with (C(gid=) in the superblock
            options; C(0) when the mount shows none). Not checked when omitted.
          - A group name must be resolved on the host first; pass its name in
            O(policy.tracefs_group) for the messages. When O(policy.tracefs_group) is set and
            O(policy.tracefs_gid) is not, the group is taken as missing on the host and the
            check fails.
        type: raw
      tracefs_group:
        description: The name of the group in O(policy.tracefs_gid), for messages.
        type: str
      tracefs_mode:
        description:
          - The mode tracefs must be mounted with, an octal string such as V('0750')
            (C(mode=) in the superblock options; C(0700) when the mount shows none). Not
            checked when omitted.
        type: raw
      debugfs_mounted_allowed:
        description: Do not check that debugfs is unmounted.
        type: bool
        default: false
      require_debugfs_disallowed:
        description:
          - Require debugfs to be unavailable altogether - not registered (C(debugfs=off)) or
            not mountable (C(debugfs=no-mount), C(CONFIG_DEBUG_FS_DISALLOW_MOUNT)).
        type: bool
        default: false
      min_lockdown:
        description:
          - The least kernel lockdown mode required. V(none) does not check it.
          - A host whose lockdown mode cannot be read without mounting securityfs (V(unknown))
            is skipped for this check.
        type: str
        choices: [none, integrity, confidentiality]
        default: none
      allow_leftovers:
        description: Do not check for instances, probes and enabled events left behind.
        type: bool
        default: false
      probe_groups:
        description:
          - Probe groups that belong to tracefleet, besides the groups the ledger recorded.
        type: list
        elements: str
        default: [tracefleet]
      require_persistent:
        description:
          - Check V(tracefs_persistent) - the mount the next boot makes at O(policy.tracefs_path)
            (an C(/etc/fstab) line, a systemd mount unit or drop-in, systemd's own unit; see
            RV(tracefleet.ftrace.tracefs_info#module:tracefs.boot)) meets the policy - the
            options, O(policy.tracefs_gid), O(policy.tracefs_mode) - and is the live mount
            (same flags, gid and mode), so a host compliant now is compliant after a reboot.
          - V(false) leaves the check out, for hosts whose tracefs is meant to be mounted
            for a while only.
        type: bool
        default: true
notes:
  - "What counts as left behind: an instance the ledger records as created by tracefleet that
    still exists; a dynamic event (kprobe, uprobe, ...) in a group of O(policy.probe_groups) or
    of a probe the ledger recorded; an event enabled at the top level (whoever enabled it) or in
    an instance tracefleet created."
  - A skipped check is not a violation; RV(compliant) only counts failures.
  - V(tracefs_persistent) is skipped when the facts describe another mount point than
    O(policy.tracefs_path) (M(tracefleet.ftrace.tracefs_info) reports the boot configuration of the
    mount point tracefs is mounted at, else C(/sys/kernel/tracing)) or when the host's configuration
    could not be read. When tracefs is not mounted now, only the boot configuration is judged
    against the policy (V(tracefs_mounted) reports the missing mount).
seealso:
  - module: tracefleet.ftrace.tracefs_info
  - module: tracefleet.ftrace.audit_report
  - module: tracefleet.ftrace.teardown
"""

EXAMPLES = r"""
- name: Read the host's tracing state (read-only)
  become: true
  tracefleet.ftrace.tracefs_info:
  register: tracing

- name: Check it against the default policy
  tracefleet.ftrace.audit_check:
    facts: "{{ tracing }}"
  register: audit

- name: Check a stricter policy
  tracefleet.ftrace.audit_check:
    facts: "{{ tracing }}"
    policy:
      require_debugfs_disallowed: true
      min_lockdown: integrity
      tracefs_gid: 1001
      tracefs_group: tracing
      tracefs_mode: "0750"
  register: strict

- name: Judge a host whose tracefs is mounted for a while only (not at boot)
  tracefleet.ftrace.audit_check:
    facts: "{{ tracing }}"
    policy:
      require_persistent: false
  register: transient

- name: Show the violations
  ansible.builtin.debug:
    msg: "{{ item.check }}: {{ item.message }}"
  loop: "{{ strict.checks | selectattr('status', 'eq', 'fail') }}"
  loop_control:
    label: "{{ item.check }}"
"""

RETURN = r"""
checks:
  description:
    - One entry per check the policy asks for, in a fixed order.
    - "The checks: V(tracefs_mounted), V(tracefs_options), V(tracefs_gid), V(tracefs_mode),
      V(tracefs_persistent), V(debugfs_not_mounted), V(debugfs_disallowed), V(lockdown),
      V(no_leftover_instances), V(no_leftover_probes), V(no_enabled_events). Checks the policy
      turns off are left out."
  returned: success
  type: list
  elements: dict
  contains:
    check:
      description: The check's name.
      type: str
      sample: debugfs_not_mounted
    status:
      description: V(pass), V(fail) (a violation) or V(skip) (the facts could not answer it).
      type: str
      sample: fail
    expected:
      description: What the policy asks for.
      type: raw
      sample: []
    actual:
      description: What the host has.
      type: raw
      sample: [/sys/kernel/debug]
    message:
      description: The finding in words.
      type: str
      sample: debugfs is mounted at /sys/kernel/debug
violations:
  description: The number of checks with status V(fail).
  returned: success
  type: int
  sample: 1
compliant:
  description: Whether no check failed.
  returned: success
  type: bool
  sample: false
policy:
  description: The policy applied, with the defaults filled in (the mode as a number).
  returned: success
  type: dict
facts_summary:
  description: The host facts the reports show next to the checks.
  returned: success
  type: dict
  contains:
    kernel_release:
      description: The running kernel's release.
      type: str
    lockdown:
      description: The lockdown mode.
      type: str
    tracefs_path:
      description: The tracefs mount point tracefleet uses, V(null) when not mounted.
      type: str
    usable:
      description: Whether tracing is usable.
      type: bool
msg:
  description: C(compliant), or the number of violations and the checks that failed.
  returned: always
  type: str
  sample: "1 violation(s): debugfs_not_mounted"
"""
