# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Dynamic probes (kprobe, kretprobe, uprobe, uretprobe): build a definition from
module input, validate it before the kernel sees it, compare it with what the kernel
reads back from dynamic_events, and find the instances a probe is enabled in.

The kernel normalises what it is given (a kretprobe reads back as `r10:` with its
default maxactive, uprobe offsets zero-padded to 16 hex digits, `sym+0` as `sym`), so
definitions are compared on a parsed, normalised form.

`ProbeSet` is the one place that defines, replaces and removes probes (used by the
trace_probe task, `ensure`, and by teardown through the `probe` ledger kind, which is
recorded and undone here).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._elf import ElfError, ElfFile
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._knob_changes import available_functions
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerKind
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import (
    TaskError,
    TracingUnavailable,
    open_tracefs,
    refuse_control_characters,
    require_owner,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

TYPES = ("kprobe", "kretprobe", "uprobe", "uretprobe")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KSYM = re.compile(r"(?:(?P<module>[A-Za-z0-9_]+):)?(?P<symbol>[A-Za-z0-9_.]+)")
_USYM = re.compile(r"[A-Za-z_][A-Za-z0-9_.@]*")
# An offset as the kernel reads it (kstrtoul base 0) and as tracefleet takes it: 0x-hex,
# or decimal without a leading zero (which the kernel would read as octal).
_OFFSET = re.compile(r"0[xX][0-9a-fA-F]+|0|[1-9][0-9]*")
# A field of a probe line: printable ASCII but '#' (see `probe_field`).
_FIELD = r'[!-"$-~]'
_LINE = re.compile(
    r"(?P<kind>[pr])(?P<maxactive>\d*):(?P<group>[!-\"$-.0-~]+)/(?P<event>%s+)[ \t]+"
    r"(?P<target>%s+)(?P<args>(?:[ \t]+%s+)*)" % (_FIELD, _FIELD, _FIELD)
)


class ProbeError(TracefleetError):
    """Bad input for a probe; nothing was written."""


class Definition:
    """A probe definition in normalised form."""

    def __init__(self, kind: str, group: str, event: str, target: str, args: list[str]) -> None:
        self.kind = kind  # 'p' or 'r'
        self.group = group
        self.event = event
        self.target = target  # 'sym', 'sym+16', 'mod:sym' or '/path:0x...'
        self.args = args  # ['name=fetcharg', ...]

    def line(self) -> str:
        """The text written to dynamic_events."""
        return " ".join(["%s:%s/%s" % (self.kind, self.group, self.event), self.target] + self.args)

    def fields(self) -> tuple:
        return (self.kind, self.group, self.event, self.target, tuple(self.args))

    def key(self) -> tuple:
        return (self.kind, self.group, self.event, _normal_target(self.target), tuple(self.args))

    def checked_line(self) -> str:
        """`line()`, after proving that the kernel's parser sees exactly this definition
        in it: one line that parses back (with the parser used for the kernel's
        read-back) to the same fields. Anything else is refused, never written."""
        line = self.line()
        parsed = parse_line(line) if "\n" not in line else None
        if parsed is None or parsed.fields() != self.fields():
            raise ProbeError(
                "refusing to write %r to dynamic_events: it does not read back as the one "
                "probe definition %s/%s that was asked for" % (line, self.group, self.event)
            )
        return line


def _normal_target(target: str) -> str:
    """`sym+0` -> `sym`; `sym+0x10` -> `sym+16`; `/p:0x00001234` -> `/p:0x1234`."""
    if target.startswith("/") and ":" in target:
        path, offset = target.rsplit(":", 1)
        offset = offset.split("(", 1)[0]
        try:
            return "%s:0x%x" % (os.path.realpath(path), int(offset, 16))
        except ValueError:
            return target
    if "+" in target:
        symbol, offset = target.split("+", 1)
        try:
            value = int(offset, 0)
        except ValueError:
            return target
        return symbol if value == 0 else "%s+%d" % (symbol, value)
    return target


def parse_line(line: str) -> Definition | None:
    """A line of dynamic_events (kprobes and uprobes; other kinds give None)."""
    match = _LINE.fullmatch(line.strip(" \t\n"))
    if not match:
        return None
    return Definition(
        match.group("kind"),
        match.group("group"),
        match.group("event"),
        match.group("target"),
        match.group("args").split(),
    )


def unfit_character(value: str) -> str | None:
    """What the kernel's probe parser would split, cut or misread in a field of a probe
    line, in words: whitespace (a second argument; a newline is a second command), '#'
    (the rest is a comment), and anything but printable ASCII (the kernel's isspace()
    takes byte 0xa0, part of many UTF-8 characters, for a space). None when fit."""
    for index, char in enumerate(value):
        if char == "#" or not ("!" <= char <= "~"):
            return (
                "%r at position %d cannot be part of a probe definition (the kernel splits a "
                "definition at whitespace and newlines, cuts it at '#', and takes only printable "
                "ASCII)" % (char, index)
            )
    return None


def probe_field(option: str, value: str) -> str:
    """`value` when it can be one field of a probe line, else ProbeError naming `option`."""
    if not isinstance(value, str) or not value:
        raise ProbeError("%s=%r is empty" % (option, value))
    problem = unfit_character(value)
    if problem is not None:
        raise ProbeError("%s=%r: %s" % (option, value, problem))
    return value


def validate_identifier(option: str, value: str) -> str:
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise ProbeError(
            "%s=%r is not a valid event name: use letters, digits and '_', "
            "starting with a letter or '_' (no spaces, no '/')" % (option, value)
        )
    return value


def parse_offset(option: str, value: str, text: str) -> int:
    """An offset of a probe target: 0x-hex or decimal, as the kernel reads it."""
    if not _OFFSET.fullmatch(text):
        raise ProbeError(
            "%s=%r: the offset %r must be hexadecimal with 0x (such as 0x10) or decimal "
            "without leading zeros (such as 16); the kernel would read a leading 0 as octal" % (option, value, text)
        )
    return int(text, 0)


def _fetchargs(fetchargs: list[str] | None) -> list[str]:
    args = []
    for index, raw in enumerate(fetchargs or []):
        option = "fetchargs[%d]" % index
        text = probe_field(option, str(raw))
        if "=" not in text:
            raise ProbeError("%s=%r must be NAME=FETCHARG, such as 'filename=+0($arg2):string'" % (option, raw))
        name, value = text.split("=", 1)
        if not _IDENT.fullmatch(name):
            raise ProbeError("%s=%r has an invalid name %r" % (option, raw, name))
        if not value:
            raise ProbeError("%s=%r has an empty fetcharg" % (option, raw))
        args.append(text)
    names = [arg.split("=", 1)[0] for arg in args]
    if len(set(names)) != len(names):
        raise ProbeError("fetchargs: argument names must be unique, got %s" % ", ".join(names))
    return args


def _kallsyms_has(symbol: str, path: str = "/proc/kallsyms") -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == symbol and parts[1] in "tTwW":
                    return True
    except OSError:
        pass
    return False


def kprobe_target(tracing: TracingDir, kind: str, target: str, kallsyms: str = "/proc/kallsyms") -> str:
    probe_field("target", target)
    location, plus, offset_text = target.partition("+")
    match = _KSYM.fullmatch(location)
    if not match:
        raise ProbeError("target=%r is not SYMBOL[+OFFSET] or MODULE:SYMBOL[+OFFSET]" % target)
    symbol = match.group("symbol")
    offset = parse_offset("target", target, offset_text) if plus else 0
    if kind == "r" and offset:
        raise ProbeError(
            "target=%r: a kretprobe can only be placed at a function's entry (offset 0), not at +%d" % (target, offset)
        )
    if symbol not in available_functions(tracing) and not _kallsyms_has(symbol, kallsyms):
        raise ProbeError(
            "target=%r: kernel symbol %r does not exist (not in "
            "available_filter_functions or /proc/kallsyms)" % (target, symbol)
        )
    module = match.group("module")
    text = ("%s:%s" % (module, symbol)) if module else symbol
    return text + ("+%d" % offset if offset else "")


def uprobe_target(target: str) -> str:
    """`/path:symbol[+off]` or `/path:0xOFFSET` -> `/realpath:0xFILEOFFSET`."""
    if ":" not in target:
        raise ProbeError("target=%r: a uprobe target is PATH:SYMBOL or PATH:0xOFFSET" % target)
    path, location = target.rsplit(":", 1)
    if not path or not location:
        raise ProbeError("target=%r: a uprobe target is PATH:SYMBOL or PATH:0xOFFSET" % target)
    if not os.path.isabs(path):
        raise ProbeError("target=%r: the path %r must be absolute" % (target, path))
    probe_field("target", target)
    # What reaches the kernel is the resolved path: a clean link name must not carry a
    # hostile file name into the probe line.
    real = os.path.realpath(path)
    problem = unfit_character(real)
    if problem is not None:
        raise ProbeError("target=%r: the path resolves to %r, where %s" % (target, real, problem))
    try:
        with ElfFile(real) as elf:
            if _OFFSET.fullmatch(location) or location[:1].isdigit():
                offset = parse_offset("target", target, location)
            else:
                symbol, plus, offset_text = location.partition("+")
                if not _USYM.fullmatch(symbol):
                    raise ProbeError("target=%r: %r is neither a symbol nor an offset" % (target, location))
                extra = parse_offset("target", target, offset_text) if plus else 0
                offset = elf.symbol_offset(symbol) + extra
            elf.check_offset(offset)
    except ElfError as exc:
        raise ProbeError("target=%r: %s" % (target, exc)) from None
    return "%s:0x%x" % (real, offset)


def build(
    tracing: TracingDir, probe_type: str, group: str, name: str, target: str | None, fetchargs: list[str] | None
) -> Definition:
    """Validate everything we can before the kernel sees it, and prove the line we
    would write is the definition asked for."""
    if probe_type not in TYPES:
        raise ProbeError("type=%r: use one of %s" % (probe_type, ", ".join(TYPES)))
    validate_identifier("group", group)
    validate_identifier("name", name)
    if target is None or not str(target).strip():
        raise ProbeError("target is empty: give a kernel symbol (kprobes) or PATH:SYMBOL (uprobes)")
    target = str(target)
    kind = "r" if probe_type.endswith("retprobe") else "p"
    args = _fetchargs(fetchargs)
    if probe_type in ("uprobe", "uretprobe"):
        normal_target = uprobe_target(target)
    else:
        normal_target = kprobe_target(tracing, kind, target)
    if kind == "p" and any("$retval" in arg for arg in args):
        raise ProbeError(
            "fetchargs: $retval is only available to %s" % ("uretprobes" if probe_type == "uprobe" else "kretprobes")
        )
    definition = Definition(kind, group, name, normal_target, args)
    definition.checked_line()
    return definition


def removal_line(group: str, event: str) -> str:
    """What removes the probe GROUP/EVENT (and nothing else) from dynamic_events."""
    validate_identifier("group", group)
    validate_identifier("name", event)
    return "-:%s/%s" % (group, event)


class ProbeWriteError(TracefleetError):
    """A change to a probe the kernel refused, and where that left the probe: `state`
    says, from the kernel's own read-back, what is defined and enabled now."""

    def __init__(self, failure: ControlError, state: str) -> None:
        super().__init__("%s; %s" % (failure, state))
        self.failure = failure
        self.state = state


class ProbeSet:
    """The dynamic probes of one tracefs (its dynamic_events), and the tracing
    directories their events are enabled in. `top` is the tracefs top level."""

    def __init__(self, top: TracingDir) -> None:
        self.top = top

    def definitions(self) -> dict[tuple[str, str], tuple[Definition, str]]:
        """(group, event) -> (parsed definition, the kernel's line)."""
        found = {}
        for line in (self.top.read("dynamic_events") or "").split("\n"):
            definition = parse_line(line)
            if definition is not None:
                found[(definition.group, definition.event)] = (definition, line.strip())
        return found

    def get(self, group: str, event: str) -> tuple[Definition, str] | None:
        return self.definitions().get((group, event))

    def enabled_in(self, group: str, event: str) -> list[str | None]:
        """Tracing directories (None = top level) where the probe's event is enabled."""
        found = []
        for instance in [None] + self.top.instances():
            text = self.top.instance_dir(instance).read("events", group, event, "enable")
            if text is not None and text.strip().startswith("1"):
                found.append(instance)
        return found

    def _set_enabled(self, enabled: list[str | None], group: str, event: str, value: str) -> None:
        for instance in enabled:
            self.top.instance_dir(instance).write(os.path.join("events", group, event, "enable"), value)

    def _undefine(self, group: str, event: str, enabled: list[str | None]) -> None:
        """Disable the probe wherever it is enabled (removal fails with EBUSY otherwise),
        then remove its definition."""
        self._set_enabled(enabled, group, event, "0")
        self.top.write("dynamic_events", removal_line(group, event))

    def _put_back(self, old: Definition, enabled: list[str | None]) -> str:
        """After a refused change: define `old` again if it is gone and enable it where
        it was enabled. Returns what the kernel shows now, in words."""
        group, event = old.group, old.event
        problems = []
        if self.get(group, event) is None:
            try:
                self.top.write("dynamic_events", old.checked_line())
            except (ControlError, ProbeError) as exc:
                problems.append("defining it again failed: %s" % exc)
        if self.get(group, event) is not None:
            for instance in enabled:
                if instance not in self.enabled_in(group, event):
                    try:
                        self._set_enabled([instance], group, event, "1")
                    except ControlError as exc:
                        problems.append("enabling it again failed: %s" % exc)
        current = self.get(group, event)
        now_enabled = self.enabled_in(group, event) if current else []
        if current is None:
            return "the previous definition (%s) could not be put back: %s/%s is not defined now (%s)" % (
                old.line(),
                group,
                event,
                "; ".join(problems),
            )
        if current[0].key() != old.key() or set(now_enabled) != set(enabled):
            return "%s/%s now reads %r, enabled in %s (it was %r, enabled in %s)%s" % (
                group,
                event,
                current[1],
                ", ".join(_names(now_enabled)) or "no instance",
                old.line(),
                ", ".join(_names(enabled)) or "no instance",
                ": " + "; ".join(problems) if problems else "",
            )
        return "dynamic_events keeps the previous definition%s" % (
            ", enabled again in " + ", ".join(_names(enabled)) if enabled else ""
        )

    def define(
        self, ledger: Ledger, session: str, wanted: Definition, existing: tuple[Definition, str] | None, enabled: list
    ) -> None:
        """Define `wanted`; when a probe of that name exists, swap it and keep it enabled
        where it was. If the kernel refuses, the old definition is put back, and the
        ledger claims the probe only if what is defined now is tracefleet's: a probe
        someone else defined stays theirs (ProbeWriteError says what the kernel shows)."""
        group, event = wanted.group, wanted.event
        line = wanted.checked_line()
        owned_before = ledger.owns(kind="probe", group=group, event=event)
        ledger.record(session, kind="probe", group=group, event=event)
        if existing is None:
            try:
                self.top.write("dynamic_events", line)
            except ControlError as exc:
                ledger.forget_if_present(kind="probe", group=group, event=event)
                raise ProbeWriteError(exc, "dynamic_events was not changed") from None
            return
        try:
            self._undefine(group, event, enabled)
            self.top.write("dynamic_events", line)
        except ControlError as exc:
            state = self._put_back(existing[0], enabled)
            if not owned_before or self.get(group, event) is None:
                # The probe there now (if any) is the one that was there: not ours.
                ledger.forget_if_present(kind="probe", group=group, event=event)
            raise ProbeWriteError(exc, state) from None
        self._set_enabled(enabled, group, event, "1")

    def remove(self, ledger: Ledger, group: str, event: str, enabled: list[str | None]) -> None:
        """Remove the probe (disabled first where it is enabled) and its ledger entry.
        If the kernel refuses, the probe is enabled again where it was."""
        existing = self.get(group, event)
        try:
            self._undefine(group, event, enabled)
        except ControlError as exc:
            if existing is None:
                raise ProbeWriteError(exc, "%s/%s was not defined" % (group, event)) from None
            raise ProbeWriteError(exc, self._put_back(existing[0], enabled)) from None
        ledger.forget_if_present(kind="probe", group=group, event=event)


def _undo(top: TracingDir, ledger: Ledger, entry: dict) -> str | None:
    probes = ProbeSet(top)
    if probes.get(entry["group"], entry["event"]) is None:
        return "probe %s/%s was already gone" % (entry["group"], entry["event"])
    probes.remove(ledger, entry["group"], entry["event"], probes.enabled_in(entry["group"], entry["event"]))
    return None


LEDGER_KINDS = {"probe": LedgerKind(lambda entry: "remove probe %s/%s" % (entry["group"], entry["event"]), _undo)}


def _names(enabled: list[str | None]) -> list[str]:
    return ["top" if instance is None else instance for instance in enabled]


def ensure(params: dict, check_mode: bool, diff: bool) -> dict:
    """The trace_probe task: the probe GROUP/NAME defined as asked, or absent."""
    group, name, force = params["group"], params["name"], params["force"]
    refuse_control_characters(params)
    try:
        validate_identifier("group", group)
        validate_identifier("name", name)
        top = open_tracefs(params["tracefs_path"])
        wanted = None
        if params["state"] == "present":
            wanted = build(top, params["type"], group, name, params["target"], params["fetchargs"])
    except (ProbeError, TracingUnavailable) as exc:
        raise TaskError("%s; dynamic_events was not changed" % exc) from None

    probes = ProbeSet(top)
    existing = probes.get(group, name)
    before_line = existing[1] if existing else None
    enabled = probes.enabled_in(group, name) if existing else []
    changed = False
    written = None
    try:
        with Ledger(params["ledger_path"], dry_run=check_mode) as ledger:
            owned = ledger.owns(kind="probe", group=group, event=name)
            if wanted is not None and (existing is None or existing[0].key() != wanted.key()):
                if existing is not None:
                    require_owner(
                        owned,
                        force,
                        "%s/%s exists with another definition (%s) and tracefleet did not "
                        "create it; set force=true to replace it" % (group, name, before_line),
                    )
                changed, written = True, wanted.line()
                if not check_mode:
                    probes.define(ledger, params["session"], wanted, existing, enabled)
                owned = True
            elif wanted is None and existing is not None:
                if enabled and not force:
                    raise TaskError(
                        "%s/%s is enabled in %s; disable it there first, or set force=true"
                        % (group, name, ", ".join(_names(enabled))),
                        enabled_in=_names(enabled),
                    )
                require_owner(
                    owned,
                    force,
                    "%s/%s was not created by tracefleet (not in the ledger); set force=true to remove it"
                    % (group, name),
                )
                changed, written = True, removal_line(group, name)
                if not check_mode:
                    probes.remove(ledger, group, name, enabled)
                owned, enabled = False, []
    except ProbeWriteError as exc:
        raise TaskError("%s/%s: %s" % (group, name, exc), error_log=exc.failure.error_log) from None

    if check_mode:
        after_line = (
            written if written and not written.startswith("-:") else (before_line if wanted is not None else None)
        )
    else:
        current = probes.get(group, name)
        after_line = current[1] if current else None
        enabled = probes.enabled_in(group, name) if current else []
    result: dict[str, Any] = dict(
        changed=changed, definition=after_line, written=written, enabled_in=_names(enabled), owned=owned
    )
    if diff:
        result["diff"] = {"before": (before_line or "") + "\n", "after": (after_line or "") + "\n"}
    return result
