# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Dynamic probes (kprobe, kretprobe, uprobe, uretprobe): build a definition from
module input, validate it before the kernel sees it, compare it with what the kernel
reads back from dynamic_events, and find the instances a probe is enabled in.

The kernel normalises what it is given (a kretprobe reads back as `r10:` with its
default maxactive, uprobe offsets zero-padded to 16 hex digits, `sym+0` as `sym`), so
definitions are compared on a parsed, normalised form.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Control
from ansible_collections.tracefleet.ftrace.plugins.module_utils._elf import ElfError, ElfFile
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracer import available_functions

TYPES = ("kprobe", "kretprobe", "uprobe", "uretprobe")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KSYM = re.compile(
    r"^(?:(?P<module>[A-Za-z0-9_]+):)?(?P<symbol>[A-Za-z0-9_.]+)"
    r"(?:\+(?P<offset>0x[0-9a-fA-F]+|\d+))?$"
)
_USYM = re.compile(r"^(?P<symbol>[A-Za-z_][A-Za-z0-9_.@]*)(?:\+(?P<offset>0x[0-9a-fA-F]+|\d+))?$")
_UOFFSET = re.compile(r"^0x[0-9a-fA-F]+$|^\d+$")
_LINE = re.compile(
    r"^(?P<kind>[pr])(?P<maxactive>\d*):(?P<group>[^/\s]+)/(?P<event>\S+)\s+"
    r"(?P<target>\S+)(?P<args>.*)$"
)


class ProbeError(ValueError):
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

    def key(self) -> tuple:
        return (self.kind, self.group, self.event, _normal_target(self.target), tuple(self.args))


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
    match = _LINE.match(line.strip())
    if not match:
        return None
    return Definition(
        match.group("kind"),
        match.group("group"),
        match.group("event"),
        match.group("target"),
        match.group("args").split(),
    )


def read_definitions(control: Control) -> dict[tuple[str, str], tuple[Definition, str]]:
    """(group, event) -> (parsed definition, the kernel's line)."""
    found = {}
    for line in (control.read("dynamic_events") or "").splitlines():
        definition = parse_line(line)
        if definition is not None:
            found[(definition.group, definition.event)] = (definition, line.strip())
    return found


def validate_identifier(option: str, value: str) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ProbeError(
            "%s=%r is not a valid event name: use letters, digits and '_', "
            "starting with a letter or '_' (no spaces, no '/')" % (option, value)
        )
    return value


def _fetchargs(fetchargs: list[str]) -> list[str]:
    args = []
    for raw in fetchargs or []:
        text = str(raw).strip()
        if "=" not in text:
            raise ProbeError("fetchargs: %r must be NAME=FETCHARG, such as 'filename=+0($arg2):string'" % raw)
        name, value = text.split("=", 1)
        if not _IDENT.match(name):
            raise ProbeError("fetchargs: %r has an invalid name %r" % (raw, name))
        if not value or any(ch.isspace() for ch in value):
            raise ProbeError("fetchargs: %r has an empty fetcharg or one with spaces" % raw)
        args.append("%s=%s" % (name, value))
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


def kprobe_target(control: Control, kind: str, target: str, kallsyms: str = "/proc/kallsyms") -> str:
    match = _KSYM.match(target.strip())
    if not match:
        raise ProbeError("target=%r is not SYMBOL[+OFFSET] or MODULE:SYMBOL[+OFFSET]" % target)
    symbol = match.group("symbol")
    offset = int(match.group("offset"), 0) if match.group("offset") else 0
    if kind == "r" and offset:
        raise ProbeError(
            "target=%r: a kretprobe can only be placed at a function's entry (offset 0), not at +%d" % (target, offset)
        )
    if symbol not in available_functions(control) and not _kallsyms_has(symbol, kallsyms):
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
    path, where = target.rsplit(":", 1)
    if not path or not where:
        raise ProbeError("target=%r: a uprobe target is PATH:SYMBOL or PATH:0xOFFSET" % target)
    if not os.path.isabs(path):
        raise ProbeError("target=%r: the path %r must be absolute" % (target, path))
    try:
        elf = ElfFile(path)
        if _UOFFSET.match(where):
            offset = int(where, 0)
        else:
            match = _USYM.match(where)
            if not match:
                raise ProbeError("target=%r: %r is neither a symbol nor an offset" % (target, where))
            offset = elf.symbol_offset(match.group("symbol"))
            if match.group("offset"):
                offset += int(match.group("offset"), 0)
        elf.check_offset(offset)
    except ElfError as exc:
        raise ProbeError("target=%r: %s" % (target, exc)) from None
    return "%s:0x%x" % (os.path.realpath(path), offset)


def build(
    control: Control, probe_type: str, group: str, name: str, target: str | None, fetchargs: list[str] | None
) -> Definition:
    """Validate everything we can before the kernel sees it."""
    if probe_type not in TYPES:
        raise ProbeError("type=%r: use one of %s" % (probe_type, ", ".join(TYPES)))
    validate_identifier("group", group)
    validate_identifier("name", name)
    if not target or not str(target).strip():
        raise ProbeError("target is empty: give a kernel symbol (kprobes) or PATH:SYMBOL (uprobes)")
    kind = "r" if probe_type.endswith("retprobe") else "p"
    args = _fetchargs(fetchargs)
    if probe_type in ("uprobe", "uretprobe"):
        where = uprobe_target(str(target).strip())
    else:
        where = kprobe_target(control, kind, str(target).strip())
    if kind == "p" and any("$retval" in arg for arg in args):
        raise ProbeError(
            "fetchargs: $retval is only available to %s" % ("uretprobes" if probe_type == "uprobe" else "kretprobes")
        )
    return Definition(kind, group, name, where, args)


def tracing_dirs(control: Control) -> list[str | None]:
    """The top level (None) and every instance."""
    try:
        instances = sorted(os.listdir(control.path("instances")))
    except OSError:
        instances = []
    return [None] + instances


def enabled_in(control: Control, group: str, event: str) -> list[str | None]:
    """Tracing directories (None = top level) where the probe's event is enabled."""
    where = []
    for instance in tracing_dirs(control):
        base = os.path.join("instances", instance) if instance else ""
        text = control.read(os.path.join(base, "events", group, event, "enable"))
        if text is not None and text.strip().startswith("1"):
            where.append(instance)
    return where


def enable_file(instance: str | None, group: str, event: str) -> str:
    base = os.path.join("instances", instance) if instance else ""
    return os.path.join(base, "events", group, event, "enable")
