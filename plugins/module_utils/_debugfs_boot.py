# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whether debugfs comes back at boot, and keeping it from coming back.

Two things mount debugfs at boot on a distribution host: systemd's
`sys-kernel-debug.mount` unit and a debugfs line in the fstab. The tracefs module's
`debugfs: unmounted` masks the unit (`Mask`: the symlink `systemctl mask` makes,
without running systemctl) and comments the fstab lines out (`_fstab.comment_out`);
tracefs_info reports both (`boot_facts`). `debugfs: disallowed` also puts
`debugfs=off` on the next boot's kernel command line (`BootParameter`, through the
boot loader configuration trace_persist edits, `_persist_apply`), so the kernel itself
refuses debugfs from the next boot on; the word tracefleet added is recorded in
/etc/tracefleet/debugfs.json, and `debugfs: unmounted` takes it off again. None of it
is recorded in the ledger: teardown leaves it in place.

`root` relocates /etc, /lib, /usr/lib and /run, for tests on a fake tree.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import json
import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _fstab
from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_apply as boot
from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_cmdline as cmdline
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_spec import PersistError, parse_release

UNIT = "sys-kernel-debug.mount"
# Where `systemctl mask` puts a mask: the admin's unit directory, ahead of the
# vendor's and of the fstab generator's units.
UNIT_DIR = "/etc/systemd/system"
VENDOR_UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system")
# Exists when systemd is PID 1 (sd_booted(3)).
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
MASK_TARGET = "/dev/null"
FSTAB = "/etc/fstab"

# debugfs=off (5.10+): the kernel registers no debugfs and creates none of its files;
# tracefs is unaffected. The kernel takes the last debugfs= word.
PARAMETER = "debugfs=off"
PARAMETER_SINCE = (5, 10)
STATE_FILE = "/etc/tracefleet/debugfs.json"
STATE_FORMAT = 1

# The unit's states as this module reports them.
MASKED = "masked"
UNMASKED = "unmasked"
# A unit file of the admin's own in UNIT_DIR (not a mask): not ours to replace.
OVERRIDDEN = "overridden"


class DebugfsBootError(TracefleetError):
    """debugfs cannot be kept from mounting at boot; nothing was changed."""


def _at(root: str, absolute: str) -> str:
    return os.path.join(root, absolute.lstrip("/"))


def unit_path(root: str = "/") -> str:
    return _at(root, UNIT_DIR + "/" + UNIT)


def unit_state(root: str = "/") -> str | None:
    """MASKED, UNMASKED, OVERRIDDEN, or None where no systemd would mount debugfs (not
    PID 1, and no vendor unit). systemd takes a symlink to /dev/null or an empty file
    as a mask."""
    path = unit_path(root)
    if os.path.islink(path):
        with contextlib.suppress(OSError):
            if os.readlink(path) == MASK_TARGET:
                return MASKED
        return OVERRIDDEN
    if os.path.lexists(path):
        with contextlib.suppress(OSError):
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                return MASKED
        return OVERRIDDEN
    systemd = os.path.isdir(_at(root, SYSTEMD_RUNTIME_DIR)) or any(
        os.path.lexists(_at(root, directory + "/" + UNIT)) for directory in VENDOR_UNIT_DIRS
    )
    return UNMASKED if systemd else None


