# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tracefs module's work, from its parameters to its result.

`Request` validates the parameters; `ensure` reads the host, plans the mount
(`_mountplan`), works out the fstab line (`_fstab`), records a mount in the ledger
before making it, applies the plan, writes the fstab, and reads the host again for
the result. With `debugfs: unmounted` it also refuses a debugfs that processes hold
(naming them), unmounts debugfs, comments out the fstab's debugfs lines and masks
systemd's unit (`_debugfs_boot`); `debugfs: disallowed` adds `debugfs=off` to the next
boot's command line. None of that is recorded for teardown to undo.

The ledger's `mount` entry kind belongs here too: recorded by `record_mounts`,
dropped by `forget_unmounts` when the module unmounts it itself, and undone for
teardown by `undo_mount` (described by `describe_mount`).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _debugfs_boot, _fstab, _mount_syscalls
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import control_character
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerError, LedgerKind
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import Host, read_host, usable
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import (
    MOUNTINFO,
    describe_users,
    read_mountinfo,
    users_of,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountplan import (
    Facts,
    Plan,
    Policy,
    PolicyError,
    apply_plan,
    observe,
    plan,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._validation import parse_gid, parse_octal_mode


class MountPolicyError(TracefleetError):
    """The policy could not be applied; `details` are extra keys of the failed result."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.details = details


# Linux's PATH_MAX (with its NUL) and NAME_MAX, in bytes.
PATH_MAX = 4096
NAME_MAX = 255


def canonical_mount_point(path: str, option: str = "path") -> str:
    """The mount point `path` names, as the kernel will show it in mountinfo: absolute,
    symlinks resolved (realpath; the part that does not exist yet normalised), so a
    path through a symlink is found mounted on the next run and by teardown. Refuses
    relative paths, `..` (which means two things once symlinks are involved), control
    characters, over-long names and a symlink to nothing."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise MountPolicyError("%s=%r is not an absolute path" % (option, path))
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        raise MountPolicyError("%s=%r contains a control character" % (option, path))
    if ".." in path.split("/"):
        raise MountPolicyError("%s=%r contains '..'; give the mount point itself" % (option, path))
    try:
        encoded = os.fsencode(path)
    except UnicodeError:
        raise MountPolicyError("%s=%r cannot be encoded as a file name" % (option, path)) from None
    if len(encoded) >= PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise MountPolicyError("%s=%r is longer than the kernel takes" % (option, path))
    resolved = os.path.realpath(path)
    if os.path.islink(path) and not os.path.exists(resolved):
        raise MountPolicyError("%s=%r is a symlink to %s, which does not exist" % (option, path, resolved))
    return resolved


class Request:
    """The tracefs module's parameters, validated: the mount policy and what goes with it."""

    def __init__(self, params: dict) -> None:
        # The session names the mount's ledger entry, which teardown finds by it.
        session_problem = control_character(params["session"] or "")
        if session_problem:
            raise MountPolicyError("session=%r: %s; nothing was changed" % (params["session"], session_problem))
        path = canonical_mount_point(params["path"])
        try:
            options = _mount_syscalls.split_options(params["options"])
        except _mount_syscalls.OptionError as exc:
            raise MountPolicyError("options=%r: %s" % (params["options"], exc)) from None
        gid = parse_gid(params["gid"])
        mode = parse_octal_mode(params["mode"])
        self.policy = Policy(
            params["state"],
            path,
            options,
            gid,
            mode,
            params["legacy_debugfs"],
            debugfs=params["debugfs"],
            debugfs_force=params["debugfs_force"],
        )
        self.persistent: bool = params["persistent"]
        # A symlinked fstab keeps its link: its target is the file edited.
        self.fstab: str = params["fstab"]
        self.fstab_file: str = os.path.realpath(params["fstab"])
        self.backup: bool = params["backup"]
        self.session: str = params["session"]
        self.ledger_path: str = params["ledger_path"]


class FstabChange:
    """The edit of the fstab the request asks for, worked out before anything is
    applied (the file is read, not yet written): the policy's own line with
    O(persistent), the debugfs lines commented out with O(debugfs=unmounted) or V(disallowed).
    `refresh` works it out again from the file as it is under the lock, just before
    writing."""

    def __init__(self, request: Request, policy: Policy, result: Plan) -> None:
        self.manage_entry = request.persistent
        self.comment_debugfs = policy.unmounts_debugfs
        self.wanted = None
        if self.manage_entry and policy.state == "mounted":
            self.wanted = _fstab.policy_entry(
                result.fstype, result.mount_point, policy.options, policy.gid, policy.mode
            )
        self.path = request.fstab
        self.file = request.fstab_file
        self.fstype = result.fstype
        self.mount_point = result.mount_point
        self.line = self.wanted.render() if self.wanted is not None else None
        self.refresh()

    def refresh(self) -> None:
        text = _fstab.read(self.file)
        self.text, self.entry_changed = text, False
        self.commented: list[str] = []
        try:
            if self.manage_entry:
                self.text, self.entry_changed = _fstab.update(text, self.mount_point, self.wanted, self.fstype)
        except _fstab.FstabError as exc:
            raise _fstab.FstabError("fstab=%s: %s" % (self.path, exc)) from None
        if self.comment_debugfs:
            self.text, self.commented = _fstab.comment_out(self.text, "debugfs", _fstab.DEBUGFS_COMMENT)
        self.changed = self.entry_changed or bool(self.commented)
        old = _fstab.entries_for(text, self.mount_point, self.fstype) if self.manage_entry else []
        self.before = _fstab.printable(old[0].render()) if old else None

    def describe(self) -> list[str]:
        words = []
        if self.entry_changed:
            if self.line:
                words.append("write %s in %s" % (self.line, self.path))
            else:
                words.append("remove the entry for %s in %s" % (self.mount_point, self.path))
        for line in self.commented:
            words.append("comment out %s in %s" % (_fstab.printable(line), self.path))
        return words


def facts_of(host: Host) -> Facts:
    return Facts(host.mounts, host.filesystems, host.debugfs()["mount_allowed"], host.debugfs_reason())


def _plan(policy: Policy, host: Host) -> Plan:
    try:
        return plan(policy, facts_of(host))
    except PolicyError as exc:
        raise MountPolicyError(
            "path=%s: %s" % (policy.path, exc), lockdown=host.lockdown, debugfs=host.debugfs()
        ) from None
    except OSError as exc:
        raise MountPolicyError("path=%s: cannot inspect the mount point: %s" % (policy.path, exc)) from None


def _needs_ledger(result: Plan) -> bool:
    """Mounts are recorded and unmounts forgotten; a remount leaves the ledger alone."""
    return any(action.kind in ("mount", "umount") for action in result.actions)


def _apply(request: Request, result: Plan, planned: list[str], host: Host) -> list[str]:
    """Carry out the plan with its mounts in the ledger; return what was done.

    A mount is recorded before it is made: when the ledger cannot be written
    (unwritable or read-only directory, a lock file that cannot be made) the task fails
    before touching anything. When the kernel then refuses, the entry just recorded
    is taken back, so a refused mount leaves the ledger as it was."""
    if not _needs_ledger(result):
        return _apply_plan(request, result, planned, host)
    with contextlib.ExitStack() as stack:
        try:
            ledger = Ledger(request.ledger_path).__enter__()
            stack.callback(_release, ledger)
            checkpoint = ledger.checkpoint()
            record_mounts(ledger, request.session, result)
        except (LedgerError, OSError) as exc:
            raise _ledger_error(request, exc, "nothing was changed") from None
        try:
            done = _apply_plan(request, result, planned, host)
        except MountPolicyError:
            with contextlib.suppress(LedgerError, OSError):  # never hides the kernel's refusal
                ledger.restore(checkpoint)
            raise
        try:
            forget_unmounts(ledger, result)
        except (LedgerError, OSError) as exc:
            raise _ledger_error(request, exc, "done: %s" % "; ".join(done)) from None
    return done


def _release(ledger: Ledger) -> None:
    """Unlock the ledger; a failure to unlock must not hide the task's own error."""
    with contextlib.suppress(OSError):
        ledger.__exit__(None, None, None)


def _ledger_error(request: Request, exc: Exception, outcome: str) -> MountPolicyError:
    return MountPolicyError(
        "ledger_path=%s: cannot record the mount policy's changes in the ledger: %s; %s"
        % (request.ledger_path, exc, outcome)
    )


def _apply_plan(request: Request, result: Plan, planned: list[str], host: Host) -> list[str]:
    try:
        return apply_plan(result)
    except _mount_syscalls.MountError as exc:
        if exc.errno == errno.EBUSY and any(_under(exc.target, point) for point in result.debugfs_mount_points):
            raise _busy_debugfs(exc, planned, host, request.policy.debugfs) from None
        raise MountPolicyError("path=%s: %s" % (request.policy.path, exc), actions=planned) from None
    except OSError as exc:  # mkdir
        raise MountPolicyError("path=%s: %s" % (request.policy.path, exc), actions=planned) from None


def _under(path: str, mount_point: str) -> bool:
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def _busy_debugfs(exc: _mount_syscalls.MountError, planned: list[str], host: Host, option: str) -> MountPolicyError:
    """A debugfs unmount the kernel found busy after all (a process that started
    meanwhile, a mount made inside it, a kernel user): say who, as far as /proc tells."""
    users = users_of(exc.target, host.path("/proc"))
    try:
        mounts = read_mountinfo(host.path(MOUNTINFO))
    except OSError:
        mounts = []
    inside = [entry.mount_point for entry in mounts if _under(entry.mount_point, exc.target)]
    inside = [point for point in inside if point != exc.target]
    if users:
        who = "in use by %s" % describe_users(users)
    elif inside:
        who = "mounts inside it: %s" % ", ".join(inside)
    else:
        who = "no process on this host holds it (a kernel user, or a process in another mount namespace)"
    return MountPolicyError(
        "debugfs=%s: %s; %s. Set debugfs_force=true to detach it lazily" % (option, exc, who),
        actions=planned,
        users=users,
    )


def _refuse_busy_debugfs(request: Request, host: Host, result: Plan) -> list[str]:
    """Before any change: the processes that hold a debugfs the plan unmounts. Without
    O(debugfs_force) they make the task fail, by pid and command; with it, they are
    warned about (the lazy unmount leaves debugfs alive for them)."""
    warnings = []
    for mount_point in result.debugfs_mount_points:
        users = users_of(mount_point, host.path("/proc"))
        if not users:
            continue
        if not request.policy.debugfs_force:
            raise MountPolicyError(
                "debugfs=%s: debugfs at %s is in use by %s; nothing was changed. Stop them, "
                "or set debugfs_force=true to detach it lazily (it goes from the mount table now, "
                "and the kernel frees it when they let go)"
                % (request.policy.debugfs, mount_point, describe_users(users)),
                users=users,
            )
        warnings.append(
            "debugfs at %s is in use by %s: it is detached lazily, and stays reachable for them "
            "until they let go" % (mount_point, describe_users(users))
        )
    return warnings


def _debugfs_view(host: Host, fstab_lines: list[str], unit: str | None) -> dict:
    """The debugfs side of the diff: where it is mounted, the fstab's active debugfs
    lines and the systemd unit's state."""
    return {
        "mounted": [entry.mount_point for entry in host.mounts if entry.fstype == "debugfs"],
        "fstab": [_fstab.printable(line) for line in fstab_lines],
        "systemd_unit": unit,
    }


def ensure(request: Request, check_mode: bool, diff: bool, backup: Callable[[str], str]) -> tuple[dict, list[str]]:
    """Apply the request (predict it in check mode); return the module's result and
    its warnings. `backup(path)` copies the fstab aside and returns the copy's name.

    Everything that can refuse does so before the first change: the plan (path,
    mount point, debugfs policy), processes holding a debugfs to unmount, the systemd
    unit to mask, the next boot's command line and its record (`debugfs=off`), the
    fstab (readable regular file, no other filesystem's entry for the mount point, a
    writable directory), then the ledger. The boot-time edits (the mask, the command
    line) come last. The fstab is edited under
    its lock, read again under it, so a concurrent editor's change is neither lost nor
    duplicated."""
    host = read_host()
    result = _plan(request.policy, host)
    managing_debugfs = request.policy.unmounts_debugfs
    warnings = _refuse_busy_debugfs(request, host, result) if managing_debugfs else []
    mask = _debugfs_boot.Mask(host.root, request.policy.debugfs) if managing_debugfs else None
    # debugfs=off on the next boot's command line: put there by `disallowed`; taken off
    # by `unmounted` where tracefleet put it (read only where it has a record of that).
    parameter = (
        _debugfs_boot.BootParameter(host.root, host.release, host.debugfs_policy["mode"], request.policy.debugfs)
        if managing_debugfs
        else None
    )
    fstab = FstabChange(request, request.policy, result) if request.persistent or managing_debugfs else None
    # The edits that are needed, None when not.
    fstab_edit = fstab if fstab is not None and fstab.changed else None
    boot_edits = [edit for edit in (mask, parameter) if edit is not None and edit.changed]
    # The diff shows the next boot's debugfs= word where a command line was read.
    next_boot = parameter if parameter is not None and parameter.path is not None else None
    pending = parameter if parameter is not None and parameter.reboot_required else None
    extra: dict[str, object] = {"msg": pending.message} if pending is not None else {}
    if managing_debugfs:
        result.before["debugfs"] = _debugfs_view(host, fstab.commented if fstab else [], mask.before if mask else None)
        result.after["debugfs"] = dict(result.after["debugfs"], fstab=[], systemd_unit=mask.after if mask else None)
        if next_boot is not None:
            result.before["debugfs"]["next_boot"] = next_boot.before
            result.after["debugfs"]["next_boot"] = next_boot.next_boot
    changed = result.changed or fstab_edit is not None or bool(boot_edits)
    if changed and not check_mode:
        for edit in boot_edits:
            edit.check_writable()
        if fstab_edit is not None:
            _fstab.check_writable(request.fstab_file)
            with _fstab.locked(request.fstab_file):
                fstab_edit.refresh()
                done = _apply(request, result, [action.describe() for action in result.actions], host)
                if fstab_edit.changed:
                    if request.backup and os.path.exists(request.fstab_file):
                        extra["backup_file"] = backup(request.fstab_file)
                    try:
                        _fstab.write(request.fstab_file, fstab_edit.text)
                    except _fstab.FstabError as exc:
                        if not done:
                            raise
                        # The mount stands (and is in the ledger for teardown): say so.
                        raise MountPolicyError("%s; done: %s" % (exc, "; ".join(done)), actions=done) from None
                    done.extend(fstab_edit.describe())
        else:
            done = _apply(request, result, [action.describe() for action in result.actions], host)
        for edit in boot_edits:
            try:
                edit.apply()
            except _debugfs_boot.DebugfsBootError as exc:
                raise MountPolicyError("%s; done: %s" % (exc, "; ".join(done) or "nothing"), actions=done) from None
            done.extend(edit.describe())
    else:
        done = [action.describe() for action in result.actions]
        if fstab_edit is not None:
            done.extend(fstab_edit.describe())
        for edit in boot_edits:
            done.extend(edit.describe())
    if request.persistent and fstab is not None:
        result.before["fstab"] = fstab.before
        result.after["fstab"] = fstab.line
    after_host = host if check_mode else read_host()
    after, report_warnings = _report(after_host, result, check_mode)
    warnings += report_warnings
    output = dict(changed=changed, **after, actions=done, reboot_required=pending is not None, **extra)
    if request.persistent and fstab is not None:
        output["fstab"] = fstab.line
        if not check_mode:
            result.after["fstab"] = fstab.line
    if managing_debugfs and not check_mode:
        left = _fstab.entries_of_type(_fstab.read(request.fstab_file), "debugfs")
        result.after["debugfs"] = _debugfs_view(
            after_host, [entry.render() for entry in left], _debugfs_boot.unit_state(host.root)
        )
        if next_boot is not None:
            result.after["debugfs"]["next_boot"] = next_boot.next_boot
    if diff:
        output["diff"] = {"before": result.before, "after": result.after}
    return output, warnings


def _report(after_host: Host, result: Plan, check_mode: bool) -> tuple[dict, list[str]]:
    """The managed mount as the host shows it after the task (predicted in check
    mode), and the lockdown warning when its tracing files are missing. Outside check
    mode the diff's `after` is replaced by what the kernel shows."""
    mount = None
    for entry in after_host.mounts:
        if entry.mount_point == result.mount_point and entry.fstype == result.fstype:
            mount = entry.as_dict()
    mounted = bool(mount) if not check_mode else result.after["mounted"]
    if check_mode and not mount:
        is_usable = None
    else:
        is_usable = usable(result.tracing_path) if mounted else False
    warnings = []
    lockdown = after_host.lockdown
    if (
        mounted
        and is_usable is False
        and (lockdown == "confidentiality" or (lockdown == "unknown" and mount is not None))
    ):
        warnings.append(
            "%s is mounted but its tracing files are missing: kernel lockdown (%s) "
            "restricts tracefs, so tracing is not usable on this host" % (result.tracing_path, lockdown)
        )
    if not check_mode:
        debugfs = result.after.get("debugfs")
        result.after = observe(
            Facts(after_host.mounts, after_host.filesystems, False, ""), result.fstype, result.mount_point
        )
        if debugfs is not None:
            result.after["debugfs"] = debugfs
    output = dict(
        path=result.tracing_path,
        mounted=mounted,
        via=result.via,
        mount=mount,
        debugfs=after_host.debugfs(),
        lockdown=lockdown,
        usable=is_usable,
    )
    return output, warnings


# -- the ledger's `mount` entries -------------------------------------------------------


def record_mounts(ledger: Ledger, session: str, result: Plan) -> None:
    """A mount is recorded before it is made, so teardown finds it even if the play dies."""
    for action in result.actions:
        if action.kind == "mount":
            ledger.record(session, kind="mount", path=action.target, fstype=action.fstype)


def _recorded_at(entry: dict) -> str:
    """Where a ledger `mount` entry's mount is, canonically. Entries written before
    paths were canonicalised may name it through a symlink or with a trailing `/`."""
    return os.path.realpath(entry["path"])


def forget_unmounts(ledger: Ledger, result: Plan) -> None:
    """A mount this task unmounted needs no teardown any more."""
    for action in result.actions:
        if action.kind == "umount":
            for entry in list(ledger.entries):
                if (
                    entry.get("kind") == "mount"
                    and entry.get("fstype") == action.fstype
                    and _recorded_at(entry) == action.target
                ):
                    ledger.forget(entry)


def describe_mount(entry: dict) -> str:
    """What undoing a ledger `mount` entry does, in words."""
    return "unmount %s (%s)" % (entry["path"], entry["fstype"])


def undo_mount(entry: dict, mountinfo: str = MOUNTINFO) -> str | None:
    """Undo a ledger `mount` entry: unmount it if that mount is still there. Returns a
    note when there was nothing left to undo; raises MountError (an OSError) when the
    kernel refuses."""
    path = _recorded_at(entry)
    mounted = any(mount.mount_point == path and mount.fstype == entry["fstype"] for mount in read_mountinfo(mountinfo))
    if not mounted:
        return "%s was no longer mounted" % entry["path"]
    _mount_syscalls.umount(path)
    return None


# The ledger kind this code records (`mount`), undone by teardown through this entry.
LEDGER_KINDS = {
    "mount": LedgerKind(describe_mount, lambda _top, _ledger, entry: undo_mount(entry), False),
}
