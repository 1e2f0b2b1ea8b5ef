# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Undo what the ledger records, newest first, forgetting each entry once undone.

Because each entry is forgotten only after its undo succeeded, a teardown that is
interrupted (or that fails on one entry) can simply be run again.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _instance, _mount_syscalls
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import (
    Control,
    ControlError,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._events import removal_form
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.module_utils._mountinfo import read_mountinfo
from ansible_collections.tracefleet.ftrace.plugins.module_utils._probes import (
    enable_file,
    enabled_in,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracer import PID_FILES, read_lines


def describe(entry: dict) -> str:
    kind = entry["kind"]
    where = "instance %s" % entry["instance"] if entry.get("instance") else "top level"
    if kind == "instance":
        return "remove instance %s" % entry["name"]
    if kind == "knob":
        return "restore %s of %s to %r" % (entry["file"], where, entry["original"])
    if kind == "list_add":
        return "remove %r from %s of %s" % (entry["value"], entry["file"], where)
    if kind == "list_remove":
        return "put %r back into %s of %s" % (entry["value"], entry["file"], where)
    if kind == "event":
        return "%s event %s in %s" % ("enable" if entry["original"] == "1" else "disable", entry["event"], where)
    if kind == "filter":
        return "restore the filter of %s in %s to %r" % (entry["event"], where, entry["original"])
    if kind == "trigger_add":
        return "remove trigger %r of %s in %s" % (entry["value"], entry["event"], where)
    if kind == "trigger_remove":
        return "put trigger %r of %s in %s back" % (entry["value"], entry["event"], where)
    if kind == "probe":
        return "remove probe %s/%s" % (entry["group"], entry["event"])
    if kind == "mount":
        return "unmount %s (%s)" % (entry["path"], entry["fstype"])
    if kind == "capture":
        return "end the capture window opened in %s" % where
    return "unknown entry %r" % (entry,)


def undo(control: Control | None, ledger: Ledger, entry: dict) -> str | None:
    """Undo one entry. Returns a note when there was nothing left to undo."""
    kind = entry["kind"]
    instance = entry.get("instance")
    if kind == "mount":
        mounted = any(
            mount.mount_point == entry["path"] and mount.fstype == entry["fstype"] for mount in read_mountinfo()
        )
        if not mounted:
            return "%s was no longer mounted" % entry["path"]
        _mount_syscalls.umount(entry["path"])
        return None
    if kind == "capture":
        return None  # nothing in tracefs: the window's tracing_on is a knob entry
    if control is None:
        raise ControlError("(tracefs)", describe(entry), 2, [])
    if kind == "instance":
        if not _instance.exists(control, entry["name"]):
            return "instance %s was already gone" % entry["name"]
        _instance.remove(control, ledger, entry["name"])
        return None
    if instance is not None and not _instance.exists(control, instance):
        return "instance %s is gone, and with it what was changed in it" % instance
    if kind == "probe":
        if entry["event"] not in (control.read("dynamic_events") or ""):
            return "probe %s/%s was already gone" % (entry["group"], entry["event"])
        # Our probe: disable it wherever it is enabled (removal fails with EBUSY otherwise).
        for where in enabled_in(control, entry["group"], entry["event"]):
            control.write(enable_file(where, entry["group"], entry["event"]), "0")
        control.write("dynamic_events", "-:%s/%s" % (entry["group"], entry["event"]))
        return None
    if kind in ("event", "filter", "trigger_add", "trigger_remove"):
        base = _instance.relative(instance, "events", entry["event"])
        if not os.path.isdir(control.path(base)):
            return "event %s no longer exists" % entry["event"]
        if kind == "event":
            control.write(os.path.join(base, "enable"), entry["original"])
        elif kind == "filter":
            original = entry["original"]
            control.write(os.path.join(base, "filter"), "0" if original == "none" else original)
        elif kind == "trigger_add":
            control.write(os.path.join(base, "trigger"), "!" + removal_form(entry["value"]))
        else:
            control.write(os.path.join(base, "trigger"), entry["value"])
        return None
    rel = _instance.relative(instance, entry["file"])
    if kind == "knob":
        control.write(rel, entry["original"])
    elif kind == "list_add":
        if os.path.basename(rel) in PID_FILES:
            remaining = [pid for pid in read_lines(control, rel) if pid not in ("no pid", entry["value"])]
            control.replace_list(rel, " ".join(remaining))
        else:
            control.write(rel, "!" + entry["value"])
    elif kind == "list_remove":
        control.write(rel, entry["value"])
    return None


def teardown(
    control: Control | None, ledger: Ledger, session: str | None, keep_mounts: bool, dry_run: bool
) -> tuple[list[str], list[str], list[str]]:
    """(undone, notes, failures) for the session's entries (all sessions when None)."""
    undone, notes, failures = [], [], []
    for entry in reversed(ledger.session_entries(session)):
        if entry not in ledger.entries:
            continue  # went away with its instance
        if entry["kind"] == "mount" and keep_mounts:
            continue
        text = describe(entry)
        if dry_run:
            undone.append(text)
            continue
        try:
            note = undo(control, ledger, entry)
        except (ControlError, _instance.InstanceError, OSError) as exc:
            failures.append("%s: %s" % (text, exc))
            continue
        if entry in ledger.entries:
            ledger.forget(entry)
        if note:
            notes.append(note)
        else:
            undone.append(text)
    return undone, notes, failures
