# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel policy facts: command line, build configuration, lockdown, debugfs policy.

Everything here reads files and never mounts anything (not even securityfs).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import gzip
import os
import platform
import shlex

CMDLINE = "/proc/cmdline"
CONFIG_GZ = "/proc/config.gz"
LOCKDOWN = "/sys/kernel/security/lockdown"

LOCKDOWN_LEVELS = ("none", "integrity", "confidentiality")

# The three Kconfig choices for debugfs (fs/debugfs/Kconfig), and what
# the `debugfs=` boot parameter values mean.
_DEBUGFS_KCONFIG = {
    "CONFIG_DEBUG_FS_ALLOW_ALL": "on",
    "CONFIG_DEBUG_FS_DISALLOW_MOUNT": "no-mount",
    "CONFIG_DEBUG_FS_ALLOW_NONE": "off",
}
DEBUGFS_MODES = ("on", "no-mount", "off")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def parse_cmdline(text: str) -> dict[str, str | None]:
    """Kernel parameters as a dict; a bare word maps to None; the last one wins.

    Everything after a bare `--` belongs to init, not the kernel, and is dropped.
    """
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    params: dict[str, str | None] = {}
    for word in words:
        if word == "--":
            break
        if "=" in word:
            key, value = word.split("=", 1)
            params[key] = value
        else:
            params[word] = None
    return params


def read_cmdline(path: str = CMDLINE) -> dict[str, str | None]:
    text = _read(path)
    return parse_cmdline(text) if text is not None else {}


def parse_kconfig(text: str) -> dict[str, str]:
    """`CONFIG_X=value` lines; `# CONFIG_X is not set` maps to 'n'."""
    config = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            config[key] = value.strip('"')
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            config[line[2 : -len(" is not set")]] = "n"
    return config


def read_kconfig(
    release: str | None = None, boot_dir: str = "/boot", config_gz: str = CONFIG_GZ
) -> tuple[dict[str, str] | None, str | None]:
    """The running kernel's build configuration and where it came from, if readable."""
    try:
        with gzip.open(config_gz, "rt", encoding="utf-8", errors="replace") as handle:
            return parse_kconfig(handle.read()), config_gz
    except OSError:
        pass
    path = os.path.join(boot_dir, "config-" + (release or platform.release()))
    text = _read(path)
    if text is not None:
        return parse_kconfig(text), path
    return None, None


def parse_lockdown(text: str) -> str:
    """`none [integrity] confidentiality` -> 'integrity'."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return "unknown"


def lockdown_mode(cmdline: dict[str, str | None], path: str = LOCKDOWN) -> tuple[str, str]:
    """(mode, source). The securityfs file is read only if securityfs is already
    mounted; otherwise the `lockdown=` boot parameter is the evidence; else 'unknown'
    (secure boot can raise lockdown without any parameter)."""
    text = _read(path)
    if text is not None:
        return parse_lockdown(text), "securityfs"
    value = cmdline.get("lockdown")
    if value in LOCKDOWN_LEVELS:
        return value, "cmdline"
    return "unknown", "none"


def debugfs_policy(cmdline: dict[str, str | None], kconfig: dict[str, str] | None, registered: bool) -> dict:
    """Whether debugfs may be mounted, and why.

    `debugfs=` on the command line overrides the Kconfig default; `off` also
    unregisters the filesystem, so /proc/filesystems is evidence too.
    """
    mode = None
    source = None
    value = cmdline.get("debugfs")
    if value in DEBUGFS_MODES:
        mode, source = value, "cmdline"
    elif kconfig is not None:
        if kconfig.get("CONFIG_DEBUG_FS", "n") == "n":
            mode, source = "off", "kconfig"
        else:
            for option, option_mode in _DEBUGFS_KCONFIG.items():
                if kconfig.get(option) == "y":
                    mode, source = option_mode, "kconfig"
                    break
    if not registered:
        # Not in /proc/filesystems: nothing can mount it, whatever else says.
        return {"mode": mode or "off", "mount_allowed": False, "source": source or "filesystems"}
    if mode is None:
        # Registered and no policy found: mounting is allowed (the kernel default).
        return {"mode": "on", "mount_allowed": True, "source": "default"}
    return {"mode": mode, "mount_allowed": mode == "on", "source": source}
