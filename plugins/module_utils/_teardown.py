# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Undo what the ledger records, newest first, forgetting each entry once undone.

Because each entry is forgotten only after its undo succeeded, a teardown that is
interrupted (or that fails on one entry) can simply be run again.

Teardown knows no entry kind itself: `KINDS` gathers the `LEDGER_KINDS` of the code
that records each kind (see `_ledger.LedgerKind`), and each entry is dispatched there.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import errno

from ansible_collections.tracefleet.ftrace.plugins.module_utils import (
    _capture_window,
    _events,
    _instance,
    _knob_changes,
    _mountpolicy,
    _persist_apply,
    _probes,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import (
    Ledger,
    LedgerError,
    LedgerKind,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import (
    TaskError,
    TracingUnavailable,
    open_tracefs,
    refuse_control_characters,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

KINDS: dict[str, LedgerKind] = {
    **_instance.LEDGER_KINDS,
    **_knob_changes.LEDGER_KINDS,
    **_events.LEDGER_KINDS,
    **_probes.LEDGER_KINDS,
    **_mountpolicy.LEDGER_KINDS,
    **_capture_window.LEDGER_KINDS,
    **_persist_apply.LEDGER_KINDS,
}


def describe(entry: dict) -> str:
    kind = KINDS.get(entry["kind"])
    return kind.describe(entry) if kind is not None else "unknown entry %r" % (entry,)


def needs_reboot(entry: dict) -> bool:
    kind = KINDS.get(entry["kind"])
    return kind is not None and kind.needs_reboot


def needs_tracefs(entry: dict) -> bool:
    kind = KINDS.get(entry["kind"])
    return kind is None or kind.needs_tracefs


def undo(top: TracingDir | None, ledger: Ledger, entry: dict) -> str | None:
    """Undo one entry. Returns a note when there was nothing left to undo."""
    kind = KINDS.get(entry["kind"])
    if kind is None:
        raise LedgerError("unknown ledger entry kind %r" % entry["kind"])
    if kind.needs_tracefs:
        if top is None:
            raise ControlError("(tracefs)", describe(entry), errno.ENOENT, [])
        instance = entry.get("instance")
        if instance is not None and not top.instance_dir(instance).exists():
            return "instance %s is gone, and with it what was changed in it" % instance
    return kind.undo(top, ledger, entry)


def teardown(
    top: TracingDir | None, ledger: Ledger, session: str | None, keep_mounts: bool, dry_run: bool
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
            note = undo(top, ledger, entry)
        except (TracefleetError, OSError) as exc:
            failures.append("%s: %s" % (text, exc))
            continue
        if entry in ledger.entries:
            ledger.forget(entry)
        if note:
            notes.append(note)
        else:
            undone.append(text)
    return undone, notes, failures


DEFAULT_SESSION = "default"


def chosen_session(params: dict) -> str | None:
    """The session a teardown undoes: the one given, else `default` (the session every
    other module records under when none is given), and None (every session) only
    when asked for by name with all_sessions, so a teardown never undoes a
    concurrent play's changes by omission."""
    session, every = params.get("session"), params.get("all_sessions")
    if every and session is not None:
        raise TaskError(
            "session=%r and all_sessions=true are mutually exclusive: give one session, or all of them" % session
        )
    return None if every else (session if session is not None else DEFAULT_SESSION)


def run(params: dict, check_mode: bool) -> dict:
    """The teardown task: undo the chosen session's entries (see `chosen_session`)."""
    refuse_control_characters(params)
    session = chosen_session(params)
    with Ledger(params["ledger_path"], dry_run=check_mode) as ledger:
        top = None
        if any(needs_tracefs(entry) for entry in ledger.session_entries(session)):
            try:
                top = open_tracefs(params["tracefs_path"])
            except TracingUnavailable as exc:
                raise TaskError("cannot undo the tracing changes: %s" % exc, remaining=len(ledger.entries)) from None
        for_reboot = [describe(entry) for entry in ledger.session_entries(session) if needs_reboot(entry)]
        undone, notes, failures = teardown(top, ledger, session, params["keep_mounts"], check_mode)
        remaining = len(ledger.entries)
    reboot_required = any(text in undone for text in for_reboot)
    result = dict(
        changed=bool(undone), undone=undone, notes=notes, remaining=remaining, reboot_required=reboot_required
    )
    if reboot_required:
        result["msg"] = "boot-time tracing was removed from the next boot's configuration; a reboot completes the undo"
    if failures:
        raise TaskError("teardown could not undo %d change(s): %s" % (len(failures), "; ".join(failures)), **result)
    return result
