#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: trace_persist
short_description: Make a tracing setup take effect at every boot
version_added: 0.1.0
description:
  - Declares a tracing setup (an instance or the top-level buffer, events with filters and
    triggers, probes, buffer size, clock, trace options, tracing_on) that the kernel or early
    userspace applies at every boot, for tracing the boot itself or a host that must trace
    from the moment it comes up.
  - It never changes the live tracing state (M(tracefleet.ftrace.tracer),
    M(tracefleet.ftrace.trace_event) and M(tracefleet.ftrace.trace_probe) do that); it changes
    what the next boot does, and returns RV(reboot_required).
  - "Three backends. V(cmdline): kernel parameters (C(trace_event=), C(trace_instance=),
    C(trace_buf_size=), C(trace_clock=), C(trace_options=), C(kprobe_event=),
    C(traceoff_after_boot)) added to the boot loader's command line, then its update command
    run. V(unit): a systemd service, C(tracefleet-persist-NAME.service), that runs a script
    (C(/etc/tracefleet/persist/NAME.sh)) early in boot, before C(sysinit.target), once tracefs
    is mounted; it is enabled, never started. V(bootconfig): the C(ftrace.*) tree of the
    kernel's boot-time tracing, attached to every initrd in C(/boot)."
  - V(cmdline) applies the setup earliest (during the kernel's own start) but says the least;
    the kernel applies V(bootconfig) early too; V(unit) can say everything but runs in
    userspace, after the kernel's start.
  - What the setup owns is recorded in C(/etc/tracefleet/persist/NAME.json) and in the ledger,
    so that O(state=absent) and M(tracefleet.ftrace.teardown) remove exactly that; command-line
    words that tracefleet did not add are never removed, except those replaced with
    O(force=true), which are put back when the setup goes.
  - Every option is checked before anything is written; a value that the chosen backend
    cannot carry fails naming the option, the value and why.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.attributes.FULL_SUPPORT
  - tracefleet.ftrace.tracing.LEDGER
options:
  name:
    description:
      - The setup's name (letters, digits and C(_), starting with a letter or C(_); up to 64).
        It names the unit, the files under C(/etc/tracefleet/persist) and the ledger entry.
      - Several setups may coexist on a host as long as they do not set the same kernel
        parameter (on the V(cmdline) backend) or the same initrd's bootconfig.
    type: str
    required: true
  state:
    description: Whether the next boots apply the setup.
    type: str
    choices: [present, absent]
    default: present
  backend:
    description:
      - How the next boot applies the setup.
      - V(auto) picks V(cmdline) when everything declared can be said on the kernel command line
        of the boot loader found (see O(bootloader)), and V(unit) otherwise; RV(backend_reason)
        says why.
      - V(cmdline) cannot say filters, triggers or uprobes; an instance needs Linux 6.3 or later
        and gets only its events (no buffer size, clock, options or tracing_on);
        O(tracing_on=false) needs Linux 6.15 or later (C(traceoff_after_boot)), kprobes are
        enabled at the top level by the kernel itself and must be listed, enabled, in O(events);
        GRUB also refuses C($), C(;), C(&), C(|), C(<), C(>), parentheses, braces and backquotes in
        a word (grub.cfg is a script of its own).
      - V(unit) needs systemd. A write that fails at boot is logged in the journal (C(journalctl
        -u tracefleet-persist-NAME)), with the file, the value and the kernel's C(error_log);
        the script goes on with the rest and the service fails.
      - V(bootconfig) needs a kernel built with C(CONFIG_BOOT_CONFIG) and the C(bootconfig) tool,
        and is used only when asked for. Kprobes must be in the group V(kprobes); uprobes
        cannot be defined. An initramfs-tools hook (C(/etc/initramfs/post-update.d)) attaches
        the bootconfig again to every initrd C(update-initramfs) writes; other initrd
        generators need the task to run again.
    type: str
    choices: [auto, cmdline, unit, bootconfig]
    default: auto
  bootloader:
    description:
      - Where the next boot's command line is kept, for V(cmdline) (and for the C(bootconfig)
        word of V(bootconfig)).
      - V(kernel-cmdline) is C(/etc/kernel/cmdline), which kernel-install (systemd-boot, UKIs)
        and the tracefleet lab's boot loader read. It is edited only when it exists; the module
        never creates it.
      - V(grub) is the value of C(GRUB_CMDLINE_LINUX) in C(/etc/default/grub), which must be
        assigned once, as a plain one-line value; the rest of the file stays byte for byte.
      - V(auto) takes C(/etc/kernel/cmdline) when it exists, else C(/etc/default/grub) when it
        exists; with neither, O(backend=auto) picks V(unit) and O(backend=cmdline) fails.
    type: str
    choices: [auto, grub, kernel-cmdline]
    default: auto
  boot_update_command:
    description:
      - The command (argv, no shell) that makes the boot loader take the edited command line,
        run after each edit, and again by teardown. When it fails, the file is put back and
        the task fails with its output.
      - By default, for V(grub), C(update-grub), C(grub-mkconfig -o /boot/grub/grub.cfg) or
        C(grub2-mkconfig -o /boot/grub2/grub.cfg), whichever is installed; for
        V(kernel-cmdline), none. The tracefleet lab's boot loader reads C(/etc/kernel/cmdline)
        by itself at shutdown. On systemd-boot or UKI hosts give the command that rebuilds the
        boot entry, such as V([kernel-install, add, KVER, /boot/vmlinuz-KVER]).
      - An empty list runs nothing.
    type: list
    elements: str
  instance:
    description:
      - The tracefs instance the setup creates at boot and works in. When omitted, the top-level
        buffer.
    type: str
  events:
    description: Events enabled at boot, with their filters and triggers.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - V(system/event) (or V(system:event)), or a whole V(system). No globs - the next boot's
            kernel may offer other events than the running one. A probe's event is V(GROUP/NAME).
        type: str
        required: true
      state:
        description: V(enabled) enables it at boot; V(disabled) sets only its filter and triggers.
        type: str
        choices: [enabled, disabled]
        default: enabled
      filter:
        description: The event's filter (V(unit) and V(bootconfig) only).
        type: str
      triggers:
        description: Triggers added to the event (V(unit) and V(bootconfig) only).
        type: list
        elements: str
  probes:
    description:
      - Probes defined at boot, checked and built as M(tracefleet.ftrace.trace_probe) builds them.
        Uprobe symbols are resolved to file offsets now, at persist time; run the task again
        after the binary changes.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Event name of the probe.
        type: str
        required: true
      group:
        description: Event group of the probe (V(kprobes) for O(backend=bootconfig)).
        type: str
        default: tracefleet
      type:
        description: Kind of probe.
        type: str
        choices: [kprobe, kretprobe, uprobe, uretprobe]
        default: kprobe
      target:
        description: As for M(tracefleet.ftrace.trace_probe), C(SYMBOL[+OFFSET]) or C(/path:SYMBOL).
        type: str
        required: true
      fetchargs:
        description: Arguments to record, each C(NAME=FETCHARG).
        type: list
        elements: str
        default: []
  buffer_size_kb:
    description: Ring-buffer size per CPU, in KiB.
    type: int
  trace_clock:
    description: The trace clock (checked against the running kernel's C(trace_clock) when tracefs is readable).
    type: str
  options:
    description: Trace options to set (V(noNAME) clears V(NAME)), such as V([sym-addr, noprint-parent]).
    type: list
    elements: str
    default: []
  tracing_on:
    description: Whether the buffer records once the setup is applied; unset leaves the kernel's default (on).
    type: bool
  force:
    description:
      - Replace command-line words of another owner that set the same parameter (the kernel keeps
        only the last C(trace_event=), C(trace_options=), C(trace_clock=), C(trace_buf_size=) and
        C(kprobe_event=)), a bootconfig already attached to an initrd, or a unit file of the same
        name that tracefleet did not write. What was replaced is recorded and put back when the
        setup is removed.
    type: bool
    default: false
  session:
    description: Name under which the setup is recorded in the ledger, for M(tracefleet.ftrace.teardown).
    type: str
    default: default
notes:
  - Needs root (use become).
  - Neither kernel of the tracefleet lab is built with C(CONFIG_BOOT_CONFIG); the V(bootconfig)
    backend is verified by unit tests of the rendered tree and the initrd footer only.
  - Event and clock names are not checked against the next boot's kernel; a name it lacks is
    reported at boot (the journal for V(unit), the kernel log otherwise).
seealso:
  - module: tracefleet.ftrace.teardown
  - module: tracefleet.ftrace.trace_probe
  - module: tracefleet.ftrace.trace_event
  - name: Boot-time tracing with tracefleet
    description: The collection's guide to the backends.
    link: https://github.com/tracefleet/tracefleet.ftrace/blob/main/docs/boot-time.md
  - name: Boot-time tracing
    description: The kernel's documentation of the bootconfig tree.
    link: https://docs.kernel.org/trace/boottime-trace.html
"""

EXAMPLES = r"""
- name: Trace scheduler switches and process forks from the kernel's start (the command line)
  tracefleet.ftrace.trace_persist:
    name: sched_boot
    events:
      - name: sched/sched_switch
      - name: sched/sched_process_fork
    buffer_size_kb: 8192
    trace_clock: global
    options: [noprint-parent]
  register: boot_tracing

- name: Reboot when the next boot changed
  ansible.builtin.reboot:
  when: boot_tracing.reboot_required

- name: Every open with its file name, in an instance, filtered (a systemd unit; auto picks it)
  tracefleet.ftrace.trace_persist:
    name: opens
    instance: boot
    probes:
      - name: open
        target: do_sys_openat2
        fetchargs: ["filename=+0($arg2):string"]
      - name: readline
        type: uprobe
        target: /usr/bin/bash:readline
    events:
      - name: tracefleet/open
        filter: 'filename ~ "/etc/*"'
      - name: sched/sched_process_exec
        triggers: [stacktrace]
      - name: tracefleet/readline
        state: disabled
    tracing_on: true
    session: boot-debug

- name: The same on a GRUB host, command line only, replacing someone's trace_event=
  tracefleet.ftrace.trace_persist:
    name: irqs
    backend: cmdline
    bootloader: grub
    events:
      - name: irq
    force: true

- name: A systemd-boot host, where kernel-install writes the boot entry
  tracefleet.ftrace.trace_persist:
    name: irqs
    backend: cmdline
    bootloader: kernel-cmdline
    boot_update_command: [kernel-install, add, "{{ ansible_kernel }}", "/boot/vmlinuz-{{ ansible_kernel }}"]
    events:
      - name: irq

- name: A bootconfig tree (kernels built with CONFIG_BOOT_CONFIG)
  tracefleet.ftrace.trace_persist:
    name: initcalls
    backend: bootconfig
    probes:
      - name: pci_init
        group: kprobes
        target: pci_proc_init
    events:
      - name: kprobes/pci_init
        triggers: [traceoff]
      - name: initcall/initcall_finish

- name: Stop tracing the boot
  tracefleet.ftrace.trace_persist:
    name: sched_boot
    state: absent
"""

RETURN = r"""
backend:
  description: The backend used (V(null) when an absent setup had nothing recorded).
  returned: always
  type: str
  sample: cmdline
backend_reason:
  description: Why that backend, for O(backend=auto) what kept it from the command line.
  returned: always
  type: str
  sample: "events[0].filter: event filters cannot be set on the kernel command line"
reboot_required:
  description: Whether what the next boot does changed (a reboot applies it).
  returned: always
  type: bool
changes:
  description: The file writes and commands made (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["write /etc/kernel/cmdline"]
state_file:
  description: The file that records what the setup owns; V(null) once removed.
  returned: always
  type: str
  sample: /etc/tracefleet/persist/sched_boot.json
cmdline_words:
  description: The words the setup needs on the kernel command line.
  returned: always
  type: list
  elements: str
  sample: ["trace_event=sched:sched_switch", "trace_buf_size=8192k"]
bootloader:
  description: The boot loader whose command line was edited (V(grub) or V(kernel-cmdline)).
  returned: always
  type: str
cmdline_file:
  description: The file that holds that command line.
  returned: always
  type: str
  sample: /etc/kernel/cmdline
update_command:
  description: The command run after editing it.
  returned: always
  type: list
  elements: str
replaced_words:
  description: Words of another owner that O(force=true) replaced, put back when the setup goes.
  returned: always
  type: list
  elements: str
unit_path:
  description: The systemd unit file (V(unit)).
  returned: always
  type: str
  sample: /etc/systemd/system/tracefleet-persist-opens.service
unit:
  description: The unit's text (V(unit)).
  returned: always
  type: str
script_path:
  description: The script the unit runs (V(unit)).
  returned: always
  type: str
  sample: /etc/tracefleet/persist/opens.sh
script:
  description: The script's text (V(unit)).
  returned: always
  type: str
tree_path:
  description: The bootconfig file (V(bootconfig)).
  returned: always
  type: str
  sample: /etc/tracefleet/persist/initcalls.bconf
tree:
  description: The bootconfig tree (V(bootconfig)).
  returned: always
  type: str
initrds:
  description: The initrds the bootconfig is attached to (V(bootconfig)).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import LEDGER_PATH_ARG
from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_apply import ensure
from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_spec import BACKENDS, BOOTLOADERS
from ansible_collections.tracefleet.ftrace.plugins.module_utils._probes import TYPES
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import failure


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            backend=dict(type="str", default="auto", choices=list(BACKENDS)),
            bootloader=dict(type="str", default="auto", choices=list(BOOTLOADERS)),
            boot_update_command=dict(type="list", elements="str"),
            instance=dict(type="str"),
            events=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    state=dict(type="str", default="enabled", choices=["enabled", "disabled"]),
                    filter=dict(type="str"),
                    triggers=dict(type="list", elements="str"),
                ),
            ),
            probes=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    group=dict(type="str", default="tracefleet"),
                    type=dict(type="str", default="kprobe", choices=list(TYPES)),
                    target=dict(type="str", required=True),
                    fetchargs=dict(type="list", elements="str", default=[]),
                ),
            ),
            buffer_size_kb=dict(type="int"),
            trace_clock=dict(type="str"),
            options=dict(type="list", elements="str", default=[]),
            tracing_on=dict(type="bool"),
            force=dict(type="bool", default=False),
            session=dict(type="str", default="default"),
            ledger_path=LEDGER_PATH_ARG,
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
