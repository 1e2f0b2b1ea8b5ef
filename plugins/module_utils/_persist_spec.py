# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A boot-time tracing setup as trace_persist declares it: every option checked and
normalised into a `Spec` before any backend renders it or anything is written.

Probes are built by `_probes.build`, the same validation and definition building as
trace_probe (uprobe symbols resolved to file offsets now, at persist time). Event
names are kept as the kernel will be asked for them at the next boot: `system/event`
or a whole `system`, never a glob resolved against the running kernel, whose events
may differ from the next boot's.

`cmdline_obstacles` says what of a spec the kernel command line cannot carry (the
reason `backend: auto` picks the systemd unit instead).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _probes
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._instance import InstanceError, validate_name
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

# The setup's name: it names a systemd unit, files under /etc/tracefleet/persist and an
# initramfs hook that run-parts only runs when its name is letters, digits, '_' and '-'.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# An event system or event name as the kernel spells them (some systems have a '-').
_EVENT_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
# Trace option and clock names (trace_options, trace_clock); `no` clears an option.
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
TRIGGER_COMMANDS = (
    "traceon",
    "traceoff",
    "snapshot",
    "stacktrace",
    "enable_event",
    "disable_event",
    "enable_hist",
    "disable_hist",
    "hist",
)
# trace_instance= came with Linux 6.3, traceoff_after_boot with 6.15.
TRACE_INSTANCE_SINCE = (6, 3)
TRACEOFF_AFTER_BOOT_SINCE = (6, 15)
# The kernel copies trace_options= and trace_clock= into buffers of MAX_TRACER_SIZE
# (100) bytes, the last one a NUL: a longer value is cut short without a word.
MAX_TRACER_SIZE = 100
BACKENDS = ("auto", "cmdline", "unit", "bootconfig")
BOOTLOADERS = ("auto", "grub", "kernel-cmdline")


class PersistError(TracefleetError):
    """Bad input for a boot-time setup, or a host that cannot carry it; nothing was written."""


class EventSpec:
    """One event (or a whole system, `event` None) and what the next boot sets on it."""

    def __init__(
        self, option: str, system: str, event: str | None, enabled: bool, event_filter: str | None, triggers: list
    ) -> None:
        self.option = option
        self.system = system
        self.event = event
        self.enabled = enabled
        self.filter = event_filter
        self.triggers = triggers

    @property
    def name(self) -> str:
        return self.system if self.event is None else "%s/%s" % (self.system, self.event)

    @property
    def kernel_name(self) -> str:
        """As set_event, trace_event= and trace_instance= spell it."""
        return "%s:%s" % (self.system, self.event or "*")


class ProbeSpec:
    """A probe as trace_probe would define it (`definition`), and its type."""

    def __init__(self, option: str, probe_type: str, definition: _probes.Definition) -> None:
        self.option = option
        self.type = probe_type
        self.definition = definition

    @property
    def event_name(self) -> str:
        return "%s/%s" % (self.definition.group, self.definition.event)

    @property
    def is_uprobe(self) -> bool:
        return self.type in ("uprobe", "uretprobe")

    @property
    def binary(self) -> str | None:
        """The file a uprobe is placed in (its path, resolved at persist time)."""
        return self.definition.target.rsplit(":", 1)[0] if self.is_uprobe else None


class Spec:
    """Everything a setup declares, checked and normalised."""

    def __init__(self, name: str, instance: str | None) -> None:
        self.name = name
        self.instance = instance
        self.events: list[EventSpec] = []
        self.probes: list[ProbeSpec] = []
        self.buffer_size_kb: int | None = None
        self.trace_clock: str | None = None
        self.options: list[str] = []
        self.tracing_on: bool | None = None

    def enabled_names(self) -> set[str]:
        return {event.name for event in self.events if event.enabled}

    def probe_names(self) -> set[str]:
        return {probe.event_name for probe in self.probes}


def validate_setup_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PersistError(
            "name=%r is not a valid setup name: use up to 64 letters, digits and '_', starting "
            "with a letter or '_' (it names a systemd unit, files and an initramfs hook)" % (name,)
        )
    return name


