#!/usr/bin/python
# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: tracefs_info
short_description: Report whether tracefs and debugfs are registered and mounted, and where
version_added: 0.1.0
description:
  - Reads the kernel's own mount table (C(/proc/self/mountinfo)) and filesystem registry
    (C(/proc/filesystems)) and reports where tracefs is mounted and with which options,
    and the same for debugfs.
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
options: {}
notes:
  - Needs Python 3.8 or newer on the target. Reading C(/proc) needs no privileges.
seealso:
  - name: The tracefs filesystem
    description: The kernel's ftrace documentation, section on tracefs.
    link: https://docs.kernel.org/trace/ftrace.html
"""

EXAMPLES = r"""
- name: Find out whether tracefs is mounted
  tracefleet.ftrace.tracefs_info:
  register: tracing

- name: Show where tracefs is
  ansible.builtin.debug:
    msg: "tracefs at {{ tracing.tracefs.path | default('nowhere', true) }}"

- name: Fail when debugfs is mounted anywhere
  ansible.builtin.assert:
    that: not tracing.debugfs.mounted
    fail_msg: "debugfs is mounted at {{ tracing.debugfs.mountpoints | map(attribute='mount_point') | join(', ') }}"
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
debugfs:
  description: debugfs as the kernel reports it.
  returned: always
  type: dict
  contains:
    registered:
      description: Whether the kernel knows C(debugfs); false when booted with C(debugfs=off).
      type: bool
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
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import (
    DEBUGFS_MOUNT_POINT,
    debugfs_state,
    tracefs_state,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mounts import (
    MountinfoError,
    read_filesystems,
    read_mountinfo,
)


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    try:
        mounts = read_mountinfo()
        filesystems = read_filesystems()
    except (OSError, MountinfoError) as exc:
        module.fail_json(msg="cannot read the kernel's mount table: %s" % exc)
    module.exit_json(
        changed=False,
        kernel_release=platform.release(),
        tracefs=tracefs_state(mounts, filesystems),
        debugfs=debugfs_state(mounts, filesystems, os.path.isdir(DEBUGFS_MOUNT_POINT)),
    )


if __name__ == "__main__":
    main()