def _nearest_directory(path: str) -> str:
    """`path`'s directory, or the nearest ancestor of it that exists (what a write
    would create the missing directories in)."""
    directory = os.path.dirname(path)
    while not os.path.lexists(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return directory


class Mask:
    """Masking `sys-kernel-debug.mount`, worked out before anything is applied.
    Refuses (DebugfsBootError) a unit file of the admin's own in UNIT_DIR."""

    def __init__(self, root: str = "/", option: str = "unmounted") -> None:
        self.root = root
        self.option = option
        self.path = unit_path(root)
        self.before = unit_state(root)
        if self.before == OVERRIDDEN:
            raise DebugfsBootError(
                "debugfs=%s: %s is a unit of its own, not a mask; not replacing it. "
                "Remove it, or mask the unit yourself (systemctl mask --force %s)" % (option, self.path, UNIT)
            )
        self.changed = self.before == UNMASKED
        self.after = MASKED if self.before is not None else None

    def describe(self) -> list[str]:
        return ["mask %s (%s -> %s)" % (UNIT, self.path, MASK_TARGET)]

    def check_writable(self) -> None:
        """Refuse before any change when the mask cannot be made."""
        directory = _nearest_directory(self.path)
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
            raise DebugfsBootError(
                "debugfs=%s: cannot mask %s: %s is not a writable directory" % (self.option, UNIT, directory)
            )

    def apply(self) -> None:
        """Make the symlink (under a temporary name first, then renamed: no half state)."""
        directory = os.path.dirname(self.path)
        temporary = os.path.join(directory, ".%s.tracefleet-%d" % (UNIT, os.getpid()))
        try:
            os.makedirs(directory, 0o755, exist_ok=True)
            os.symlink(MASK_TARGET, temporary)
            os.rename(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise DebugfsBootError("debugfs=%s: cannot mask %s: %s" % (self.option, UNIT, exc)) from None


def boot_facts(root: str = "/", policy: str | None = None) -> dict:
    """Whether debugfs is kept from mounting at boot: the unit's state, the fstab's
    active debugfs lines (mount points; those with `noauto` do not mount at boot), and
    `kept_unmounted`: true when the kernel disallows mounting (`policy` off or no-mount)
    or neither systemd nor the fstab would mount it; null when that cannot be told
    (an unreadable fstab, a unit of the admin's own)."""
    state = unit_state(root)
    try:
        entries: list[_fstab.FstabEntry] | None = _fstab.entries_of_type(_fstab.read(_at(root, FSTAB)), "debugfs")
    except _fstab.FstabError:
        entries = None
    if policy in ("off", "no-mount"):
        kept: bool | None = True
    elif state == UNMASKED or (entries is not None and any("noauto" not in e.options for e in entries)):
        kept = False
    elif state == OVERRIDDEN or entries is None:
        kept = None
    else:
        kept = True
    return {
        "systemd_unit": state,
        "fstab_mount_points": None if entries is None else [_fstab.printable(e.mount_point) for e in entries],
        "kept_unmounted": kept,
    }


def _debugfs_words(words: list[str]) -> list[str]:
    return [word for word in words if cmdline.key(word) == "debugfs"]


class BootParameter:
    """`debugfs=off` on the next boot's command line (`wanted`), or the word tracefleet
    added there taken off again (not `wanted`), worked out before anything is applied.

    The boot loader's file is the one trace_persist edits: /etc/kernel/cmdline, else
    GRUB_CMDLINE_LINUX in /etc/default/grub (then update-grub or grub-mkconfig runs).
    Refuses (DebugfsBootError), before any change: a kernel older than 5.10 (no
    `debugfs=`), a host with neither file, another `debugfs=` word that tracefleet did
    not add (the kernel would take whichever is last). Not wanted and never added: no
    file is read. `reboot_required`: the running kernel's debugfs mode (`running`, from
    /proc/cmdline or its build) is not what the next boot's command line says."""

    def __init__(self, root: str, release: str, running: str, option: str) -> None:
        self.host = boot.Host(root=root, release=release)
        self.option = option
        self.wanted = wanted = option == "disallowed"
        self.plan = boot.Plan(self.host)
        self.path: str | None = None
        # The next boot's debugfs= word before and after this task (None: there is none).
        self.before: str | None = None
        self.next_boot: str | None = None
        try:
            old = self._read_state()
            if wanted:
                self._check_kernel(release)
            if wanted or old is not None:
                self._work_out(old)
        except PersistError as exc:
            raise DebugfsBootError("debugfs=%s: %s; nothing was changed" % (option, exc)) from None
        self.changed = bool(self.plan.steps)
        running_off = running == "off"
        self.reboot_required = (self.path is not None) and (self.next_boot == PARAMETER) != running_off

    def _read_state(self) -> dict | None:
        text = self.host.read(STATE_FILE)
        if text is None:
            return None
        try:
            state = json.loads(text)
        except ValueError as exc:
            raise PersistError("%s is damaged (%s); fix or remove it" % (STATE_FILE, exc)) from None
        section = state.get("cmdline") if isinstance(state, dict) and state.get("format") == STATE_FORMAT else None
        known = {"kernel-cmdline": boot.KERNEL_CMDLINE, "grub": boot.GRUB_DEFAULT}
        if (
            not isinstance(section, dict)
            or known.get(str(section.get("bootloader"))) != section.get("file")
            or not isinstance(section.get("words"), list)
            or any(word != PARAMETER for word in section["words"])
            or not isinstance(section.get("replaced", []), list)
            or section.get("replaced")
            or not isinstance(section.get("update_command"), (list, type(None)))
            or not all(isinstance(word, str) for word in section.get("update_command") or [])
        ):
            raise PersistError("%s is not tracefleet's record of %s; fix or remove it" % (STATE_FILE, PARAMETER))
        return section

    @staticmethod
    def _check_kernel(release: str) -> None:
        version = parse_release(release)
        if version is not None and version < PARAMETER_SINCE:
            raise PersistError(
                "kernel %s has no debugfs= boot parameter (5.10 and newer have it), so the command line "
                "cannot disallow debugfs; use debugfs=unmounted" % release
            )

    def _target(self) -> tuple[str, str, list | None]:
        found = boot.found_bootloader(self.host)
        if found is None:
            raise PersistError(
                "the next boot's command line is in neither %s nor %s, so %s cannot be put on it"
                % (boot.KERNEL_CMDLINE, boot.GRUB_DEFAULT, PARAMETER)
            )
        bootloader, path = found
        if bootloader != "grub":
            return bootloader, path, None
        update = boot.grub_updater(self.host)
        if update is None:
            raise PersistError(
                "%s needs one of %s to write grub.cfg, and none is installed"
                % (path, ", ".join(command for command, _arguments in boot.GRUB_UPDATERS))
            )
        return bootloader, path, update

    def _work_out(self, old: dict | None) -> None:
        if self.wanted or old is None:
            target = self._target()
        else:
            target = (old["bootloader"], old["file"], old.get("update_command"))
        bootloader, path, _update = target
        text = self.host.read(path)
        owned = list((old or {}).get("words") or [])
        present = cmdline.CmdlineFile(bootloader, path, text).words() if text is not None else []
        foreign = [word for word in _debugfs_words(present) if word not in owned and word != PARAMETER]
        if self.wanted and foreign:
            raise PersistError(
                "%s already has %s, which tracefleet did not add (the kernel takes the last debugfs= word); "
                "remove it" % (path, ", ".join(repr(word) for word in foreign))
            )
        edits = boot.Plan(self.host)
        section = boot.plan_cmdline(edits, "debugfs", target, [PARAMETER] if self.wanted else [], [], old, False)
        state = None if section is None else json.dumps({"format": STATE_FORMAT, "cmdline": section}, indent=2) + "\n"
        # The record covers the word before it is written, and goes once it is gone.
        if state is not None:
            self.plan.file(STATE_FILE, state, mode=0o644, rollback=False)
        self.plan.steps.extend(edits.steps)
        self.plan.diffs.extend(edits.diffs)
        if state is None:
            self.plan.file(STATE_FILE, None, rollback=False)
        self.path = path
        words = _debugfs_words(present)
        self.before = words[-1] if words else None
        # The target's own diff (a record of another file adds that file's diff too).
        edited = [diff["after"] for diff in edits.diffs if diff["after_header"] == path]
        after = cmdline.CmdlineFile(bootloader, path, edited[0]).words() if edited else present
        words = _debugfs_words(after)
        self.next_boot = words[-1] if words else None

    def describe(self) -> list[str]:
        return self.plan.changes

    @property
    def message(self) -> str:
        """What the reboot will change (when `reboot_required`)."""
        if self.next_boot == PARAMETER:
            return (
                "%s is on the next boot's command line (%s): the kernel refuses debugfs from the next boot on; "
                "until the host reboots, debugfs is only unmounted" % (PARAMETER, self.path)
            )
        return "%s is no longer on the next boot's command line (%s): debugfs can be mounted again after a reboot" % (
            PARAMETER,
            self.path,
        )

    def check_writable(self) -> None:
        """Refuse before any change when the files cannot be written."""
        for absolute in [STATE_FILE] + [diff["after_header"] for diff in self.plan.diffs]:
            path = self.host.path(absolute)
            directory = _nearest_directory(path)
            if not os.access(directory, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
                raise DebugfsBootError("debugfs=%s: cannot write %s; nothing was changed" % (self.option, absolute))

    def apply(self) -> None:
        try:
            self.plan.apply()
        except PersistError as exc:
            raise DebugfsBootError("debugfs=%s: %s" % (self.option, exc)) from None