def parse_release(release: str) -> tuple[int, int] | None:
    """`6.1.0-18-amd64` -> (6, 1); None when the release does not start with a version."""
    match = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _event(index: int, entry: dict) -> EventSpec:
    option = "events[%d]" % index
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise PersistError("%s.name is required (system/event, or a whole system)" % option)
    text = name.replace(":", "/", 1)
    system, slash, event = text.partition("/")
    if slash and event == "*":
        event = ""
    if not _EVENT_PART.fullmatch(system) or (event and not _EVENT_PART.fullmatch(event)) or (slash and "/" in event):
        raise PersistError(
            "%s.name=%r is not an event name: use system/event (such as sched/sched_switch) or a "
            "whole system (sched); globs are not kept for the next boot, whose kernel may offer "
            "other events than this one" % (option, name)
        )
    state = entry.get("state") or "enabled"
    if state not in ("enabled", "disabled"):
        raise PersistError("%s.state=%r: use enabled or disabled" % (option, state))
    event_filter = entry.get("filter")
    if event_filter is not None:
        event_filter = str(event_filter).strip(" ") or None
    triggers = []
    for number, raw in enumerate(entry.get("triggers") or []):
        trigger = str(raw).strip(" ")
        command = re.split(r"[:\s]", trigger, maxsplit=1)[0]
        if command not in TRIGGER_COMMANDS:
            raise PersistError(
                "%s.triggers[%d]=%r does not start with a trigger command (%s)"
                % (option, number, raw, ", ".join(TRIGGER_COMMANDS))
            )
        triggers.append(trigger)
    if not event and (event_filter or triggers):
        # A system has a filter file but no trigger file; the boot-time backends other
        # than the unit have neither: name the events.
        raise PersistError(
            "%s: a filter or triggers need one event (system/event), not the whole system %r" % (option, system)
        )
    return EventSpec(option, system, event or None, state == "enabled", event_filter, triggers)


def _probe(index: int, entry: dict, tracing: TracingDir) -> ProbeSpec:
    option = "probes[%d]" % index
    probe_type = entry.get("type") or "kprobe"
    try:
        definition = _probes.build(
            tracing,
            probe_type,
            entry.get("group") or "tracefleet",
            str(entry.get("name") or ""),
            entry.get("target"),
            entry.get("fetchargs"),
        )
    except _probes.ProbeError as exc:
        raise PersistError("%s: %s" % (option, exc)) from None
    return ProbeSpec(option, probe_type, definition)


def _options(values: list) -> list[str]:
    options: list[str] = []
    for index, raw in enumerate(values or []):
        text = str(raw).strip(" ")
        if not _WORD.fullmatch(text):
            raise PersistError(
                "options[%d]=%r is not a trace option name (letters, digits, '_' and '-'; "
                "'no' in front clears it)" % (index, raw)
            )
        plain = text[2:] if text.startswith("no") else text
        for earlier in options:
            if (earlier[2:] if earlier.startswith("no") else earlier) == plain:
                raise PersistError("options: %r and %r set the same option twice" % (earlier, text))
        options.append(text)
    return options


