# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tracer knobs of one tracing directory: validate, compute the delta, apply (the
write side; `_knob_state` reads and parses them).

`plan_knobs` validates everything against what the kernel offers before a single
write; `apply_knobs` then writes only what differs, in an order that respects the
kernel: sub-buffer size (the buffer size is then allocated in those pages), buffer
size and clock, then cpumask, function and pid filters, so that a tracer starts
already narrowed down (the function tracer on every function brings a small VM to a
crawl), then the tracer, its options, and tracing_on last.

The ledger kinds `knob`, `list_add` and `list_remove` are recorded and undone here,
and `configure` is the tracer task.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import fnmatch
import os
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _knob_state
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError, Transaction
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._instance import open_instance
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerKind, place
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import (
    TaskError,
    apply_with_rollback,
    refuse_control_characters,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import place as dir_place
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

# Shared function lists, by module option.
FUNCTION_LISTS = {
    "function_filter": "set_ftrace_filter",
    "function_notrace": "set_ftrace_notrace",
    "graph_functions": "set_graph_function",
}
PID_FILES = ("set_event_pid", "set_ftrace_pid")
# Where trace_capture lists its own processes for a window (_capture_self).
NOTRACE_PID_FILES = ("set_event_notrace_pid", "set_ftrace_notrace_pid")
# A generous ceiling: more than a quarter of RAM in ring buffers is a mistake.
MAX_BUFFER_SHARE = 4
_FUNCTION = re.compile(r"[A-Za-z0-9_.*?\[\]]+")
_PID = re.compile(r"[0-9]{1,10}")
_HEX = re.compile(r"(0x)?[0-9a-fA-F]+(,[0-9a-fA-F]+)*")


class KnobError(TracefleetError):
    """Bad input for a knob; nothing was written."""


class Change:
    """One write: which file, the value, its original (for the ledger and undo)."""

    def __init__(
        self,
        knob: str,
        file: str,
        value: str,
        before,
        after,
        original: str | None,
        ledger_kind: str = "knob",
        ledger_value: str = "",
    ) -> None:
        self.knob = knob
        self.file = file
        self.value = value
        self.before = before
        self.after = after
        self.original = original
        self.ledger_kind = ledger_kind
        self.ledger_value = ledger_value


def _entries(tracing: TracingDir, name: str) -> list[str]:
    """Entries of a list file, without the kernel's `#` comment lines."""
    return [line.strip() for line in tracing.lines(name)]


def _memory_kb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cpu_count(tracing: TracingDir) -> int:
    try:
        return len([name for name in os.listdir(tracing.top().path("per_cpu")) if name.startswith("cpu")]) or 1
    except OSError:
        return os.cpu_count() or 1


def _buffer_matches(wanted: int, parsed: dict, page_bytes: int) -> bool:
    """Whether a buffer_size_kb reading means `wanted` KiB per CPU (the kernel rounds
    to ring-buffer pages of `page_bytes`, and shows an unallocated buffer as
    `7 (expanded: N)`)."""
    readings = {parsed["kb"], parsed["expanded_kb"]} - {None}
    return bool(readings & {wanted, _knob_state.allocated_kb(wanted * 1024, page_bytes)})


def _require_kib(option: str, value) -> None:
    """Refuse true/false for a size: AnsibleModule's int type takes a bool as it is
    (True is the int 1), and the kernel would be sent the text `True`."""
    if isinstance(value, bool):
        raise KnobError("%s: a whole number of KiB is expected, not true or false" % option)


def _plan_subbuf(tracing: TracingDir, wanted: int) -> tuple[Change | None, int]:
    """The write for buffer_subbuf_size_kb (None when it already reads the size the
    kernel would round `wanted` to), and that size in KiB."""
    option = "buffer_subbuf_size_kb=%r" % wanted
    # The value first, then the kernel: a size no kernel takes is refused as such on
    # every kernel, not only once the file exists.
    _require_kib(option, wanted)
    page = _knob_state.system_page_size()
    settled = _knob_state.subbuf_size_kb(wanted, page)
    if settled is None:
        raise KnobError(
            "%s: the kernel takes 1 to %d KiB (1 to %d pages of %d bytes, rounded up to a power of two)"
            % (option, (page << _knob_state.MAX_SUBBUF_ORDER) // 1024, 1 << _knob_state.MAX_SUBBUF_ORDER, page)
        )
    if not tracing.has(_knob_state.SUBBUF_FILE):
        raise KnobError(
            "%s: this kernel has no buffer_subbuf_size_kb (ring-buffer sub-buffer sizes came with Linux 6.8)" % option
        )
    text = tracing.read(_knob_state.SUBBUF_FILE)
    current = _knob_state.parse_subbuf_size(text)
    if current is None:
        raise KnobError("%s: %s reads %r, not a number of KiB" % (option, tracing.rel(_knob_state.SUBBUF_FILE), text))
    if settled == current:
        return None, settled
    # Written as the rounded size: the same to the kernel, and the change shows it.
    return Change(
        "buffer_subbuf_size_kb", tracing.rel(_knob_state.SUBBUF_FILE), str(settled), current, settled, str(current)
    ), settled


def available_functions(tracing: TracingDir) -> set[str]:
    """Names in available_filter_functions (the `[module]` column dropped)."""
    names = set()
    text = tracing.top().read("available_filter_functions") or ""
    for line in text.splitlines():
        if line:
            names.add(line.split()[0])
    return names


def _list_delta(option: str, entries: list, current: list[str], expand=None) -> tuple[list[str], list[str]]:
    """(to add, to remove) for entries like `name` (present) and `!name` (absent)."""
    add: list[str] = []
    remove: list[str] = []
    for raw in entries:
        entry = str(raw).strip(" ")
        negate = entry.startswith("!")
        name = entry[1:].strip(" ") if negate else entry
        if not name:
            raise KnobError("%s: empty entry %r" % (option, raw))
        members = expand(name) if expand else [name]
        if negate:
            remove.extend(member for member in members if member in current)
        elif any(member not in current for member in members):
            add.append(name)
    return add, remove


def plan_knobs(tracing: TracingDir, params: dict) -> list[Change]:
    """Validate the requested knobs and return the writes that are needed."""
    changes: list[Change] = []
    rel = tracing.rel
    top = tracing.top()

    # The sub-buffer size the ring buffer has after this task, in bytes: buffer_size_kb
    # is allocated (and reads back rounded) in pages of this size.
    page_bytes = _knob_state.system_page_size()
    current_subbuf = _knob_state.parse_subbuf_size(tracing.read(_knob_state.SUBBUF_FILE))
    if current_subbuf is not None:
        page_bytes = current_subbuf * 1024
    if params.get("buffer_subbuf_size_kb") is not None:
        subbuf_change, subbuf_kb = _plan_subbuf(tracing, params["buffer_subbuf_size_kb"])
        if subbuf_change is not None:
            changes.append(subbuf_change)
        page_bytes = subbuf_kb * 1024

    if params.get("buffer_size_kb") is not None:
        wanted = params["buffer_size_kb"]
        _require_kib("buffer_size_kb=%r" % wanted, wanted)
        if wanted < 1:
            raise KnobError("buffer_size_kb=%r: must be a positive number of KiB per CPU" % wanted)
        memory = _memory_kb()
        cpus = _cpu_count(tracing)
        if memory and wanted * cpus > memory // MAX_BUFFER_SHARE:
            raise KnobError(
                "buffer_size_kb=%d: %d CPUs x %d KiB is more than a quarter of this host's "
                "%d KiB of memory" % (wanted, cpus, wanted, memory)
            )
        parsed = _knob_state.parse_buffer_size(tracing.read("buffer_size_kb"))
        if not _buffer_matches(wanted, parsed, page_bytes):
            original = _knob_state.effective_buffer_kb(parsed)
            if tracing.instance is not None:
                # Any resize sets the kernel's global "buffers expanded" flag (6.1), after
                # which a top-level buffer that was never used stays at its minimum instead
                # of growing on first use: record the size it would have grown to, so
                # teardown can give it that size.
                top_buffer = _knob_state.parse_buffer_size(top.read("buffer_size_kb"))
                if top_buffer["expanded_kb"] is not None and top_buffer["kb"] != top_buffer["expanded_kb"]:
                    changes.append(
                        Change(
                            "buffer_size_kb",
                            "buffer_size_kb",
                            "",
                            top_buffer["raw"],
                            top_buffer["raw"],
                            str(top_buffer["expanded_kb"]),
                            "top_buffer",
                        )
                    )
            changes.append(
                Change(
                    "buffer_size_kb",
                    rel("buffer_size_kb"),
                    str(wanted),
                    parsed["raw"],
                    wanted,
                    None if original is None else str(original),
                )
            )

    if params.get("trace_clock") is not None:
        current, clocks = _knob_state.parse_bracketed(tracing.read("trace_clock"))
        if params["trace_clock"] not in clocks:
            raise KnobError("trace_clock=%r: this kernel offers %s" % (params["trace_clock"], ", ".join(clocks)))
        if params["trace_clock"] != current:
            changes.append(
                Change(
                    "trace_clock", rel("trace_clock"), params["trace_clock"], current, params["trace_clock"], current
                )
            )

    if params.get("cpumask") is not None:
        text = str(params["cpumask"]).strip(" ")
        if not _HEX.fullmatch(text):
            raise KnobError("cpumask=%r is not a hexadecimal CPU mask like '3' or 'ff'" % text)
        wanted = _knob_state.parse_cpumask(text[2:] if text.lower().startswith("0x") else text)
        current_text = (tracing.read("tracing_cpumask") or "").strip()
        possible = sum(1 << cpu for cpu in range(_cpu_count(tracing)))
        if wanted == 0 or wanted & ~possible:
            raise KnobError("cpumask=%r: must select CPUs that exist (this host: %x)" % (text, possible))
        if wanted != _knob_state.parse_cpumask(current_text or "0"):
            changes.append(
                Change("cpumask", rel("tracing_cpumask"), "%x" % wanted, current_text, "%x" % wanted, current_text)
            )

    functions: set[str] | None = None
    for option, file_name in FUNCTION_LISTS.items():
        entries = params.get(option)
        if not entries:
            continue
        if functions is None:
            functions = available_functions(tracing)
        list_file = rel(file_name)
        if not tracing.has(file_name):
            raise KnobError("%s: this kernel has no %s here" % (option, file_name))
        listed = _entries(tracing, file_name)
        for raw in entries:
            name = str(raw).strip(" ").lstrip("!").strip(" ")
            if not _FUNCTION.fullmatch(name):
                raise KnobError("%s: %r is not a function name or glob" % (option, raw))
            if not any(ch in name for ch in "*?[") and name not in functions:
                raise KnobError("%s: %r is not in available_filter_functions" % (option, name))
            if any(ch in name for ch in "*?[") and not fnmatch.filter(functions, name):
                raise KnobError("%s: %r matches no function in available_filter_functions" % (option, name))

        def expand(name: str, names=functions) -> list[str]:
            if any(ch in name for ch in "*?["):
                return sorted(fnmatch.filter(names, name))
            return [name]

        add, remove = _list_delta(option, entries, listed, expand)
        for name in add:
            changes.append(Change(option, list_file, name, False, True, None, "list_add", name))
        for name in remove:
            changes.append(Change(option, list_file, "!" + name, True, False, None, "list_remove", name))

    if params.get("pids"):
        for raw in params["pids"]:
            text = str(raw).strip(" ").lstrip("!").strip(" ")
            if not _PID.fullmatch(text):
                raise KnobError("pids: %r is not a process id" % (raw,))
        for file_name in PID_FILES:
            pid_file = rel(file_name)
            if not tracing.has(file_name):
                continue
            pids = [line for line in _entries(tracing, file_name) if line != "no pid"]
            add, remove = _list_delta("pids", params["pids"], pids)
            for pid in add:
                changes.append(Change("pids", pid_file, pid, False, True, None, "list_add", pid))
            if remove:
                # The pid files have no removal syntax: the remaining pids are written
                # back in one all-or-nothing write (other users' pids stay).
                remaining = [pid for pid in pids if pid not in remove]
                changes.append(
                    Change(
                        "pids", pid_file, " ".join(remaining), pids, remaining, None, "pid_replace", " ".join(remove)
                    )
                )

    if params.get("tracer") is not None:
        tracers_dir = tracing if tracing.has("available_tracers") else top
        tracers = (tracers_dir.read("available_tracers") or "").split()
        if params["tracer"] not in tracers:
            raise KnobError("tracer=%r: not in available_tracers (%s)" % (params["tracer"], ", ".join(tracers)))
        current = (tracing.read("current_tracer") or "").strip()
        if params["tracer"] != current:
            changes.append(
                Change("tracer", rel("current_tracer"), params["tracer"], current, params["tracer"], current)
            )

    tracer_changes = any(change.knob == "tracer" for change in changes)
    for name, wanted in sorted((params.get("options") or {}).items()):
        option_file = rel("options", name)
        if "/" in name or name in (".", "..") or not name:
            raise KnobError("options: %r is not a trace option name" % name)
        if not tracing.has("options", name):
            if tracer_changes:
                # Options of a tracer appear once it is current: checked after that write.
                changes.append(
                    Change(
                        "options/" + name,
                        option_file,
                        "1" if wanted else "0",
                        None,
                        bool(wanted),
                        None,
                        "deferred_option",
                    )
                )
                continue
            known = sorted(os.listdir(tracing.path("options"))) if os.path.isdir(tracing.path("options")) else []
            raise KnobError("options: %r is not a trace option here; known: %s" % (name, ", ".join(known)))
        option_on = (tracing.read("options", name) or "").strip() == "1"
        if bool(wanted) != option_on:
            changes.append(
                Change(
                    "options/" + name,
                    option_file,
                    "1" if wanted else "0",
                    option_on,
                    bool(wanted),
                    "1" if option_on else "0",
                )
            )

    if params.get("tracing_on") is not None:
        recording = (tracing.read("tracing_on") or "").strip() == "1"
        if bool(params["tracing_on"]) != recording:
            changes.append(
                Change(
                    "tracing_on",
                    rel("tracing_on"),
                    "1" if params["tracing_on"] else "0",
                    recording,
                    bool(params["tracing_on"]),
                    "1" if recording else "0",
                )
            )
    return changes


def apply_knobs(
    tracing: TracingDir, changes: list[Change], transaction: Transaction, ledger: Ledger, session: str, record: bool
) -> None:
    """Write the planned changes. What they change is recorded in the ledger first (when
    `record`), with one save for the whole batch; an option of a tracer the task sets
    is recorded once that tracer is current (its original is read then)."""
    control = tracing.control
    # Teardown undoes the newest entry first: the sub-buffer size is recorded after the
    # buffer size (though written before it), so the original sub-buffers come back
    # first and the buffer size is then restored in them, reading back as it was.
    in_ledger_order = sorted(changes, key=lambda change: change.knob == "buffer_subbuf_size_kb")
    batch = [
        fields
        for change in in_ledger_order
        if record or change.ledger_kind == "top_buffer"
        for fields in _ledger_fields(tracing, change)
    ]
    if batch:
        ledger.record_many(session, batch)
    for change in changes:
        if change.ledger_kind == "top_buffer":
            continue
        if change.ledger_kind == "deferred_option":
            if not control.exists(change.file):
                raise KnobError("options: %r is not an option of the tracer set here" % (change.knob.split("/", 1)[1]))
            current = (control.read(change.file) or "").strip()
            if current == change.value:
                continue
            change.original = current
            change.ledger_kind = "knob"
            if record:
                ledger.record_many(session, _ledger_fields(tracing, change))
        if change.ledger_kind == "pid_replace":
            transaction.replace_list(change.file, change.value, " ".join(change.before))
        elif change.ledger_kind == "knob":
            transaction.write(change.file, change.value, change.original)
        elif change.ledger_kind == "list_add":
            transaction.write(change.file, change.value, "!" + change.ledger_value)
        else:  # list_remove
            transaction.write(change.file, change.value, change.ledger_value)


def _ledger_fields(tracing: TracingDir, change: Change) -> list[dict]:
    """The ledger entries that record `change` (none for a deferred option, until its
    original is known). `top_buffer`: the top level's buffer size that an instance
    resize freezes, recorded even in an instance tracefleet created."""
    if change.ledger_kind == "top_buffer":
        return [dict(kind="knob", instance=None, file="buffer_size_kb", original=change.original)]
    if change.ledger_kind == "deferred_option":
        return []
    instance = tracing.instance
    file_name = os.path.relpath(change.file, tracing.rel()) if instance else change.file
    if change.ledger_kind == "knob":
        if change.original is None:
            return []
        return [dict(kind="knob", instance=instance, file=file_name, original=change.original)]
    if change.ledger_kind == "pid_replace":
        return [
            dict(kind="list_remove", instance=instance, file=file_name, value=pid)
            for pid in change.ledger_value.split()
        ]
    return [dict(kind=change.ledger_kind, instance=instance, file=file_name, value=change.ledger_value)]


def _undo_knob(top: TracingDir, ledger: Ledger, entry: dict) -> None:
    top.instance_dir(entry.get("instance")).write(entry["file"], entry["original"])


def _undo_list_add(top: TracingDir, ledger: Ledger, entry: dict) -> None:
    tracing = top.instance_dir(entry.get("instance"))
    if os.path.basename(entry["file"]) in PID_FILES + NOTRACE_PID_FILES:
        # No removal syntax for pids: write back the others.
        remaining = [pid for pid in _entries(tracing, entry["file"]) if pid not in ("no pid", entry["value"])]
        tracing.replace_list(entry["file"], " ".join(remaining))
    else:
        tracing.write(entry["file"], "!" + entry["value"])


def _undo_list_remove(top: TracingDir, ledger: Ledger, entry: dict) -> None:
    top.instance_dir(entry.get("instance")).write(entry["file"], entry["value"])


LEDGER_KINDS = {
    "knob": LedgerKind(
        lambda entry: "restore %s of %s to %r" % (entry["file"], place(entry), entry["original"]), _undo_knob
    ),
    "list_add": LedgerKind(
        lambda entry: "remove %r from %s of %s" % (entry["value"], entry["file"], place(entry)), _undo_list_add
    ),
    "list_remove": LedgerKind(
        lambda entry: "put %r back into %s of %s" % (entry["value"], entry["file"], place(entry)), _undo_list_remove
    ),
}


def _report(changes: list[Change]) -> tuple[dict, dict]:
    """(before, after) of the changed knobs; list options as the entries added and removed."""
    before: dict = {}
    after: dict = {}
    for change in changes:
        if change.ledger_kind == "top_buffer":
            continue
        if change.ledger_kind in ("list_add", "list_remove", "pid_replace"):
            entry = after.setdefault(change.knob, {"added": [], "removed": []})
            key = "added" if change.ledger_kind == "list_add" else "removed"
            entry[key].extend(
                change.ledger_value.split() if change.ledger_kind == "pid_replace" else [change.ledger_value]
            )
        else:
            before[change.knob] = change.before
            after[change.knob] = change.after
    return before, after


def configure(params: dict, check_mode: bool, diff: bool) -> dict:
    """The tracer task: plan every knob asked for, then write the difference, with
    the ledger records, and everything put back if the kernel refuses a write."""
    refuse_control_characters(params)
    tracing = open_instance(params["tracefs_path"], params["instance"])
    place_text = dir_place(tracing)
    try:
        changes = plan_knobs(tracing, params)
    except KnobError as exc:
        raise TaskError("%s (in %s); nothing was changed" % (exc, place_text)) from None
    with Ledger(params["ledger_path"], dry_run=check_mode) as ledger:
        # The changes to an instance tracefleet created go away with it: not recorded.
        record = tracing.instance is None or not ledger.owns_instance(tracing.instance)

        def apply(transaction: Transaction) -> None:
            apply_knobs(tracing, changes, transaction, ledger, params["session"], record)

        transaction = apply_with_rollback(
            tracing,
            ledger,
            check_mode,
            apply,
            lambda exc, transaction: ("%s (in %s)" % (exc, place_text), {"changes": transaction.done}),
            (ControlError, KnobError),
        )
    before, after = _report(changes)
    result = dict(changed=bool(transaction.done), before=before, after=after, changes=transaction.done)
    if diff:
        result["diff"] = {"before": before, "after": after}
    return result
