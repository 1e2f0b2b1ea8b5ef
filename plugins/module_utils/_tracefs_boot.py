# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the tracefs mount comes from at boot, and whether it matches the live one.

A host can be compliant now and not after the next boot: tracefs remounted by hand (or by
the tracefs module without `persistent`) with options that nothing on disk repeats. This
reads the configuration the next boot will use - never the running systemd, never a
command - and compares it with the mount table:

- with systemd (PID 1, or shipping the unit), the mount unit named after the mount point
  (`sys-kernel-tracing.mount`), found the way systemd.unit(5) orders its load path: a
  unit of the admin's own in /etc/systemd/system (or a mask there) comes first; then
  the unit systemd-fstab-generator makes from an /etc/fstab line (in /run/systemd/generator,
  which comes before the vendor directories, so an fstab line overrides systemd's own
  unit but not /etc/systemd/system); then the vendor unit (/usr/local/lib, /lib,
  /usr/lib). Drop-ins (`<unit>.d/*.conf`, the dash-prefix and `mount.d` ones) apply on
  top of whichever won, merged by file name in lexical order, the higher directory's
  file winning a name. Runtime directories (/run/systemd/system, transient units) are
  left out: they do not survive a reboot;
- without systemd, the /etc/fstab line (mounted at boot unless `noauto`, by the
  `mount -a` of the host's init scripts).

`root` relocates /etc, /lib, /usr and /run, for tests on a fake tree.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import stat

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _fstab, _mount_syscalls
from ansible_collections.tracefleet.ftrace.plugins.module_utils._debugfs_boot import (
    FSTAB,
    MASK_TARGET,
    SYSTEMD_RUNTIME_DIR,
    UNIT_DIR,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import DEBUGFS_MOUNT_POINT, TRACEFS_MOUNT_POINT
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import MountEntry, visible_mounts
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountplan import flag_drift

# The persistent unit directories of systemd's system load path, highest first; the
# fstab generator's output ranks between the first and the others.
VENDOR_UNIT_DIRS = ("/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
UNIT_DIRS = (UNIT_DIR,) + VENDOR_UNIT_DIRS
# The [Mount] settings that decide what is mounted and how.
MOUNT_KEYS = ("What", "Type", "Options")
# No unit file or drop-in comes near this; a bigger one is the wrong file.
MAX_UNIT_SIZE = 1024 * 1024
# How many symlinks a unit path may go through before it is called a loop.
MAX_LINKS = 8
# systemd's boolean false (parse_boolean), for fstab= on the kernel command line.
FALSE_WORDS = ("0", "no", "n", "false", "f", "off")

# Where the boot-time mount comes from (RV(tracefs.boot.source)).
FSTAB_SOURCE = "fstab"
UNIT_SOURCE = "unit"
SYSTEMD_SOURCE = "systemd"
MASKED_SOURCE = "masked"
NO_SOURCE = "none"


class BootConfigError(TracefleetError):
    """A unit file or drop-in that cannot be read."""


def _at(root: str, absolute: str) -> str:
    return os.path.join(root, absolute.lstrip("/"))


def unit_name(mount_point: str) -> str:
    """systemd's name for the mount unit of `mount_point`, as `systemd-escape --path
    --suffix=mount` makes it: `/sys/kernel/tracing` is `sys-kernel-tracing.mount`,
    `/srv/my-trace` is `srv-my\\x2dtrace.mount`."""
    path = _fstab.canonical(mount_point).strip("/")
    if not path:
        return "-.mount"
    out = []
    for index, char in enumerate(path):
        if char == "/":
            out.append("-")
        elif char.isascii() and (char.isalnum() or char in ":_.") and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.extend("\\x%02x" % byte for byte in char.encode("utf-8", "surrogateescape"))
    return "".join(out) + ".mount"


def dropin_dirs(unit: str) -> list[str]:
    """The drop-in directory names of `unit`, most specific first: `<unit>.d`, one per
    dash prefix (`sys-kernel-.mount.d`, `sys-.mount.d`), then the unit type's `mount.d`."""
    base, _dot, kind = unit.rpartition(".")
    prefixes = [base[: index + 1] for index, char in enumerate(base) if char == "-" and index + 1 < len(base)]
    names = [unit] + ["%s.%s" % (prefix, kind) for prefix in reversed(prefixes)] + [kind]
    return [name + ".d" for name in names]


def parse_unit(text: str) -> dict[str, str]:
    """The [Mount] section's What=, Type= and Options= in a unit file or drop-in, read
    as systemd reads them: `#` and `;` start comments, a trailing backslash continues
    the line, the last assignment wins and an empty one resets the setting (to "")."""
    logical: list[str] = []
    pending: str | None = None
    for raw in text.split("\n"):
        line = raw.strip()
        if pending is not None and line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] if pending is None else pending + " " + line[:-1]
            continue
        if pending is not None:
            line, pending = pending + " " + line, None
        if line and not line.startswith(("#", ";")):
            logical.append(line)
    if pending is not None:
        logical.append(pending)
    settings: dict[str, str] = {}
    section = None
    for line in logical:
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, separator, value = line.partition("=")
        if section == "Mount" and separator and key.strip() in MOUNT_KEYS:
            settings[key.strip()] = value.strip()
    return settings


def _resolve(root: str, path: str) -> str | None:
    """`path` with its symlinks followed inside `root` (an absolute target is under
    `root`); None when it is a mask, a link to /dev/null at any step."""
    for _hop in range(MAX_LINKS):
        if not os.path.islink(path):
            return path
        target = os.readlink(path)
        if target == MASK_TARGET:
            return None
        path = _at(root, target) if target.startswith("/") else os.path.join(os.path.dirname(path), target)
    raise BootConfigError("%s: too many levels of symbolic links" % _shown(root, path))


def _is_mask(root: str, path: str) -> bool:
    """systemd takes a symlink to /dev/null or an empty file as a mask."""
    resolved = _resolve(root, path)
    if resolved is None:
        return True
    try:
        info = os.stat(resolved)
    except OSError:
        return False  # a dangling link: reading it says so
    return stat.S_ISREG(info.st_mode) and info.st_size == 0


def _read(root: str, path: str) -> str:
    """A unit file's or drop-in's text (through its symlinks). O_NONBLOCK: a FIFO put in
    its place must not hang the module. Raises BootConfigError."""
    shown = _shown(root, path)
    resolved = _resolve(root, path) or path
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BootConfigError("cannot read %s: %s" % (shown, exc.strerror)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BootConfigError("%s is not a regular file" % shown)
        data = os.read(fd, MAX_UNIT_SIZE + 1)
    except OSError as exc:
        raise BootConfigError("cannot read %s: %s" % (shown, exc.strerror)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_UNIT_SIZE:
        raise BootConfigError("%s is larger than any unit file (%d bytes)" % (shown, MAX_UNIT_SIZE))
    return data.decode("utf-8", "surrogateescape")


def systemd_manages(root: str, unit: str) -> bool:
    """systemd is PID 1 (sd_booted(3): /run/systemd/system exists), or has a unit of
    this name on disk."""
    return os.path.isdir(_at(root, SYSTEMD_RUNTIME_DIR)) or any(
        os.path.lexists(_at(root, directory + "/" + unit)) for directory in UNIT_DIRS
    )


def wanted_at_boot(root: str, unit: str) -> bool:
    """A `.wants/` or `.requires/` link of this name in a unit directory pulls the unit in
    at boot by name, whichever file defines it (systemd ships `sysinit.target.wants/
    sys-kernel-tracing.mount`; `systemctl enable` makes such links)."""
    for directory in UNIT_DIRS:
        base = _at(root, directory)
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if name.endswith((".wants", ".requires")) and os.path.lexists(os.path.join(base, name, unit)):
                return True
    return False


def dropins(root: str, unit: str) -> list[tuple[str, str]]:
    """The drop-ins that apply to `unit`, as (file, text) in the order systemd applies
    them: by file name; for one name the file of the higher directory (then the more
    specific drop-in directory) wins; masked ones (a link to /dev/null, an empty file)
    are dropped."""
    chosen: dict[str, str] = {}
    for directory in UNIT_DIRS:
        for name in dropin_dirs(unit):
            path = _at(root, "%s/%s" % (directory, name))
            try:
                files = sorted(os.listdir(path))
            except OSError:
                continue
            for file_name in files:
                if file_name.endswith(".conf") and file_name not in chosen:
                    chosen[file_name] = os.path.join(path, file_name)
    applied = []
    for file_name in sorted(chosen):
        path = chosen[file_name]
        if not _is_mask(root, path):
            applied.append((path, _read(root, path)))
    return applied


def _shown(root: str, path: str) -> str:
    """A path under `root` as the host names it."""
    relative = os.path.relpath(path, root)
    return "/" + relative if not relative.startswith("..") else path


class BootMount:
    """What the next boot mounts at one mount point: where it is defined (`source`,
    `file`), what it says (`settings`: What=, Type=, Options=, and `options_file`, the
    file whose Options= is in effect) and whether anything starts it (`mounted`)."""

    def __init__(self, root: str, mount_point: str, cmdline: dict) -> None:
        self.root = root
        self.mount_point = mount_point
        self.unit = unit_name(mount_point)
        self.systemd = systemd_manages(root, self.unit)
        self.source = NO_SOURCE
        self.file: str | None = None
        self.options_file: str | None = None
        self.settings: dict[str, str] = {}
        self.dropin_files: list[str] = []
        self.noauto = False
        fstab_entries = _fstab.entries_for(_fstab.read(_at(root, FSTAB)), mount_point)
        if self.systemd and str(cmdline.get("fstab", "1")).lower() in FALSE_WORDS:
            fstab_entries = []  # systemd-fstab-generator(8): fstab=no ignores the fstab
        self._find_definition(fstab_entries)
        if self.source in (FSTAB_SOURCE, UNIT_SOURCE, SYSTEMD_SOURCE) and self.systemd:
            for path, text in dropins(root, self.unit):
                changes = parse_unit(text)
                if changes:
                    self.dropin_files.append(_shown(root, path))
                if "Options" in changes:
                    self.options_file = _shown(root, path)
                self.settings.update(changes)
        self.mounted = self._started()

    def _find_definition(self, fstab_entries: list[_fstab.FstabEntry]) -> None:
        if self.systemd:
            admin = _at(self.root, "%s/%s" % (UNIT_DIR, self.unit))
            if self._take_unit(admin, UNIT_SOURCE):
                return
        if fstab_entries:
            entry = fstab_entries[0]  # systemd-fstab-generator keeps the first; mount -a mounts it first
            self.source, self.file = FSTAB_SOURCE, FSTAB
            self.options_file = FSTAB
            self.settings = {"What": entry.spec, "Type": entry.fstype, "Options": ",".join(entry.options)}
            self.noauto = "noauto" in entry.options
            return
        if self.systemd:
            for directory in VENDOR_UNIT_DIRS:
                if self._take_unit(_at(self.root, "%s/%s" % (directory, self.unit)), SYSTEMD_SOURCE):
                    return

    def _take_unit(self, path: str, source: str) -> bool:
        """Use the unit file at `path` when there is one (a mask ends the search too)."""
        if not os.path.lexists(path):
            return False
        self.file = _shown(self.root, path)
        if _is_mask(self.root, path):
            self.source = MASKED_SOURCE
            return True
        self.source = source
        self.settings = parse_unit(_read(self.root, path))
        if "Options" in self.settings:
            self.options_file = self.file
        return True

    def _started(self) -> bool:
        if self.source in (NO_SOURCE, MASKED_SOURCE):
            return False
        if self.source == FSTAB_SOURCE and not self.noauto:
            return True  # the generator's local-fs.target dependency, or mount -a
        return self.systemd and wanted_at_boot(self.root, self.unit)

    @property
    def options(self) -> list[str]:
        """Options= split at commas (a continued line leaves a space after one)."""
        return [option.strip(" ") for option in self.settings.get("Options", "").split(",") if option.strip(" ")]

    def effective(self) -> dict:
        """The mount the next boot makes, as the live mount is described: fstype,
        per-mount options (with the kernel's default relatime when no atime option is
        given, and rw unless ro), gid and mode (the tracefs defaults when not given;
        None when not a number)."""
        flags = _mount_syscalls.flags_in_effect(self.options)
        if not any(flag in _mount_syscalls.ATIME_OPTIONS for flag in flags):
            flags.append("relatime")
        shown = ["ro" if "ro" in flags else "rw"] + [flag for flag in flags if flag != "ro"]
        try:
            gid: int | None = _mount_syscalls.tracefs_gid(self.options)
        except ValueError:
            gid = None
        try:
            mode: str | None = "%04o" % _mount_syscalls.tracefs_mode(self.options)
        except ValueError:
            mode = None
        return {"fstype": self.settings.get("Type") or None, "options": shown, "gid": gid, "mode": mode}


def _flag_word(on: bool) -> str:
    return "on" if on else "off"


def differences(boot: dict, live: MountEntry | None) -> list[dict]:
    """Where the next boot's mount would differ from the live one, as
    {setting, live, boot} with the values in words: `mounted`, `fstype`, each
    per-mount flag that differs (as the tracefs module's own drift check compares
    them: ro, nosuid, nodev, noexec always, atime when the boot configuration gives one), `gid`, `mode`."""
    if live is None or not boot["mounted"]:
        if live is None and not boot["mounted"]:
            return []
        return [
            {
                "setting": "mounted",
                "live": "mounted" if live is not None else "not mounted",
                "boot": "mounted" if boot["mounted"] else "not mounted",
            }
        ]
    found = []
    if boot["fstype"] != live.fstype:
        found.append({"setting": "fstype", "live": live.fstype, "boot": boot["fstype"] or "(none given)"})
    for drift in flag_drift(boot["options"], live):
        found.append({"setting": drift[1:], "live": _flag_word(drift[0] == "-"), "boot": _flag_word(drift[0] == "+")})
    if live.fstype != "tracefs":
        return found
    try:
        live_gid = str(_mount_syscalls.tracefs_gid(live.super_options))
    except ValueError:
        live_gid = str(_mount_syscalls.option_value(live.super_options, "gid"))
    boot_gid = (
        str(boot["gid"])
        if boot["gid"] is not None
        else "gid=%s" % _mount_syscalls.option_value(boot["configured_options"], "gid")
    )
    if live_gid != boot_gid:
        found.append({"setting": "gid", "live": live_gid, "boot": boot_gid})
    try:
        live_mode = "%04o" % _mount_syscalls.tracefs_mode(live.super_options)
    except ValueError:
        live_mode = str(_mount_syscalls.option_value(live.super_options, "mode"))
    boot_mode = boot["mode"] or "mode=%s" % _mount_syscalls.option_value(boot["configured_options"], "mode")
    if live_mode != boot_mode:
        found.append({"setting": "mode", "live": live_mode, "boot": boot_mode})
    return found


def boot_mount_point(path: str | None) -> str:
    """The mount point whose boot configuration is reported: the tracefs mount
    tracefleet uses, unless that is the debugfs automount (debugfs's own boot decides
    it, see debugfs.boot) or there is none; then /sys/kernel/tracing."""
    if not path or path == DEBUGFS_MOUNT_POINT or path.startswith(DEBUGFS_MOUNT_POINT + "/"):
        return TRACEFS_MOUNT_POINT
    return path


def boot_facts(root: str, mounts: list[MountEntry], path: str | None, cmdline: dict) -> dict:
    """RV(tracefs.boot): the next boot's mount at `boot_mount_point(path)`, and whether
    it agrees with the live mount there. A configuration file that cannot be read gives
    `error` and leaves `agrees` null."""
    mount_point = boot_mount_point(path)
    result: dict = {
        "mount_point": mount_point,
        "unit": unit_name(mount_point),
        "systemd": None,
        "source": None,
        "file": None,
        "dropins": [],
        "options_file": None,
        "mounted": None,
        "fstype": None,
        "configured_options": None,
        "options": None,
        "gid": None,
        "mode": None,
        "agrees": None,
        "differences": [],
        "error": None,
    }
    try:
        boot = BootMount(root, mount_point, cmdline)
    except (_fstab.FstabError, BootConfigError) as exc:
        result["error"] = str(exc)
        return result
    result.update(
        systemd=boot.systemd,
        source=boot.source,
        file=boot.file,
        dropins=boot.dropin_files,
        options_file=boot.options_file,
        mounted=boot.mounted,
    )
    if boot.source not in (NO_SOURCE, MASKED_SOURCE):
        result.update(boot.effective(), configured_options=boot.options)
    live = next((entry for entry in visible_mounts(mounts) if entry.mount_point == mount_point), None)
    result["differences"] = differences(result, live)
    result["agrees"] = not result["differences"]
    return result
