# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Trace events of one tracing directory: resolve names (system/event, system, globs),
read their state in one pass, compute the delta, and apply it.

Filters go first (the kernel validates them, and a rejected one must leave the host
as it was), then triggers (removed in dependency order), then enable switches.

The ledger kinds `event`, `filter`, `trigger_add` and `trigger_remove` are recorded
and undone here, and `ensure` is the trace_event task.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import fnmatch
import os
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError, Transaction
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._instance import enabled_events, open_instance
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerKind, place
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import (
    TaskError,
    apply_with_rollback,
    refuse_control_characters,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import place as dir_place
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

# Files directly under events/ that are not systems.
_NOT_SYSTEMS = {"enable", "filter", "header_event", "header_page"}
_GLOB = re.compile(r"[*?\[]")
_NAME = re.compile(r"[A-Za-z0-9_*?\[\]:./-]+")
_SUFFIXES = re.compile(r"\s*\[(active|paused)\]\s*$")
_COUNT = re.compile(r":count=(\d+)")
_HIST_ACTIONS = ("onmatch(", "onmax(", "onchange(")


class EventError(TracefleetError):
    """Bad input about events; nothing was written."""


def _is_glob(text: str) -> bool:
    return bool(_GLOB.search(text))


class EventCatalog:
    """The events a tracing directory offers (its events/ tree), listed once."""

    def __init__(self, tracing: TracingDir) -> None:
        self.tracing = tracing
        self.base = tracing.rel("events")
        self.systems: dict[str, list[str]] = {}
        root = tracing.path("events")
        try:
            names = sorted(os.listdir(root))
        except OSError:
            names = []
        for system in names:
            path = os.path.join(root, system)
            if system in _NOT_SYSTEMS or not os.path.isdir(path):
                continue
            self.systems[system] = sorted(
                event for event in os.listdir(path) if os.path.isdir(os.path.join(path, event))
            )

    def resolve(self, spec: str) -> list[str]:
        """`sys/event`, `sys:event`, `sys` (a whole system) or globs -> `sys/event` names."""
        text = spec
        if not text or not _NAME.fullmatch(text) or ".." in text.split("/"):
            raise EventError("events: %r is not an event name (system/event, system, or a glob)" % spec)
        text = text.replace(":", "/", 1)
        if "/" in text:
            system_spec, event_spec = text.split("/", 1)
        else:
            system_spec, event_spec = text, "*"
        systems = (
            fnmatch.filter(self.systems, system_spec)
            if _is_glob(system_spec)
            else [system_spec]
            if system_spec in self.systems
            else []
        )
        if not systems:
            raise EventError(
                "events: %r matches no event system here%s"
                % (spec, "" if _is_glob(system_spec) else " (no such system %r)" % system_spec)
            )
        found: list[str] = []
        for system in sorted(systems):
            events = self.systems[system]
            matched = (
                fnmatch.filter(events, event_spec)
                if _is_glob(event_spec)
                else [event_spec]
                if event_spec in events
                else []
            )
            found.extend("%s/%s" % (system, event) for event in matched)
        if not found:
            raise EventError(
                "events: %r matches no event here (system %s has no event %r)" % (spec, ", ".join(systems), event_spec)
            )
        return found

    def __contains__(self, event: str) -> bool:
        system, _slash, name = event.partition("/")
        return name in self.systems.get(system, ())

    def file(self, event: str, name: str) -> str:
        """A file of `event`, relative to the tracefs root (what a Transaction takes)."""
        return os.path.join(self.base, event, name)


def normalise_trigger(text: str) -> str:
    """A trigger as the kernel prints it, back in the form it was written
    (`traceon:count=3 ... [active]` -> `traceon:3 ...`)."""
    text = _SUFFIXES.sub("", text.strip())
    return _COUNT.sub(r":\1", text.replace(":unlimited", ""))


def removal_form(text: str) -> str:
    """What to write after `!` to remove a trigger. The kernel finds the trigger to
    remove by its command (and for enable_event/disable_event by the target event,
    for hist by its keys and values), and a count or a filter is not part of that."""
    text = normalise_trigger(text)
    if text.startswith("hist"):
        return text.split(" if ", 1)[0].strip()
    command = text.split(" if ", 1)[0].strip()
    parts = command.split(":")
    if parts[0] in ("enable_event", "disable_event", "enable_hist", "disable_hist"):
        return ":".join(parts[:3])
    return parts[0]


def _hist_parts(text: str) -> tuple[str, set[str]]:
    head, condition = (text.split(" if ", 1) + [""])[:2]
    return condition.strip(), set(head.split(":"))


def trigger_matches(wanted: str, current: str) -> bool:
    """Whether a trigger the kernel lists is the one asked for. Hist triggers are
    printed with their defaults filled in (vals=hitcount:sort=hitcount:size=2048), so
    every part asked for must be there; other triggers compare as text."""
    wanted, current = normalise_trigger(wanted), normalise_trigger(current)
    if wanted == current:
        return True
    if wanted.startswith("hist") and current.startswith("hist"):
        wanted_condition, wanted_parts = _hist_parts(wanted)
        current_condition, current_parts = _hist_parts(current)
        return wanted_condition == current_condition and wanted_parts <= current_parts
    return False


def removal_rank(trigger: str) -> int:
    """Remove triggers that refer to others first: event/hist control triggers, then
    hist triggers with actions (they reference synthetic events), then plain hist."""
    text = normalise_trigger(trigger)
    if not text.startswith("hist"):
        return 0
    if any(action in text for action in _HIST_ACTIONS):
        return 1
    return 2


class EventState:
    """What the kernel says about one event."""

    def __init__(self, name: str, enabled: bool, event_filter: str | None, triggers: list[str]) -> None:
        self.name = name
        self.enabled = enabled
        self.filter = event_filter
        self.triggers = triggers

    def as_dict(self) -> dict:
        return {"enabled": self.enabled, "filter": self.filter, "triggers": list(self.triggers)}


def read_state(catalog: EventCatalog, event: str) -> EventState:
    tracing = catalog.tracing
    enable = (tracing.read("events", event, "enable") or "0").strip()
    event_filter = (tracing.read("events", event, "filter") or "none").strip()
    if "\n" in event_filter and "parse_error:" in event_filter:
        # The text of a rejected filter, with the kernel's error under it: the kernel
        # disabled the event's filter when it rejected the new one.
        event_filter = "none"
    triggers = [line.strip() for line in tracing.lines("events", event, "trigger")]
    return EventState(event, enable.startswith("1"), None if event_filter == "none" else event_filter, triggers)


class EventChange:
    """One write about one event, with what puts it back."""

    def __init__(self, event: str, kind: str, file: str, value: str, undo: str, ledger: dict) -> None:
        self.event = event
        self.kind = kind
        self.file = file
        self.value = value
        self.undo = undo
        self.ledger = ledger


def plan_events(
    catalog: EventCatalog, entries: list[dict], exclusive: bool, enabled_now: list[str]
) -> tuple[list[EventChange], dict[str, dict], dict]:
    """Validate every entry, then return (changes in write order, wanted per event,
    state before per event)."""
    wanted: dict[str, dict] = {}
    for entry in entries:
        name = entry.get("name")
        if not isinstance(name, str):
            raise EventError("events: each entry needs a name, got %r" % (entry,))
        state = entry.get("state") or "enabled"
        if state not in ("enabled", "disabled"):
            raise EventError("events: %r has state=%r; use enabled or disabled" % (name, state))
        triggers = entry.get("triggers")
        if triggers is not None and not isinstance(triggers, list):
            raise EventError("events: %r triggers must be a list" % name)
        for event in catalog.resolve(name):
            settings = wanted.setdefault(event, {})
            settings["state"] = state
            if entry.get("filter") is not None:
                settings["filter"] = str(entry["filter"]).strip(" ")
            if triggers is not None:
                settings["triggers"] = [str(trigger).strip(" ") for trigger in triggers]

    if exclusive:
        # "Exactly the list" in the kernel's own files: an event with a trigger stays in
        # set_event (its enable reads 0*) and the trigger keeps firing, so an event
        # that is not listed loses its triggers too (recorded, so teardown puts them
        # back). Filters stay: a filter enables nothing.
        for line in enabled_now:
            event = line.replace(":", "/", 1)
            if event not in wanted and event in catalog:
                wanted[event] = {"state": "disabled", "triggers": []}

    before = {event: read_state(catalog, event) for event in sorted(wanted)}
    filters, adds, removals, enables = [], [], [], []
    for event, settings in sorted(wanted.items()):
        current = before[event]
        if "filter" in settings:
            new = settings["filter"] or None
            if new != current.filter:
                filters.append(
                    EventChange(
                        event,
                        "filter",
                        catalog.file(event, "filter"),
                        new or "0",
                        current.filter or "0",
                        {"kind": "filter", "event": event, "original": current.filter or "none"},
                    )
                )
        if "triggers" in settings:
            for trigger in settings["triggers"]:
                if not any(trigger_matches(trigger, have) for have in current.triggers):
                    adds.append(
                        EventChange(
                            event,
                            "trigger_add",
                            catalog.file(event, "trigger"),
                            trigger,
                            "!" + removal_form(trigger),
                            {"kind": "trigger_add", "event": event, "value": trigger},
                        )
                    )
            for have in current.triggers:
                if not any(trigger_matches(trigger, have) for trigger in settings["triggers"]):
                    plain = normalise_trigger(have)
                    removals.append(
                        EventChange(
                            event,
                            "trigger_remove",
                            catalog.file(event, "trigger"),
                            "!" + removal_form(have),
                            plain,
                            {"kind": "trigger_remove", "event": event, "value": plain},
                        )
                    )
        enable = settings["state"] == "enabled"
        if enable != current.enabled:
            enables.append(
                EventChange(
                    event,
                    "enable",
                    catalog.file(event, "enable"),
                    "1" if enable else "0",
                    "1" if current.enabled else "0",
                    {"kind": "event", "event": event, "original": "1" if current.enabled else "0"},
                )
            )
    removals.sort(key=lambda change: removal_rank(change.undo))
    adds.sort(key=lambda change: -removal_rank(change.value))
    return filters + removals + adds + enables, wanted, {event: state.as_dict() for event, state in before.items()}


def apply_events(
    changes: list[EventChange],
    transaction: Transaction,
    ledger: Ledger,
    session: str,
    instance: str | None,
    record: bool,
) -> None:
    """Write the changes, all recorded in the ledger first (when `record`) with one save."""
    if record and changes:
        ledger.record_many(session, [dict(change.ledger, instance=instance) for change in changes])
    for change in changes:
        transaction.write(
            change.file,
            change.value,
            change.undo,
            note="%s %s: %s" % (change.event, change.kind, change.value),
            undo_if_failed=change.kind == "filter",
        )


# The event file each ledger kind of this module changes.
_UNDO_FILES = {"event": "enable", "filter": "filter", "trigger_add": "trigger", "trigger_remove": "trigger"}


def _undo(top: TracingDir, ledger: Ledger, entry: dict) -> str | None:
    tracing = top.instance_dir(entry.get("instance"))
    if not os.path.isdir(tracing.path("events", entry["event"])):
        return "event %s no longer exists" % entry["event"]
    kind = entry["kind"]
    name = os.path.join("events", entry["event"], _UNDO_FILES[kind])
    if kind == "event":
        tracing.write(name, entry["original"])
    elif kind == "filter":
        tracing.write(name, "0" if entry["original"] == "none" else entry["original"])
    elif kind == "trigger_add":
        tracing.write(name, "!" + removal_form(entry["value"]))
    else:  # trigger_remove
        tracing.write(name, entry["value"])
    return None


LEDGER_KINDS = {
    "event": LedgerKind(
        lambda entry: (
            "%s event %s in %s" % ("enable" if entry["original"] == "1" else "disable", entry["event"], place(entry))
        ),
        _undo,
    ),
    "filter": LedgerKind(
        lambda entry: "restore the filter of %s in %s to %r" % (entry["event"], place(entry), entry["original"]),
        _undo,
    ),
    "trigger_add": LedgerKind(
        lambda entry: "remove trigger %r of %s in %s" % (entry["value"], entry["event"], place(entry)), _undo
    ),
    "trigger_remove": LedgerKind(
        lambda entry: "put trigger %r of %s in %s back" % (entry["value"], entry["event"], place(entry)), _undo
    ),
}


def _explain(changes: list[EventChange], place_text: str, exc: ControlError) -> tuple[str, dict]:
    """The failure text of a write the kernel refused, naming the change it was."""
    failed = next((change for change in changes if change.file in exc.path), None)
    what = ""
    if failed is not None and failed.kind == "filter":
        what = "filter %r of %s was rejected: " % (failed.value, failed.event)
    elif failed is not None:
        what = "%s %r of %s was rejected: " % (failed.kind, failed.value, failed.event)
    return "events: %s%s (in %s)" % (what, exc, place_text), {"error_log": exc.error_log}


def _report(
    catalog: EventCatalog, changes: list[EventChange], wanted: dict, before: dict, check_mode: bool
) -> dict[str, dict]:
    """Per event: changed, before, and after (read back; predicted in check mode)."""
    changed_events = {change.event for change in changes}
    report = {}
    for event, settings in wanted.items():
        after = dict(before[event])
        after["enabled"] = settings["state"] == "enabled"
        if "filter" in settings:
            after["filter"] = settings["filter"] or None
        if "triggers" in settings:
            after["triggers"] = settings["triggers"]
        if not check_mode:
            after = read_state(catalog, event).as_dict()
        report[event] = {"changed": event in changed_events, "before": before[event], "after": after}
    return report


def ensure(params: dict, check_mode: bool, diff: bool) -> dict:
    """The trace_event task: resolve and plan every entry, then write the difference,
    with the ledger records, and everything put back if the kernel refuses a write."""
    refuse_control_characters(params)
    tracing = open_instance(params["tracefs_path"], params["instance"])
    place_text = dir_place(tracing)
    catalog = EventCatalog(tracing)
    try:
        changes, wanted, before = plan_events(catalog, params["events"], params["exclusive"], enabled_events(tracing))
    except EventError as exc:
        raise TaskError("%s (in %s); nothing was changed" % (exc, place_text)) from None
    with Ledger(params["ledger_path"], dry_run=check_mode) as ledger:
        # The changes to an instance tracefleet created go away with it: not recorded.
        record = tracing.instance is None or not ledger.owns_instance(tracing.instance)

        def apply(transaction: Transaction) -> None:
            apply_events(changes, transaction, ledger, params["session"], tracing.instance, record)

        transaction = apply_with_rollback(
            tracing, ledger, check_mode, apply, lambda exc, _transaction: _explain(changes, place_text, exc)
        )
    report = _report(catalog, changes, wanted, before, check_mode)
    result = dict(changed=bool(changes), events=report, changes=transaction.done)
    if diff:
        result["diff"] = {
            "before": {event: item["before"] for event, item in report.items() if item["changed"]},
            "after": {event: item["after"] for event, item in report.items() if item["changed"]},
        }
    return result
