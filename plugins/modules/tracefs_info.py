#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: tracefs_info
short_description: Report tracefs, debugfs, lockdown and tracing state, read-only
version_added: 0.1.0
description:
  - Reads the kernel's own files and reports where tracefs and debugfs are mounted and
    how, whether debugfs may be mounted at all, the lockdown mode and the kernel release.
  - Also reports what the next boot mounts - from C(/etc/fstab), systemd's mount units and
    their drop-ins - and whether that agrees with the live mount (RV(tracefs.boot),
    RV(debugfs.boot)), so a host that meets a policy now but not after a reboot shows.
  - When tracefs is mounted and usable, also reports the tracing state of the top level
    (or of O(instance)) - tracers, current tracer, tracing_on, buffer size, clock,
    options, instances, enabled events, dynamic events, error_log - and RV(drift), every
    knob that differs from the kernel's defaults, the way C(trace-cmd stat) shows it.
  - Read-only. It never mounts anything (not tracefs, not debugfs, not securityfs), never
    touches the lazy C(/sys/kernel/debug/tracing) automount, and always returns
    RV(ignore:changed=false).
  - A directory C(/sys/kernel/tracing) can exist without tracefs mounted on it; this module
    reports what the mount table says, not what the directory tree suggests.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.INFO_MODULE
  - tracefleet.ftrace.tracing.LEDGER
options:
  instance:
    description:
      - Report the tracing state of this tracefs instance instead of the top level.
      - The module fails if the instance does not exist.
    type: str
  gather:
    description:
      - Which parts to gather. The mount, debugfs and lockdown facts are always gathered.
      - V(knobs) covers tracers, current tracer, tracing_on, buffer and sub-buffer sizes,
        clock, options, cpumask, function and pid lists; V(events) the enabled events with their filters
        and triggers; V(instances), V(dynamic_events) and V(error_log) what they say;
        V(instance_events) the enabled events of every instance (top level only);
        V(drift) needs the tracing parts and gathers them.
      - V(ledger) reads the ledger at O(ledger_path), what tracefleet recorded changing on
        this host (see RV(ledger)). It does not need tracefs.
    type: list
    elements: str
    choices: [all, mounts, knobs, events, instances, instance_events, dynamic_events, error_log,
              drift, ledger]
    default: [all]
