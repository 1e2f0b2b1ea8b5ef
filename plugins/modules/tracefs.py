#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: tracefs
short_description: Ensure tracefs is mounted (or not) with the mount policy asked for
version_added: 0.1.0
description:
  - Mounts tracefs at O(path) with the per-mount O(options) and the tracing-group
    access O(gid)/O(mode), or unmounts it.
  - Finds drift from C(/proc/self/mountinfo) and the mount point's ownership, and corrects
    it with a remount, which reports RV(ignore:changed=true). A host that already matches
    the policy (for example a systemd host, which mounts tracefs with C(nosuid,nodev,noexec))
    reports no change.
  - On kernels without tracefs (older than 4.1), O(legacy_debugfs=true) reaches the
    tracing files under C(<debugfs>/tracing) instead, mounting debugfs only where the
    kernel allows it. Where debugfs is disallowed (C(debugfs=off), C(debugfs=no-mount),
    C(CONFIG_DEBUG_FS_DISALLOW_MOUNT)) and there is no other way, the module fails and says so.
  - Under kernel lockdown C(confidentiality) tracefs still mounts but shows no files;
    the module mounts it, returns RV(usable=false) and warns, naming lockdown.
  - With O(persistent=true), the matching C(/etc/fstab) line is written (atomically,
    optionally with a backup) so the policy survives a reboot.
  - With O(debugfs=unmounted), debugfs is unmounted and kept unmounted across reboots
    (systemd's C(sys-kernel-debug.mount) masked, debugfs lines in O(fstab) commented out),
    so that a host passes the audit check C(debugfs_not_mounted). O(debugfs=disallowed) also
    puts C(debugfs=off) on the next boot's kernel command line, so that the kernel itself
    refuses debugfs from then on. Teardown leaves all of it in place.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.tracing.LEDGER
attributes:
  check_mode:
    support: full
    details:
      - Nothing is mounted, remounted, unmounted or written; RV(ignore:changed) is predicted.
      - With O(debugfs=unmounted) or V(disallowed), a debugfs that processes hold fails the task in check mode too.
  diff_mode:
    support: full
    details:
      - Shows the mount (mounted, options, gid, mode) and the fstab line before and after.
      - With O(debugfs=unmounted) or V(disallowed), also C(debugfs) - where it is mounted, the fstab's active
        debugfs lines, the state of systemd's C(sys-kernel-debug.mount) and, where tracefleet
        edits the next boot's command line, its C(debugfs=) word (C(next_boot)).
  idempotent:
    support: full
options:
  state:
    description:
      - V(mounted) mounts tracefs if needed and corrects drift in options, gid and mode.
      - V(unmounted) unmounts tracefs from O(path) if it is mounted there.
    type: str
    choices: [mounted, unmounted]
    default: mounted
  path:
    description:
      - Mount point. It is created when missing (except under C(/sys), where the kernel
        provides it).
      - Resolved before use (symlinks followed, a trailing C(/) dropped), so the mount,
        the ledger entry and the fstab line name the directory the kernel shows.
        Relative paths, C(..), control characters and a symlink to nothing are refused.
      - A directory that is not empty (say C(/etc) or C(/sys/kernel)) is refused, unless
        tracefs is already mounted on it, since a mount would hide its contents. There is no
        override.
      - Every tracefs mount shows the same superblock, so O(gid) and O(mode) apply to all
        of them.
    type: path
    default: /sys/kernel/tracing
  options:
    description:
      - Per-mount options. The security flags C(ro), C(nosuid), C(nodev) and C(noexec)
        are always compared, so leaving one out asks for it to be off. An atime option
        (C(noatime), C(relatime), C(strictatime)) is compared only when given.
      - C(uid=), C(gid=) and C(mode=) are not accepted here; use O(gid) and O(mode).
      - An element may be a comma-separated list, as in fstab. Unknown options and
        contradicting pairs (C(ro)/C(rw), C(nosuid)/C(suid), C(nodev)/C(dev),
        C(noexec)/C(exec)) are refused.
    type: list
    elements: str
    default: [nosuid, nodev, noexec]
  gid:
    description:
      - Group (name or number, 0 to 4294967294) that owns the tracing files. With
        O(mode) such as V(0750), members of that group can read them (kernel 5.16 and
        newer apply it to every file). Not managed when omitted.
    type: raw
  mode:
    description:
      - Permissions of the tracefs root directory, as an octal string such as V('0750').
        Not managed when omitted. Quote it in YAML.
    type: raw
  persistent:
    description:
      - Also keep an entry for O(path) in O(fstab) that matches the policy
        (V(state=mounted)) or remove it (V(state=unmounted)).
      - When V(false), the fstab is not read or changed for the tracefs entry (O(debugfs=unmounted)
        still comments out debugfs lines).
      - The module changes only the running system unless asked; the
        C(tracefleet.ftrace.tracefs) role, which applies a fleet's policy, sets
        C(tracefs_persistent=true) by default so the policy survives a reboot.
    type: bool
    default: false
  fstab:
    description:
      - The file O(persistent) edits. It must be a regular file (a symlink to one keeps
        its link). Lines that are not ours stay byte for byte, whatever their encoding;
        an entry for the same mount point written differently (C(/sys/kernel/tracing/))
        is recognised, and one of another filesystem type is never replaced.
      - Edited under an exclusive C(flock) on C(<fstab>.lock) (created 0600 when
        missing, and left in place), read again under the lock, and replaced
        atomically (fsync before the rename).
    type: path
    default: /etc/fstab
  backup:
    description: Keep a timestamped copy of O(fstab) before changing it (for the tracefs entry or the debugfs lines).
    type: bool
    default: false
  debugfs:
    description:
      - V(unmanaged) leaves debugfs as it is.
      - V(unmounted) unmounts every debugfs mount (the mounts inside it, such as the
        C(<debugfs>/tracing) automount, first) and keeps debugfs from coming back at boot,
        whatever O(persistent) says - masks systemd's C(sys-kernel-debug.mount) (the symlink
        C(/etc/systemd/system/sys-kernel-debug.mount -> /dev/null) that C(systemctl mask)
        makes; only where systemd is PID 1 or ships the unit), and comments out every active
        debugfs line of O(fstab), keeping the line whole after the mark C(# tracefleet) (see RV(actions)).
      - A debugfs that processes hold (working directory, open or mapped file under it) is
        refused before anything changes, naming their pids and commands, unless O(debugfs_force=true).
      - Refused together with a O(path) inside debugfs, and where O(legacy_debugfs=true)
        reaches the tracing files through debugfs.
      - V(disallowed) does all that V(unmounted) does and puts C(debugfs=off) on the next
        boot's kernel command line (kernel 5.10 and newer), in the boot loader configuration
        M(tracefleet.ftrace.trace_persist) edits - C(/etc/kernel/cmdline), else
        C(GRUB_CMDLINE_LINUX) in C(/etc/default/grub), followed by C(update-grub) (or
        C(grub-mkconfig)). From the next boot on the kernel registers no debugfs at all;
        tracefs is unaffected. Until the host reboots, RV(reboot_required) is V(true) and
        RV(msg) says so. The word is recorded in C(/etc/tracefleet/debugfs.json); another
        C(debugfs=) word that tracefleet did not add is refused (the kernel takes the last one).
      - V(unmounted) takes a C(debugfs=off) that V(disallowed) added off the command line again
        (RV(reboot_required) until the host reboots); one tracefleet did not add stays.
      - Nothing of it is recorded in the ledger; M(tracefleet.ftrace.teardown) neither
        remounts debugfs, unmasks the unit nor edits the command line. To undo it by hand, run
        C(systemctl unmask sys-kernel-debug.mount) and remove the comment mark from the fstab lines
        (and run this module with O(debugfs=unmounted) to take C(debugfs=off) off the command line).
    type: str
    choices: [unmanaged, unmounted, disallowed]
    default: unmanaged
  debugfs_force:
    description:
      - With O(debugfs=unmounted) or V(disallowed), detach a busy debugfs lazily (C(umount2) with C(MNT_DETACH))
        instead of failing. It leaves the mount table at once; the processes that hold it keep
        what they have open until they close it. The task warns, naming them.
    type: bool
    default: false
  session:
    description:
      - Name under which a mount this task makes is recorded in the ledger, so that
        M(tracefleet.ftrace.teardown) can unmount it again (unless told to keep mounts).
      - V(default) is the session every tracefleet module records under when it is given
        none, so a plain M(tracefleet.ftrace.teardown) (no O(tracefleet.ftrace.teardown#module:session))
        unmounts it along with the other changes made without a session name. Give the
        mount policy a session of its own to keep it apart from tracing sessions, as the
        C(tracefleet.ftrace.tracefs) role does (C(tracefs_session), default V(tracefs)).
      - A name with a newline or another control character is refused.
    type: str
    default: default
  legacy_debugfs:
    description:
      - On kernels without tracefs or without C(/sys/kernel/tracing), use
        C(<debugfs>/tracing), mounting debugfs at C(/sys/kernel/debug) (with O(options),
        O(gid) and O(mode)) if it is not mounted and the kernel allows it.
      - When V(false) such kernels fail with a message that suggests this option.
    type: bool
    default: false
notes:
  - Needs root (use become). The module calls C(mount(2)) and C(umount2(2)) directly, so
    the options asked for are exactly the options set.
  - Mounting tracefs a second time on the same path fails in the kernel with EBUSY; this
    module never tries, it remounts instead.
  - Every input is checked before the first change (the plan, the fstab, then the
    ledger, which records a mount before it is made); a mount the kernel refuses is
    taken out of the ledger again.
seealso:
  - module: tracefleet.ftrace.tracefs_info
  - name: Mount policy and debugfs-disallowed hosts
    description: The collection's guide to the mount policy, the fstab and hosts without debugfs.
    link: https://github.com/tracefleet/tracefleet.ftrace/blob/main/docs/mount-policy.md
  - name: The tracefs filesystem
    description: The kernel's ftrace documentation.
    link: https://docs.kernel.org/trace/ftrace.html
"""

EXAMPLES = r"""
- name: Mount tracefs the way systemd does
  tracefleet.ftrace.tracefs:
    path: /sys/kernel/tracing
    options: [nosuid, nodev, noexec]

- name: Let the tracing group read the tracing files, and keep it across reboots
  tracefleet.ftrace.tracefs:
    gid: tracing
    mode: "0750"
    persistent: true
    backup: true
    session: tracefs  # the mount policy's own ledger session, apart from tracing sessions

- name: Reach the tracing files on an old kernel through debugfs if allowed
  tracefleet.ftrace.tracefs:
    legacy_debugfs: true
  register: tracing

- name: Use the path the module found
  ansible.builtin.debug:
    msg: "tracing files at {{ tracing.path }} (via {{ tracing.via }})"

- name: Unmount tracefs and drop its fstab line
  tracefleet.ftrace.tracefs:
    state: unmounted
    persistent: true

- name: Unmount debugfs and keep it unmounted at boot (the audit's debugfs_not_mounted)
  tracefleet.ftrace.tracefs:
    debugfs: unmounted
    backup: true

- name: Also keep the kernel from offering debugfs at all from the next boot on (debugfs=off)
  tracefleet.ftrace.tracefs:
    debugfs: disallowed
  register: tracefs_policy

- name: Reboot where the kernel command line changed
  ansible.builtin.reboot:
  when: tracefs_policy.reboot_required

- name: The same where a process may hold debugfs open - detach it lazily, with a warning naming it
  tracefleet.ftrace.tracefs:
    debugfs: unmounted
    debugfs_force: true

- name: Mount tracefs inside a chroot, and keep the chroot's own fstab in step
  tracefleet.ftrace.tracefs:
    path: /srv/container/sys/kernel/tracing
    persistent: true
    fstab: /srv/container/etc/fstab
"""

RETURN = r"""
path:
  description: The directory holding the tracing files (the tracefs mount point, or C(<debugfs>/tracing)).
  returned: always
  type: str
  sample: /sys/kernel/tracing
mounted:
  description: Whether the managed mount is mounted after the task (predicted in check mode).
  returned: always
  type: bool
via:
  description: Which filesystem provides RV(path).
  returned: always
  type: str
  choices: [tracefs, debugfs]
mount:
  description: The managed mount as C(/proc/self/mountinfo) shows it after the task; V(null) when not mounted.
  returned: always
  type: dict
  contains:
    mount_point:
      description: Where it is mounted.
      type: str
    source:
      description: Mount source.
      type: str
    fstype:
      description: C(tracefs) or C(debugfs).
      type: str
    options:
      description: Per-mount options.
      type: list
      elements: str
    super_options:
      description: Superblock options (C(gid=), C(mode=) appear when not the defaults).
      type: list
      elements: str
debugfs:
  description: debugfs facts.
  returned: always
  type: dict
  contains:
    registered:
      description: Listed in C(/proc/filesystems).
      type: bool
    mount_allowed:
      description: Whether the kernel lets debugfs be mounted (boot parameter, build configuration, C(/sys/kernel/debug)).
      type: bool
    policy:
      description: The debugfs mode in force, V(on), V(no-mount) or V(off).
      type: str
    policy_source:
      description: Where RV(debugfs.policy) was read, V(cmdline), V(kconfig), V(filesystems) or V(default).
      type: str
    mounted:
      description: Whether debugfs is mounted.
      type: bool
    mount_point_exists:
      description: Whether C(/sys/kernel/debug) exists.
      type: bool
    mountpoints:
      description: Every debugfs mount.
      type: list
      elements: dict
lockdown:
  description:
    - Kernel lockdown mode, V(none), V(integrity) or V(confidentiality), or V(unknown)
      when securityfs is not mounted and the command line does not say.
  returned: always
  type: str
usable:
  description:
    - Whether the tracing files are there and readable. V(false) under lockdown
      C(confidentiality). V(null) in check mode when nothing is mounted yet.
  returned: always
  type: bool
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample:
    - "unmount /sys/kernel/debug: debugfs=unmounted"
    - "remount /sys/kernel/tracing (gid=1001,mode=750): gid 0 -> 1001, mode 0700 -> 0750"
    - "comment out debugfs /sys/kernel/debug debugfs defaults 0 0 in /etc/fstab"
    - "mask sys-kernel-debug.mount (/etc/systemd/system/sys-kernel-debug.mount -> /dev/null)"
fstab:
  description: The O(fstab) entry for O(path) after the task, when O(persistent=true).
  returned: when O(persistent=true)
  type: str
  sample: tracefs /sys/kernel/tracing tracefs nosuid,nodev,noexec,gid=1001,mode=0750 0 0
users:
  description:
    - The processes that hold a debugfs O(debugfs=unmounted) would unmount (found in
      C(/proc/PID/cwd), C(root), C(exe), C(fd/*) and C(maps)), on the failed result.
  returned: when the task fails because debugfs is in use
  type: list
  elements: dict
  contains:
    pid:
      description: Process id.
      type: int
    command:
      description: Its command name (C(/proc/PID/comm)).
      type: str
    uses:
      description: How it holds debugfs, such as C(fd 3 /sys/kernel/debug/tracing/trace_pipe) or C(cwd /sys/kernel/debug).
      type: list
      elements: str
backup_file:
  description: The backup of O(fstab), when one was made.
  returned: when O(backup=true) and O(fstab) changed
  type: str
reboot_required:
  description:
    - V(true) while the next boot's kernel command line says something about debugfs that the
      running kernel does not (O(debugfs=disallowed) added C(debugfs=off), or O(debugfs=unmounted)
      took it off again, and the host has not rebooted since). It stays V(true) on later runs
      until the reboot, even when they change nothing.
  returned: always
  type: bool
  sample: true
msg:
  description: What a reboot will change, when RV(reboot_required) is V(true).
  returned: when RV(reboot_required) is V(true)
  type: str
  sample: >-
    debugfs=off is on the next boot's command line (/etc/kernel/cmdline): the kernel refuses
    debugfs from the next boot on; until the host reboots, debugfs is only unmounted
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _mountpolicy
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import LEDGER_PATH_ARG

ARGUMENT_SPEC = dict(
    state=dict(type="str", default="mounted", choices=["mounted", "unmounted"]),
    path=dict(type="path", default="/sys/kernel/tracing"),
    options=dict(type="list", elements="str", default=["nosuid", "nodev", "noexec"]),
    gid=dict(type="raw"),
    mode=dict(type="raw"),
    persistent=dict(type="bool", default=False),
    fstab=dict(type="path", default="/etc/fstab"),
    backup=dict(type="bool", default=False),
    legacy_debugfs=dict(type="bool", default=False),
    debugfs=dict(type="str", default="unmanaged", choices=["unmanaged", "unmounted", "disallowed"]),
    debugfs_force=dict(type="bool", default=False),
    session=dict(type="str", default="default"),
    ledger_path=LEDGER_PATH_ARG,
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    # RV(path) is the tracing directory; AnsibleModule would otherwise add that
    # directory's owner/mode/size to the result, which reads like the mount policy.
    module.add_path_info = lambda kwargs: kwargs
    try:
        request = _mountpolicy.Request(module.params)
        result, warnings = _mountpolicy.ensure(request, module.check_mode, module._diff, module.backup_local)
    except TracefleetError as exc:
        module.fail_json(msg=str(exc), **getattr(exc, "details", {}))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
