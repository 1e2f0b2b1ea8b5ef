# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tracefs module's work, from its parameters to its result.

`Request` validates the parameters; `ensure` reads the host, plans the mount
(`_mountplan`), works out the fstab line (`_fstab`), records a mount in the ledger
before making it, applies the plan, writes the fstab, and reads the host again for
the result.

The ledger's `mount` entry kind belongs here too: recorded by `record_mounts`,
dropped by `forget_unmounts` when the module unmounts it itself, and undone for
teardown by `undo_mount` (described by `describe_mount`).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _fstab, _mount_syscalls
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerError, LedgerKind
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import Host, read_host, usable
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import MOUNTINFO, read_mountinfo
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
        path = canonical_mount_point(params["path"])
        try:
            options = _mount_syscalls.split_options(params["options"])
        except _mount_syscalls.OptionError as exc:
            raise MountPolicyError("options=%r: %s" % (params["options"], exc)) from None
        gid = parse_gid(params["gid"])
        mode = parse_octal_mode(params["mode"])
        self.policy = Policy(params["state"], path, options, gid, mode, params["legacy_debugfs"])
        self.persistent: bool = params["persistent"]
        # A symlinked fstab keeps its link: its target is the file edited.
        self.fstab: str = params["fstab"]
        self.fstab_file: str = os.path.realpath(params["fstab"])
        self.backup: bool = params["backup"]
        self.session: str = params["session"]
        self.ledger_path: str = params["ledger_path"]


class FstabChange:
    """The edit of the fstab a persistent policy asks for, worked out before anything
    is applied (the file is read, not yet written); `refresh` works it out again from
    the file as it is under the lock, just before writing."""

    def __init__(self, request: Request, policy: Policy, result: Plan) -> None:
        self.wanted = None
        if policy.state == "mounted":
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
        try:
            self.text, self.changed = _fstab.update(text, self.mount_point, self.wanted, self.fstype)
        except _fstab.FstabError as exc:
            raise _fstab.FstabError("fstab=%s: %s" % (self.path, exc)) from None
        old = _fstab.entries_for(text, self.mount_point, self.fstype)
        self.before = _fstab.printable(old[0].render()) if old else None

    def describe(self) -> str:
        if self.line:
            return "write %s in %s" % (self.line, self.path)
        return "remove the entry for %s in %s" % (self.mount_point, self.path)


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


def _apply(request: Request, result: Plan, planned: list[str]) -> list[str]:
    """Carry out the plan with its mounts in the ledger; return what was done.

    A mount is recorded before it is made: when the ledger cannot be written
    (unwritable or read-only directory, a lock file that cannot be made) the task fails
    before touching anything. When the kernel then refuses, the entry just recorded
    is taken back, so a refused mount leaves the ledger as it was."""
    if not _needs_ledger(result):
        return _apply_plan(request, result, planned)
    with contextlib.ExitStack() as stack:
        try:
            ledger = Ledger(request.ledger_path).__enter__()
            stack.callback(_release, ledger)
            checkpoint = ledger.checkpoint()
            record_mounts(ledger, request.session, result)
        except (LedgerError, OSError) as exc:
            raise _ledger_error(request, exc, "nothing was changed") from None
        try:
            done = _apply_plan(request, result, planned)
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


def _apply_plan(request: Request, result: Plan, planned: list[str]) -> list[str]:
    try:
        return apply_plan(result)
    except OSError as exc:  # MountError, or mkdir
        raise MountPolicyError("path=%s: %s" % (request.policy.path, exc), actions=planned) from None


def ensure(request: Request, check_mode: bool, diff: bool, backup: Callable[[str], str]) -> tuple[dict, list[str]]:
    """Apply the request (predict it in check mode); return the module's result and
    its warnings. `backup(path)` copies the fstab aside and returns the copy's name.

    Everything that can refuse does so before the first change: the plan (path,
    mount point, debugfs policy), the fstab (readable regular file, no other
    filesystem's entry for the mount point, a writable directory), then the ledger.
    The fstab is edited under its lock, read again under it, so a concurrent editor's
    change is neither lost nor duplicated."""
    host = read_host()
    result = _plan(request.policy, host)
    fstab = FstabChange(request, request.policy, result) if request.persistent else None
    changed = result.changed or (fstab is not None and fstab.changed)
    extra = {}
    if changed and not check_mode:
        if fstab is not None and fstab.changed:
            _fstab.check_writable(request.fstab_file)
            with _fstab.locked(request.fstab_file):
                fstab.refresh()
                done = _apply(request, result, [action.describe() for action in result.actions])
                if fstab.changed:
                    if request.backup and os.path.exists(request.fstab_file):
                        extra["backup_file"] = backup(request.fstab_file)
                    try:
                        _fstab.write(request.fstab_file, fstab.text)
                    except _fstab.FstabError as exc:
                        if not done:
                            raise
                        # The mount stands (and is in the ledger for teardown): say so.
                        raise MountPolicyError("%s; done: %s" % (exc, "; ".join(done)), actions=done) from None
                    done.append(fstab.describe())
        else:
            done = _apply(request, result, [action.describe() for action in result.actions])
    else:
        done = [action.describe() for action in result.actions]
        if fstab is not None and fstab.changed:
            done.append(fstab.describe())
    if fstab is not None:
        result.before["fstab"] = fstab.before
        result.after["fstab"] = fstab.line
    after, warnings = _report(host if check_mode else read_host(), result, check_mode)
    output = dict(changed=result.changed or bool(fstab is not None and fstab.changed), **after, actions=done, **extra)
    if fstab is not None:
        output["fstab"] = fstab.line
        if not check_mode:
            result.after["fstab"] = fstab.line
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
        result.after = observe(
            Facts(after_host.mounts, after_host.filesystems, False, ""), result.fstype, result.mount_point
        )
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