notes:
  - Needs Python 3.8 or newer on the target. Reading the tracing files needs root or the
    tracing group set with M(tracefleet.ftrace.tracefs) O(tracefleet.ftrace.tracefs#module:gid).
  - The lockdown mode is read from C(/sys/kernel/security/lockdown) only when securityfs is
    already mounted, otherwise from the C(lockdown=) boot parameter, otherwise it is V(unknown).
seealso:
  - module: tracefleet.ftrace.tracefs
  - name: The tracefs filesystem
    description: The kernel's ftrace documentation.
    link: https://docs.kernel.org/trace/ftrace.html
"""

EXAMPLES = r"""
- name: Find out whether tracefs is mounted and usable
  tracefleet.ftrace.tracefs_info:
  register: tracing

- name: Show where tracefs is
  ansible.builtin.debug:
    msg: "tracefs at {{ tracing.tracefs.path | default('nowhere', true) }}, usable: {{ tracing.usable }}"

- name: Fail when debugfs is mounted anywhere
  ansible.builtin.assert:
    that: not tracing.debugfs.mounted
    fail_msg: "debugfs is mounted at {{ tracing.debugfs.mountpoints | map(attribute='mount_point') | join(', ') }}"

- name: Warn when tracefs would come back different after a reboot
  ansible.builtin.debug:
    msg: >-
      After a reboot ({{ tracing.tracefs.boot.source }}: {{ tracing.tracefs.boot.file }}) these change:
      {{ tracing.tracefs.boot.differences | map(attribute='setting') | join(', ') }}
  when: tracing.tracefs.boot.agrees is false

- name: Report a host that is not idle (tracers, events, probes left behind)
  ansible.builtin.debug:
    msg: "{{ item.knob }} = {{ item.value }} (default {{ item.default }})"
  loop: "{{ tracing.drift | default([]) }}"

- name: Only the mount facts, for a quick compliance pass
  tracefleet.ftrace.tracefs_info:
    gather: [mounts]

- name: The state of one instance
  tracefleet.ftrace.tracefs_info:
    instance: tracefleet

- name: What tracefleet left on the host, from its ledger (needs root to read it)
  become: true
  tracefleet.ftrace.tracefs_info:
    gather: [instances, instance_events, ledger]
  register: leftovers

- name: Show the instances tracefleet created that are still there
  ansible.builtin.debug:
    msg: "{{ leftovers.ledger.instances | intersect(leftovers.instances | default([])) }}"
"""

RETURN = r"""
kernel_release:
  description: The running kernel's release, as C(uname -r) prints it.
  returned: always
  type: str
  sample: 6.1.0-56-cloud-amd64
tracefs:
  description: tracefs as the kernel reports it.
  returned: always
  type: dict
  contains:
    registered:
      description: Whether the kernel knows the C(tracefs) filesystem type (C(/proc/filesystems)).
      type: bool
      sample: true
    mounted:
      description: Whether tracefs is mounted anywhere visible to this process.
      type: bool
      sample: true
    path:
      description:
        - The tracefs mount point tracefleet would use, C(/sys/kernel/tracing) when it is one
          of them, otherwise the first one found. V(null) when tracefs is not mounted.
      type: str
      sample: /sys/kernel/tracing
    options:
      description: Per-mount options of RV(tracefs.path).
      type: list
      elements: str
      sample: [rw, nosuid, nodev, noexec, relatime]
    super_options:
      description: Superblock options of RV(tracefs.path) (shared by every tracefs mount).
      type: list
      elements: str
      sample: [rw, gid=1001, mode=750]
    mountpoints:
      description: Every visible tracefs mount.
      type: list
      elements: dict
      contains:
        mount_point:
          description: Where it is mounted (kernel escapes undone).
          type: str
        source:
          description: The mount source.
          type: str
        fstype:
          description: Always C(tracefs) here.
          type: str
        options:
          description: Per-mount options.
          type: list
          elements: str
        super_options:
          description: Superblock options.
          type: list
          elements: str
        root:
          description: Root of the mount within the filesystem.
          type: str
        mount_id:
          description: The kernel's mount id.
          type: int
    boot:
      description:
        - The tracefs mount the next boot makes at RV(tracefs.boot.mount_point), read from the
          configuration on disk (nothing is run, nothing is mounted), and whether it agrees
          with the live mount there. A host can meet a policy now and not after a reboot.
        - With systemd, systemd's own order decides (see systemd.unit(5), systemd.mount(5)) -
          a unit or mask of the admin's in C(/etc/systemd/system) beats an C(/etc/fstab) line
          (turned into a unit by systemd-fstab-generator), which beats systemd's own unit in
          C(/usr/local/lib), C(/lib) or C(/usr/lib/systemd/system); drop-ins with C(Options=)
          apply on top. Without systemd, the C(/etc/fstab) line, mounted at boot unless
          C(noauto). Runtime units in C(/run) do not survive a reboot and are not read.
      type: dict
      contains:
        mount_point:
          description:
            - The mount point described - RV(tracefs.path), or C(/sys/kernel/tracing) when
              tracefs is not mounted or only through the debugfs automount.
          type: str
          sample: /sys/kernel/tracing
        unit:
          description: The systemd mount unit named after RV(tracefs.boot.mount_point).
          type: str
          sample: sys-kernel-tracing.mount
        systemd:
          description:
            - Whether systemd decides the boot-time mount (it is PID 1, or a unit of that name
              is on disk). V(null) when the configuration could not be read.
          type: bool
        source:
          description:
            - Where the boot-time mount comes from - V(fstab) (an C(/etc/fstab) line), V(unit)
              (a unit of the admin's own in C(/etc/systemd/system)), V(systemd) (the unit systemd
              or the distribution ships), V(masked) (the unit is masked, nothing is mounted) or
              V(none) (nothing mounts it at boot). V(null) when it could not be read.
          type: str
          sample: fstab
        file:
          description: The file that defines the boot-time mount (the mask for V(masked)), V(null) for V(none).
          type: str
          sample: /etc/fstab
        dropins:
          description: The drop-ins (C(*.conf)) that change the unit's C([Mount]) section, in the order systemd applies them.
          type: list
          elements: str
        options_file:
          description: The file whose options are in effect - RV(tracefs.boot.file), or the drop-in that sets C(Options=).
          type: str
        mounted:
          description:
            - Whether the next boot mounts it. A V(noauto) fstab line is still mounted by
              systemd when a C(.wants/) or C(.requires/) link of the unit's name pulls it in
              (systemd ships C(sysinit.target.wants/sys-kernel-tracing.mount)).
          type: bool
        fstype:
          description: The filesystem type the boot-time mount gives (C(Type=), the fstab's third field).
          type: str
          sample: tracefs
        configured_options:
          description: The options exactly as configured (C(Options=), the fstab's fourth field).
          type: list
          elements: str
          sample: [nosuid, nodev, noexec, gid=1001, mode=0750]
        options:
          description:
            - The per-mount options the boot-time mount gets, as RV(tracefs.options) shows the
              live ones (C(rw) unless C(ro); C(relatime), the kernel's default, unless an atime
              option is given).
          type: list
          elements: str
          sample: [rw, nosuid, nodev, noexec, relatime]
        gid:
          description: The group of the boot-time mount (C(gid=); 0 when not given). V(null) when C(gid=) is not a number.
          type: int
          sample: 1001
        mode:
          description: The mode of the boot-time mount (C(mode=); C(0700) when not given).
          type: str
          sample: "0750"
        agrees:
          description:
            - Whether the boot-time mount is the live one - mounted or not alike, and, when
              both are mounted, the same type, per-mount flags (C(ro), C(nosuid), C(nodev),
              C(noexec); an atime option when configured), gid and mode. V(null) when the
              configuration could not be read.
          type: bool
        differences:
          description: What differs, one entry per setting, the values in words.
          type: list
          elements: dict
          sample: [{"setting": "gid", "live": "1001", "boot": "0"}, {"setting": "noexec", "live": "on", "boot": "off"}]
        error:
          description: Why the configuration could not be read (an unreadable fstab or unit file), else V(null).
          type: str
debugfs:
  description: debugfs as the kernel reports it.
  returned: always
  type: dict
  contains:
    registered:
      description: Whether the kernel knows C(debugfs); false when booted with C(debugfs=off).
      type: bool
    mount_allowed:
      description:
        - Whether debugfs may be mounted, from C(debugfs=) on the command line,
          C(/proc/filesystems), the kernel build configuration where readable, and
          whether C(/sys/kernel/debug) exists.
      type: bool
    policy:
      description: The debugfs mode in force, V(on), V(no-mount) or V(off).
      type: str
    policy_source:
      description: Where RV(debugfs.policy) was read, V(cmdline), V(kconfig), V(filesystems) or V(default).
      type: str
    mounted:
      description: Whether debugfs is mounted anywhere visible to this process.
      type: bool
    mount_point_exists:
      description:
        - Whether C(/sys/kernel/debug) exists. The kernel removes it when debugfs mounting
          is disallowed (C(debugfs=off), C(debugfs=no-mount), C(CONFIG_DEBUG_FS_DISALLOW_MOUNT)).
      type: bool
    mountpoints:
      description: Every visible debugfs mount, in the same shape as RV(tracefs.mountpoints).
      type: list
      elements: dict
    boot:
      description:
        - Whether debugfs comes back at boot, as far as systemd and C(/etc/fstab) go (an
          initramfs or a script of the host's own may mount it too). M(tracefleet.ftrace.tracefs)
          with O(tracefleet.ftrace.tracefs#module:debugfs=unmounted) makes RV(debugfs.boot.kept_unmounted) true.
      type: dict
      contains:
        systemd_unit:
          description:
            - State of systemd's C(sys-kernel-debug.mount) - V(masked) (a symlink to C(/dev/null)
              or an empty file in C(/etc/systemd/system)), V(unmasked), V(overridden) (a unit
              file of the admin's own there), or V(null) where systemd is not PID 1 and does
              not ship the unit.
          type: str
        fstab_mount_points:
          description: Mount points of the active (not commented out) debugfs lines in C(/etc/fstab); V(null) when it cannot be read.
          type: list
          elements: str
        kept_unmounted:
          description:
            - V(true) when the kernel does not let debugfs be mounted (RV(debugfs.policy) V(off) or
              V(no-mount)), or neither systemd nor an fstab line without C(noauto) would mount it at
              boot; V(false) when one would; V(null) when that cannot be told.
          type: bool
tracing_automount:
  description:
    - Whether the deprecated C(<debugfs>/tracing) automount is there. V(null) when it
      cannot be told without mounting debugfs. Found with C(lstat), which does not trigger it.
  returned: always
  type: bool
kernel_config:
  description: Where the kernel build configuration was read, V(null) when it is not readable.
  returned: always
  type: str
  sample: /boot/config-6.1.0-56-cloud-amd64
lockdown:
  description: Kernel lockdown mode, V(none), V(integrity), V(confidentiality) or V(unknown).
  returned: always
  type: str
lockdown_source:
  description: Where RV(lockdown) was read, V(securityfs), V(cmdline) or V(none).
  returned: always
  type: str
usable:
  description:
    - Whether tracing can be used through RV(tracefs.path) (the control files are there
      and readable). V(false) when tracefs is not mounted or under lockdown C(confidentiality).
  returned: always
  type: bool
instance:
  description: The instance reported on, V(null) for the top level.
  returned: always
  type: str
tracers:
  description: The tracers the kernel offers (C(available_tracers)).
  returned: when RV(usable) and O(gather) includes knobs
  type: list
  elements: str
  sample: [function_graph, function, nop]
current_tracer:
  description: The tracer in use.
  returned: when RV(usable) and O(gather) includes knobs
  type: str
  sample: nop
tracing_on:
  description: Whether recording into the ring buffer is on.
  returned: when RV(usable) and O(gather) includes knobs
  type: bool
buffer_size_kb:
  description:
    - "Per-CPU ring buffer size in KiB: the size it will expand to when it is not yet
      allocated (the kernel's V(7 (expanded: 1408\\)) reads as 1408); V(null) when CPUs
      differ (V(X))."
  returned: when RV(usable) and O(gather) includes knobs
  type: int
  sample: 1408
buffer_size_raw:
  description: C(buffer_size_kb) exactly as the kernel wrote it.
  returned: when RV(usable) and O(gather) includes knobs
  type: str
  sample: "7 (expanded: 1408)"
buffer_subbuf_size_kb:
  description:
    - Size of the ring buffer's sub-buffers in KiB (C(buffer_subbuf_size_kb), Linux 6.8+);
      V(null) on a kernel without the file.
  returned: when RV(usable) and O(gather) includes knobs
  type: int
  sample: 4
trace_clock:
  description: The selected trace clock.
  returned: when RV(usable) and O(gather) includes knobs
  type: str
  sample: local
trace_clocks:
  description: The trace clocks the kernel offers.
  returned: when RV(usable) and O(gather) includes knobs
  type: list
  elements: str
options:
  description: Every trace option and whether it is on.
  returned: when RV(usable) and O(gather) includes knobs
  type: dict
cpumask:
  description: C(tracing_cpumask) as the kernel prints it (hex).
  returned: when RV(usable) and O(gather) includes knobs
  type: str
function_lists:
  description: Entries of C(set_ftrace_filter), C(set_ftrace_notrace), C(set_graph_function), C(set_graph_notrace).
  returned: when RV(usable) and O(gather) includes knobs
  type: dict
pid_lists:
  description: Entries of the pid filter files (C(set_ftrace_pid), C(set_event_pid), ...).
  returned: when RV(usable) and O(gather) includes knobs
  type: dict
instances:
  description: Names of the tracefs instances (top level only).
  returned: when RV(usable), O(instance) is not given and O(gather) includes instances
  type: list
  elements: str
enabled_events:
  description: Enabled events as C(system/event).
  returned: when RV(usable) and O(gather) includes events
  type: list
  elements: str
  sample: [sched/sched_switch]
event_settings:
  description: Filters and triggers of the enabled events that have any.
  returned: when RV(usable) and O(gather) includes events
  type: dict
dynamic_events:
  description: Definitions in C(dynamic_events) (kprobes, uprobes, synthetic events), as the kernel reads them back.
  returned: when RV(usable), O(instance) is not given and O(gather) includes dynamic_events
  type: list
  elements: str
  sample: ["p:tracefleet/open do_sys_openat2 name=+0($arg2):string"]
error_log:
  description: Lines of C(error_log) (the last errors of the tracing control files, with a caret under the bad token).
  returned: when RV(usable) and O(gather) includes error_log
  type: list
  elements: str
instance_events:
  description:
    - The enabled events of every tracefs instance, as instance name -> list of C(system/event).
  returned: when RV(usable), O(instance) is not given and O(gather) includes instance_events
  type: dict
  sample: {"tf-session": ["sched/sched_switch"]}
ledger:
  description:
    - What tracefleet recorded changing on this host, read from O(ledger_path) without taking
      its lock. A missing ledger reads as empty (tracefleet changed nothing there).
  returned: when O(gather) includes ledger
  type: dict
  contains:
    path:
      description: The ledger file read.
      type: str
      sample: /var/lib/tracefleet/ledger.json
    exists:
      description: Whether the ledger file exists; V(null) when it could not be read.
      type: bool
    error:
      description:
        - Why the ledger could not be read (for example permission denied without become),
          V(null) when it was read or does not exist.
      type: str
    entries:
      description: The ledger's entries as recorded (C(kind), C(session), C(time) and the kind's keys).
      type: list
      elements: dict
    instances:
      description: Names of the instances tracefleet created and has not removed.
      type: list
      elements: str
      sample: [tf-session]
    probe_groups:
      description: Groups of the probes tracefleet defined and has not removed.
      type: list
      elements: str
      sample: [tracefleet]
drift:
  description:
    - Every knob that differs from the kernel's defaults on this host, as dicts with
      C(knob), C(value) and C(default). Empty on an idle host.
  returned: when RV(usable) and O(gather) includes drift
  type: list
  elements: dict
  sample: [{"knob": "current_tracer", "value": "function", "default": "nop"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _hostfacts
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import LEDGER_PATH_ARG

ARGUMENT_SPEC = dict(
    instance=dict(type="str"),
    gather=dict(type="list", elements="str", default=["all"], choices=list(_hostfacts.GATHER_CHOICES)),
    ledger_path=LEDGER_PATH_ARG,
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        result = _hostfacts.gather(params["instance"], params["gather"], params["ledger_path"])
    except TracefleetError as exc:
        module.fail_json(msg=str(exc), **getattr(exc, "details", {}))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