def build(params: dict, tracing: TracingDir) -> Spec:
    """The setup `params` declares; PersistError names the option, the value and why.
    `tracing` is the running kernel's tracefs (or a directory that does not exist):
    kprobe symbols and the trace clock are checked against it where it has them."""
    name = validate_setup_name(params["name"])
    try:
        instance = validate_name(params.get("instance"))
    except InstanceError as exc:
        raise PersistError(str(exc)) from None
    spec = Spec(name, instance)
    seen: dict[str, str] = {}
    for index, entry in enumerate(params.get("events") or []):
        event = _event(index, entry)
        if event.name in seen:
            raise PersistError("%s: %s is already declared by %s" % (event.option, event.name, seen[event.name]))
        seen[event.name] = event.option
        spec.events.append(event)
    probes_seen: dict[str, str] = {}
    for index, entry in enumerate(params.get("probes") or []):
        probe = _probe(index, entry, tracing)
        if probe.event_name in probes_seen:
            raise PersistError(
                "%s: %s is already declared by %s" % (probe.option, probe.event_name, probes_seen[probe.event_name])
            )
        probes_seen[probe.event_name] = probe.option
        spec.probes.append(probe)
    size = params.get("buffer_size_kb")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise PersistError("buffer_size_kb=%r: a positive whole number of KiB per CPU is expected" % (size,))
        spec.buffer_size_kb = size
    clock = params.get("trace_clock")
    if clock is not None:
        if not _WORD.fullmatch(str(clock)):
            raise PersistError("trace_clock=%r is not a clock name (such as global, mono or boot)" % (clock,))
        offered = (tracing.read("trace_clock") or "").replace("[", " ").replace("]", " ").split()
        if offered and clock not in offered:
            raise PersistError("trace_clock=%r: the running kernel offers %s" % (clock, ", ".join(offered)))
        spec.trace_clock = str(clock)
    spec.options = _options(params.get("options") or [])
    spec.tracing_on = params.get("tracing_on")
    if not (spec.events or spec.probes or spec.instance or spec.options) and all(
        value is None for value in (spec.buffer_size_kb, spec.trace_clock, spec.tracing_on)
    ):
        raise PersistError(
            "nothing to set up at boot: declare events, probes, an instance or a knob "
            "(buffer_size_kb, trace_clock, options, tracing_on), or use state=absent"
        )
    return spec


def cmdline_obstacles(spec: Spec, release: tuple[int, int] | None) -> list[str]:
    """What in `spec` the kernel command line cannot say, one reason each (empty: all of it can)."""
    reasons = []
    where = "the running kernel is %d.%d" % release if release else "the running kernel's version is unknown"
    for probe in spec.probes:
        if probe.is_uprobe:
            reasons.append("%s: %ss cannot be defined on the kernel command line" % (probe.option, probe.type))
        elif any(char in " ".join(probe.definition.args) for char in ",;"):
            reasons.append(
                "%s.fetchargs: kprobe_event= turns every ',' into a space and splits probes at ';'" % probe.option
            )
        if spec.instance is not None:
            reasons.append(
                "%s: kprobe_event= enables its probes at the top level, not in instance %s"
                % (probe.option, spec.instance)
            )
        elif probe.event_name not in spec.enabled_names():
            reasons.append(
                "%s: kprobe_event= enables every probe it defines; list %s in events (enabled) "
                "to have it so" % (probe.option, probe.event_name)
            )
    for event in spec.events:
        if event.filter:
            reasons.append("%s.filter: event filters cannot be set on the kernel command line" % event.option)
        if event.triggers:
            reasons.append("%s.triggers: this module does not set triggers on the kernel command line" % event.option)
    if spec.instance is not None:
        if release is None or release < TRACE_INSTANCE_SINCE:
            reasons.append(
                "instance: trace_instance= came with Linux %d.%d, and %s" % (TRACE_INSTANCE_SINCE + (where,))
            )
        for option in ("buffer_size_kb", "trace_clock"):
            if getattr(spec, option) is not None:
                reasons.append("%s: the kernel command line sets it for the top level only, not an instance" % option)
        if spec.tracing_on is False:
            # A new instance records (tracing_on 1) by itself: only off needs saying.
            reasons.append("tracing_on=false: the kernel command line turns the top level off, not an instance")
        if spec.options:
            reasons.append("options: the kernel command line sets them for the top level only, not an instance")
    else:
        if spec.tracing_on is False and (release is None or release < TRACEOFF_AFTER_BOOT_SINCE):
            reasons.append(
                "tracing_on=false: traceoff_after_boot came with Linux %d.%d, and %s"
                % (TRACEOFF_AFTER_BOOT_SINCE + (where,))
            )
        if len(",".join(spec.options)) >= MAX_TRACER_SIZE:
            reasons.append("options: trace_options= takes fewer than %d characters" % MAX_TRACER_SIZE)
    return reasons
