# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tracefs mount policy: compare what is mounted with what is asked for, and
plan the smallest set of actions (mkdir, mount, remount, umount) that closes the gap.
With `debugfs: unmounted` the plan first unmounts every debugfs mount, the mounts
inside it (the tracing automount) before it.

Planning is pure: it takes the facts (mount table, registered filesystems, debugfs
policy, ownership of mount points) and returns a plan; `apply_plan` carries it out.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import errno
import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _mount_syscalls
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import (
    DEBUGFS_MOUNT_POINT,
    TRACEFS_MOUNT_POINT,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import (
    MountEntry,
    visible_mounts,
)

# The kernel's own mount points: empty directories it provides for these mounts
# (/sys/kernel/tracing when tracing is built in, /sys/kernel/debug for debugfs), and
# the legacy automount point inside debugfs, which must not be listed (listing it
# triggers the automount). Every other directory must be empty to be mounted on.
KERNEL_MOUNT_POINTS = (TRACEFS_MOUNT_POINT, DEBUGFS_MOUNT_POINT, DEBUGFS_MOUNT_POINT + "/tracing")


class PolicyError(TracefleetError):
    """The policy cannot be met on this host; nothing was changed."""


class Policy:
    """What the user asked for (already validated)."""

    def __init__(
        self,
        state: str,
        path: str,
        options: list[str],
        gid: int | None,
        mode: int | None,
        legacy_debugfs: bool,
        debugfs: str = "unmanaged",
        debugfs_force: bool = False,
    ) -> None:
        self.state = state
        self.path = path
        self.options = options
        self.gid = gid
        self.mode = mode
        self.legacy_debugfs = legacy_debugfs
        self.debugfs = debugfs
        self.debugfs_force = debugfs_force

    @property
    def unmounts_debugfs(self) -> bool:
        """debugfs unmounted now and kept from mounting at boot (`disallowed` adds the
        kernel's own refusal from the next boot on)."""
        return self.debugfs in ("unmounted", "disallowed")


class Facts:
    """What the host looks like, as read from the kernel (see `gather_facts`)."""

    def __init__(
        self,
        mounts: list[MountEntry],
        filesystems: dict[str, bool],
        debugfs_allowed: bool,
        debugfs_reason: str,
        is_dir=os.path.isdir,
        exists=os.path.lexists,
        owner=None,
        listdir=os.listdir,
    ) -> None:
        self.mounts = visible_mounts(mounts)
        self.all_mounts = list(mounts)  # with the mounts hidden under others, for debugfs's subtree
        self.filesystems = filesystems
        self.debugfs_allowed = debugfs_allowed
        self.debugfs_reason = debugfs_reason
        self.is_dir = is_dir
        self.exists = exists
        self.owner = owner or _owner
        self.listdir = listdir

    def mount_at(self, path: str) -> MountEntry | None:
        for entry in self.mounts:
            if entry.mount_point == path:
                return entry
        return None

    def mounts_of(self, fstype: str) -> list[MountEntry]:
        return [entry for entry in self.mounts if entry.fstype == fstype]


def _owner(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_gid, info.st_mode & 0o7777


class Action:
    """One step of a plan: mkdir, mount, remount or umount. An umount with
    `detach_if_busy` falls back to a lazy unmount (MNT_DETACH) when the mount is busy."""

    def __init__(
        self,
        kind: str,
        target: str,
        fstype: str = "",
        flags: int = 0,
        data: str = "",
        reason: str = "",
        detach_if_busy: bool = False,
    ) -> None:
        self.kind = kind
        self.target = target
        self.fstype = fstype
        self.flags = flags
        self.data = data
        self.reason = reason
        self.detach_if_busy = detach_if_busy
        self.detached = False

    def describe(self) -> str:
        words = {
            "mkdir": "create directory %s" % self.target,
            "mount": "mount %s on %s" % (self.fstype, self.target),
            "remount": "remount %s" % self.target,
            "umount": ("detach %s lazily, it is busy" if self.detached else "unmount %s") % self.target,
        }[self.kind]
        if self.data:
            words += " (%s)" % self.data
        return words + (": " + self.reason if self.reason else "")

    def __repr__(self) -> str:
        return "Action(%s)" % self.describe()


class Plan:
    def __init__(self, fstype: str, mount_point: str, tracing_path: str) -> None:
        self.fstype = fstype
        self.mount_point = mount_point
        self.tracing_path = tracing_path
        self.actions: list[Action] = []
        self.before: dict = {}
        self.after: dict = {}
        # With debugfs: unmounted, the debugfs mounts the plan unmounts (outermost ones).
        self.debugfs_mount_points: list[str] = []

    @property
    def via(self) -> str:
        return self.fstype

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _mode_text(mode: int | None) -> str | None:
    return None if mode is None else "%04o" % mode


def _flag_options(entry: MountEntry) -> list[str]:
    """The managed per-mount flags an existing mount has (from mountinfo)."""
    return [opt for opt in entry.options if opt in _mount_syscalls.FLAG_OPTIONS]


def _describe(entry: MountEntry | None, gid: int | None, mode: int | None) -> dict:
    if entry is None:
        return {"mounted": False}
    return {
        "mounted": True,
        "fstype": entry.fstype,
        "source": entry.source,
        "options": sorted(_flag_options(entry)),
        "gid": gid,
        "mode": _mode_text(mode),
    }


def observe(facts: Facts, fstype: str, mount_point: str) -> dict:
    """The managed mount as the kernel shows it (the diff's `after` outside check mode)."""
    entry = facts.mount_at(mount_point)
    if entry is None or entry.fstype != fstype:
        return {"mounted": False}
    return _describe(entry, *facts.owner(mount_point))


def flag_drift(wanted: list[str], entry: MountEntry) -> list[str]:
    """Per-mount flags that differ between the policy and the mount, e.g. ['+noexec']."""
    current = set(entry.options)
    drift = []
    for option in _mount_syscalls.ALWAYS_COMPARED:
        if option in wanted and option not in current:
            drift.append("+" + option)
        elif option not in wanted and option in current:
            drift.append("-" + option)
    for option in _mount_syscalls.ATIME_OPTIONS:
        if option in wanted and option not in current:
            drift.append("+" + option)
    return drift


def _data(gid: int | None, mode: int | None) -> str:
    parts = []
    if gid is not None:
        parts.append("gid=%d" % gid)
    if mode is not None:
        parts.append("mode=%o" % mode)
    return ",".join(parts)


def _target(policy: Policy, facts: Facts) -> tuple[str, str, str]:
    """(fstype, mount point, tracing dir) the policy applies to on this host."""
    tracefs_missing = "tracefs" not in facts.filesystems or (
        policy.path == TRACEFS_MOUNT_POINT and not facts.exists(TRACEFS_MOUNT_POINT)
    )
    if not tracefs_missing:
        return "tracefs", policy.path, policy.path
    why = (
        "the kernel has no tracefs filesystem"
        if "tracefs" not in facts.filesystems
        else "%s does not exist" % TRACEFS_MOUNT_POINT
    )
    if not policy.legacy_debugfs:
        raise PolicyError(
            "tracefs cannot be mounted here: %s (a kernel older than 4.1?). Set "
            "legacy_debugfs=true to use <debugfs>/tracing instead." % why
        )
    existing = facts.mounts_of("debugfs")
    if existing:
        mount_point = existing[0].mount_point
        for entry in existing:
            if entry.mount_point == DEBUGFS_MOUNT_POINT:
                mount_point = entry.mount_point
    elif facts.debugfs_allowed and facts.is_dir(DEBUGFS_MOUNT_POINT):
        mount_point = DEBUGFS_MOUNT_POINT
    else:
        reason = facts.debugfs_reason
        if facts.debugfs_allowed and not facts.is_dir(DEBUGFS_MOUNT_POINT):
            reason = "%s does not exist" % DEBUGFS_MOUNT_POINT
        raise PolicyError(
            "no way to reach the tracing files: %s, and debugfs may not be mounted on this host (%s)" % (why, reason)
        )
    return "debugfs", mount_point, os.path.join(mount_point, "tracing")


def _require_empty(mount_point: str, fstype: str, facts: Facts) -> None:
    """Refuse to mount over a populated directory (`/etc`, `/sys/kernel`): the mount
    would hide what is in it from everything on the host. There is no override: a
    tracefs mount needs an empty directory, and a new path is always available."""
    if mount_point in KERNEL_MOUNT_POINTS or not facts.exists(mount_point):
        return
    names = sorted(facts.listdir(mount_point))
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise PolicyError(
            "%s is not empty (%d %s: %s); mounting %s there would hide them. "
            "Use an empty directory or a path that does not exist yet"
            % (mount_point, len(names), "entry" if len(names) == 1 else "entries", shown, fstype)
        )


def _debugfs_subtrees(facts: Facts) -> list[tuple[MountEntry, list[MountEntry]]]:
    """Each outermost debugfs mount with the mounts inside it (the tracing automount,
    a debugfs mounted over it), innermost first: the order they can be unmounted in.
    Inside means below it in the mount tree (parent ids), which also finds a mount
    stacked on the same mount point."""
    by_id = {entry.mount_id: entry for entry in facts.all_mounts}
    children: dict[int, list[MountEntry]] = {}
    for entry in facts.all_mounts:
        if entry.parent_id != entry.mount_id:
            children.setdefault(entry.parent_id, []).append(entry)

    def under_debugfs(entry: MountEntry) -> bool:
        seen = {entry.mount_id}
        parent = by_id.get(entry.parent_id)
        while parent is not None and parent.mount_id not in seen:
            if parent.fstype == "debugfs":
                return True
            seen.add(parent.mount_id)
            parent = by_id.get(parent.parent_id)
        return False

    def innermost_first(entry: MountEntry, out: list[MountEntry], seen: set[int]) -> None:
        seen.add(entry.mount_id)
        for child in reversed(children.get(entry.mount_id, [])):  # the last mounted on top
            if child.mount_id not in seen:
                innermost_first(child, out, seen)
        out.append(entry)

    subtrees = []
    for entry in facts.all_mounts:
        if entry.fstype == "debugfs" and not under_debugfs(entry):
            ordered: list[MountEntry] = []
            innermost_first(entry, ordered, set())
            subtrees.append((entry, ordered))
    return subtrees


def _inside(path: str, mount_point: str) -> bool:
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def _plan_debugfs(policy: Policy, facts: Facts, result: Plan) -> list[Action]:
    """debugfs: unmounted - one umount per debugfs mount and per mount inside one,
    innermost first (the outermost ones noted in `result`). Refuses a policy that
    needs debugfs itself."""
    if result.fstype == "debugfs":
        raise PolicyError(
            "debugfs=%s contradicts legacy_debugfs=true here: this kernel has no usable tracefs "
            "mount point, so the tracing files are reached through debugfs at %s" % (policy.debugfs, result.mount_point)
        )
    subtrees = _debugfs_subtrees(facts)
    inside = [entry.mount_point for _root, ordered in subtrees for entry in ordered] + [DEBUGFS_MOUNT_POINT]
    for mount_point in inside:
        if _inside(policy.path, mount_point):
            raise PolicyError(
                "path=%s lies inside debugfs (%s), which debugfs=%s unmounts; "
                "use a tracefs mount point outside it, such as %s"
                % (policy.path, mount_point, policy.debugfs, TRACEFS_MOUNT_POINT)
            )
    actions = []
    for root, ordered in subtrees:
        result.debugfs_mount_points.append(root.mount_point)
        for entry in ordered:
            reason = (
                "debugfs=%s" % policy.debugfs
                if entry.fstype == "debugfs"
                else "inside debugfs at %s" % root.mount_point
            )
            actions.append(
                Action("umount", entry.mount_point, entry.fstype, reason=reason, detach_if_busy=policy.debugfs_force)
            )
    return actions


def plan(policy: Policy, facts: Facts) -> Plan:
    fstype, mount_point, tracing_path = _target(policy, facts)
    result = Plan(fstype, mount_point, tracing_path)
    debugfs = _plan_debugfs(policy, facts, result) if policy.unmounts_debugfs else None
    _plan_tracefs(policy, facts, result)
    if debugfs is not None:
        # debugfs first: a debugfs that cannot be unmounted stops the task before tracefs is touched.
        result.actions[:0] = debugfs
        result.before["debugfs"] = {"mounted": list(result.debugfs_mount_points)}
        result.after["debugfs"] = {"mounted": []}
    return result


def _plan_tracefs(policy: Policy, facts: Facts, result: Plan) -> None:
    fstype, mount_point = result.fstype, result.mount_point
    entry = facts.mount_at(mount_point)
    if entry is not None and entry.fstype != fstype:
        if policy.state == "unmounted":
            raise PolicyError("%s is a %s mount, not %s; not unmounting it" % (mount_point, entry.fstype, fstype))
        raise PolicyError(
            "%s already has a %s mount on it; not mounting %s over it" % (mount_point, entry.fstype, fstype)
        )
    if facts.exists(mount_point) and not facts.is_dir(mount_point):
        raise PolicyError("%s exists and is not a directory" % mount_point)
    if entry is None and policy.state == "mounted":
        _require_empty(mount_point, fstype, facts)

    current_gid = current_mode = None
    if entry is not None:
        current_gid, current_mode = facts.owner(mount_point)
    result.before = _describe(entry, current_gid, current_mode)

    if policy.state == "unmounted":
        if entry is not None:
            result.actions.append(Action("umount", mount_point, fstype))
        result.after = {"mounted": False}
        return

    flags = _mount_syscalls.flags_for(policy.options)
    if entry is None:
        if not facts.exists(mount_point):
            result.actions.append(Action("mkdir", mount_point, reason="mount point missing"))
        result.actions.append(Action("mount", mount_point, fstype, flags, _data(policy.gid, policy.mode)))
        # Unmanaged gid/mode (None) on a fresh mount: whatever tracefs' single
        # superblock ends up with; the module reports the real values afterwards.
        after_gid = policy.gid
        after_mode = policy.mode
    else:
        drift = flag_drift(policy.options, entry)
        if policy.gid is not None and policy.gid != current_gid:
            drift.append("gid %s -> %d" % (current_gid, policy.gid))
        if policy.mode is not None and policy.mode != current_mode:
            drift.append("mode %s -> %s" % (_mode_text(current_mode), _mode_text(policy.mode)))
        after_gid = current_gid if policy.gid is None else policy.gid
        after_mode = current_mode if policy.mode is None else policy.mode
        if drift:
            # Restate gid and mode so the remount cannot reset what the policy leaves alone.
            result.actions.append(
                Action("remount", mount_point, fstype, flags, _data(after_gid, after_mode), ", ".join(drift))
            )
    kept_atime = [] if entry is None else [opt for opt in entry.options if opt in _mount_syscalls.ATIME_OPTIONS]
    wanted_atime = [opt for opt in policy.options if opt in _mount_syscalls.ATIME_OPTIONS]
    after_options = [opt for opt in policy.options if opt in _mount_syscalls.ALWAYS_COMPARED]
    after_options += wanted_atime or kept_atime or (["relatime"] if entry is None else [])
    result.after = {
        "mounted": True,
        "fstype": fstype,
        "source": entry.source if entry is not None else fstype,
        "options": sorted(after_options),
        "gid": after_gid,
        "mode": _mode_text(after_mode),
    }


def _make_dirs(path: str) -> list[str]:
    """mkdir -p, returning the directories it created (outermost first)."""
    missing = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory, 0o755)
            created.append(directory)
    except BaseException:
        _remove_dirs(created)
        raise
    return created


def _remove_dirs(created: list[str]) -> None:
    """Undo `_make_dirs`, best effort: a failure here must not hide the error that
    made the plan stop."""
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _umount(action: Action) -> None:
    try:
        _mount_syscalls.umount(action.target)
    except _mount_syscalls.MountError as exc:
        if exc.errno != errno.EBUSY or not action.detach_if_busy:
            raise
        _mount_syscalls.umount(action.target, detach=True)
        action.detached = True


def apply_plan(result: Plan) -> list[str]:
    """Carry out the plan; return what was done. Raises MountError / OSError; the
    directories it created for a mount that then failed are removed again."""
    done = []
    created: list[str] = []
    try:
        for action in result.actions:
            if action.kind == "mkdir":
                created = _make_dirs(action.target)
            elif action.kind == "mount":
                _mount_syscalls.mount(action.fstype, action.target, action.fstype, action.flags, action.data)
                created = []  # the directory holds a mount now: it stays
            elif action.kind == "remount":
                _mount_syscalls.remount(action.target, action.flags, action.data)
            elif action.kind == "umount":
                _umount(action)
            done.append(action.describe())
    except BaseException:
        _remove_dirs(created)
        raise
    return done
