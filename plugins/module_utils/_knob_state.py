# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a tracing directory's knobs (top level or an instance), parsing the
kernel's formats, and finding drift: every knob that differs from the kernel's
defaults, the way `trace-cmd stat` shows a host that is not idle.

Read-only: nothing here writes a tracefs file (`_knob_changes` is the write side).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

# TRACE_BUF_SIZE_DEFAULT (kernel/trace/trace.c): 1441792 bytes per CPU.
DEFAULT_BUFFER_BYTES = 1441792
DEFAULT_BUFFER_KB = DEFAULT_BUFFER_BYTES // 1024
# A ring-buffer page (sub-buffer) carries a 16-byte header, so a buffer is allocated
# in pages of PAGE_SIZE - 16 bytes of data and reads back slightly larger once
# allocated (1408 -> 1410).
PAGE_SIZE = 4096
BUFFER_PAGE_HEADER = 16

# 6.8+: the size of the ring buffer's pages (sub-buffers) per tracing directory, in KiB.
# The kernel (buffer_subbuf_size_write, kernel/trace/trace.c) takes KiB, rounds up to
# a power-of-two number of memory pages, and refuses anything past 2**7 = 128 pages
# (and 0). Changing it clears that ring buffer.
SUBBUF_FILE = "buffer_subbuf_size_kb"
MAX_SUBBUF_ORDER = 7

# Default state of the generic trace options (kernel/trace/trace.h TRACE_ITER_*
# and TRACE_DEFAULT_FLAGS), as the lab's 6.1 kernel shows them on a fresh boot.
# Options not listed here are tracer-specific or version-specific and are not
# judged.
DEFAULT_OPTIONS = {
    "print-parent": True,
    "sym-offset": False,
    "sym-addr": False,
    "verbose": False,
    "raw": False,
    "hex": False,
    "bin": False,
    "block": False,
    "trace_printk": True,
    "annotate": True,
    "userstacktrace": False,
    "sym-userobj": False,
    "printk-msg-only": False,
    "context-info": True,
    "latency-format": False,
    "record-cmd": True,
    "record-tgid": False,
    "overwrite": True,
    "disable_on_free": False,
    "irq-info": True,
    "markers": True,
    "event-fork": False,
    "pause-on-trace": False,
    "hash-ptr": True,
    "function-trace": True,
    "function-fork": False,
    "display-graph": False,
    "stacktrace": False,
}

# Shared list files that are empty (or say so in a comment) by default.
FUNCTION_LISTS = ("set_ftrace_filter", "set_ftrace_notrace", "set_graph_function", "set_graph_notrace")
PID_LISTS = ("set_ftrace_pid", "set_ftrace_notrace_pid", "set_event_pid", "set_event_notrace_pid")

_BUFFER_RE = re.compile(r"\s*(\d+|X)\s*(?:\(expanded:\s*(\d+)\))?\s*")
_SIZE_RE = re.compile(r"(\d+)([kKmMgG]?)")


def parse_buffer_size(text: str | None) -> dict:
    """`1408`, `7 (expanded: 1408)` (not yet allocated), or `X` (CPUs differ)."""
    result: dict[str, Any] = {"kb": None, "expanded_kb": None, "per_cpu_differs": False, "raw": (text or "").strip()}
    if text is None:
        return result
    match = _BUFFER_RE.fullmatch(text)
    if not match:
        return result
    if match.group(1) == "X":
        result["per_cpu_differs"] = True
    else:
        result["kb"] = int(match.group(1))
    if match.group(2):
        result["expanded_kb"] = int(match.group(2))
    return result


def effective_buffer_kb(parsed: dict) -> int | None:
    """The per-CPU size the buffer has, or will have once tracing first uses it."""
    if parsed["per_cpu_differs"]:
        return None
    if parsed["expanded_kb"] is not None:
        return parsed["expanded_kb"]
    return parsed["kb"]


def parse_bracketed(text: str | None) -> tuple[str | None, list[str]]:
    """`local [global] counter` -> ('global', ['local', 'global', 'counter'])."""
    selected = None
    choices = []
    for word in (text or "").split():
        if word.startswith("[") and word.endswith("]"):
            word = word[1:-1]
            selected = word
        choices.append(word)
    return selected, choices


def parse_trace_options(text: str | None) -> dict[str, bool]:
    """`trace_options` lists every option, `noNAME` when it is off."""
    options = {}
    for word in (text or "").split():
        if word.startswith("no"):
            options[word[2:]] = False
        else:
            options[word] = True
    return options


def parse_cpulist(text: str) -> set[int]:
    """`0-3,5` -> {0, 1, 2, 3, 5}."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            cpus.update(range(int(low), int(high) + 1))
        else:
            cpus.add(int(part))
    return cpus


def parse_cpumask(text: str) -> int:
    """`ffffffff,00000003` (32-bit groups, most significant first) -> int."""
    return int(text.strip().replace(",", "") or "0", 16)


def allocated_kb(size_bytes: int, page_bytes: int = PAGE_SIZE) -> int:
    """What buffer_size_kb reads after the kernel allocated `size_bytes` per CPU in
    ring-buffer pages of `page_bytes` (the sub-buffer size where the kernel has one)."""
    page_data = page_bytes - BUFFER_PAGE_HEADER
    pages = -(-size_bytes // page_data)
    return pages * page_data // 1024


def system_page_size() -> int:
    """The memory page size of this host: a sub-buffer is a power of two of these."""
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return PAGE_SIZE


def subbuf_size_kb(wanted_kb: int, page_bytes: int) -> int | None:
    """The sub-buffer size in KiB that buffer_subbuf_size_kb reads after `wanted_kb` is
    written (rounded up to a power-of-two number of pages), or None when the kernel
    refuses it (0, or more than 128 pages)."""
    if wanted_kb < 1:
        return None
    pages = -(-wanted_kb * 1024 // page_bytes)
    order = (pages - 1).bit_length()
    if order > MAX_SUBBUF_ORDER:
        return None
    return (page_bytes << order) // 1024


def parse_subbuf_size(text: str | None) -> int | None:
    """buffer_subbuf_size_kb's reading (`4`), or None where it is missing or unreadable."""
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def parse_size(value: str) -> int | None:
    """Kernel size parameter (`trace_buf_size=10M`) in bytes."""
    match = _SIZE_RE.fullmatch(value.strip())
    if not match:
        return None
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(match.group(1)) * scale


class Defaults:
    """The kernel's defaults on this host, where boot parameters can change them."""

    def __init__(
        self,
        cmdline: dict,
        possible_cpus: set[int],
        clocksource: str | None,
        top_level: bool,
        page_bytes: int = PAGE_SIZE,
    ) -> None:
        size = parse_size(cmdline.get("trace_buf_size") or "") or DEFAULT_BUFFER_BYTES
        self.buffer_kb = size // 1024
        # Either reading is the default: before and after the buffer is allocated.
        self.buffer_kb_readings = (self.buffer_kb, allocated_kb(size))
        # A new buffer's sub-buffers are one memory page (6.8+).
        self.subbuf_kb = page_bytes // 1024
        self.cpumask = sum(1 << cpu for cpu in possible_cpus)
        clock = cmdline.get("trace_clock")
        if clock:
            self.clock = clock
        elif top_level and clocksource not in (None, "tsc"):
            # Without a stable TSC the kernel switches the top-level buffer to the
            # `global` clock at boot (tracing_set_default_clock); instances keep `local`.
            self.clock = "global"
        else:
            self.clock = "local"
        tracer = cmdline.get("ftrace")
        self.tracer = tracer or "nop"


def host_defaults(cmdline: dict, top_level: bool, sysfs: str = "/sys") -> Defaults:
    def read(path: str) -> str | None:
        try:
            with open(os.path.join(sysfs, path), encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return None

    possible = parse_cpulist(read("devices/system/cpu/possible") or "0")
    clocksource = read("devices/system/clocksource/clocksource0/current_clocksource")
    return Defaults(cmdline, possible, clocksource, top_level, system_page_size())


def snapshot(tracing: TracingDir) -> dict:
    """Every knob tracefleet reports, read in one pass."""
    current_clock, clocks = parse_bracketed(tracing.read("trace_clock"))
    buffer = parse_buffer_size(tracing.read("buffer_size_kb"))
    tracers = (tracing.read("available_tracers") or "").split()
    state = {
        "instance": tracing.instance,
        "path": tracing.directory,
        "tracers": tracers,
        "current_tracer": (tracing.read("current_tracer") or "").strip() or None,
        "tracing_on": (tracing.read("tracing_on") or "").strip() == "1",
        "buffer_size_kb": effective_buffer_kb(buffer),
        "buffer_size_raw": buffer["raw"],
        "buffer_subbuf_size_kb": parse_subbuf_size(tracing.read(SUBBUF_FILE)),
        "trace_clock": current_clock,
        "trace_clocks": clocks,
        "options": parse_trace_options(tracing.read("trace_options")),
        "cpumask": (tracing.read("tracing_cpumask") or "").strip() or None,
        "enabled_events": [line.replace(":", "/", 1) for line in tracing.lines("set_event")],
        "function_lists": {name: tracing.lines(name) for name in FUNCTION_LISTS if tracing.has(name)},
        "pid_lists": {
            name: [line for line in tracing.lines(name) if line != "no pid"] for name in PID_LISTS if tracing.has(name)
        },
        "error_log": tracing.lines("error_log") if tracing.has("error_log") else [],
    }
    if tracing.instance is None:
        state["instances"] = tracing.instances()
        state["dynamic_events"] = tracing.lines("dynamic_events")
    state["event_settings"] = _event_settings(tracing, state["enabled_events"])
    return state


def _event_settings(tracing: TracingDir, events: list[str]) -> dict:
    """Filters and triggers of the enabled events (the ones that matter for drift)."""
    settings = {}
    for name in events:
        base = os.path.join("events", name)
        event_filter = (tracing.read(os.path.join(base, "filter")) or "none").strip()
        triggers = tracing.lines(os.path.join(base, "trigger"))
        if event_filter != "none" or triggers:
            settings[name] = {"filter": None if event_filter == "none" else event_filter, "triggers": triggers}
    return settings


def drift(state: dict, defaults: Defaults) -> list[dict]:
    """Knobs that differ from the kernel's defaults, as {knob, value, default}."""
    found = []

    def add(knob: str, value, default) -> None:
        found.append({"knob": knob, "value": value, "default": default})

    if state["current_tracer"] not in (None, defaults.tracer):
        add("current_tracer", state["current_tracer"], defaults.tracer)
    if not state["tracing_on"]:
        add("tracing_on", False, True)
    if state["buffer_size_kb"] is None and state["buffer_size_raw"]:
        add("buffer_size_kb", state["buffer_size_raw"], defaults.buffer_kb)
    elif state["buffer_size_kb"] not in (None,) + defaults.buffer_kb_readings:
        add("buffer_size_kb", state["buffer_size_kb"], defaults.buffer_kb)
    if state.get("buffer_subbuf_size_kb") not in (None, defaults.subbuf_kb):
        add("buffer_subbuf_size_kb", state["buffer_subbuf_size_kb"], defaults.subbuf_kb)
    if state["trace_clock"] not in (None, defaults.clock):
        add("trace_clock", state["trace_clock"], defaults.clock)
    for option, value in sorted(state["options"].items()):
        if option in DEFAULT_OPTIONS and DEFAULT_OPTIONS[option] != value:
            add("options/" + option, value, DEFAULT_OPTIONS[option])
    if state["cpumask"] is not None and defaults.cpumask:
        try:
            if parse_cpumask(state["cpumask"]) != defaults.cpumask:
                add("tracing_cpumask", state["cpumask"], "%x" % defaults.cpumask)
        except ValueError:
            add("tracing_cpumask", state["cpumask"], "%x" % defaults.cpumask)
    for name, entries in sorted(state["function_lists"].items()):
        if entries:
            add(name, entries, [])
    for name, entries in sorted(state["pid_lists"].items()):
        if entries:
            add(name, entries, [])
    for event in state["enabled_events"]:
        add("events/%s/enable" % event, True, False)
    for event, settings in sorted(state["event_settings"].items()):
        if settings["filter"]:
            add("events/%s/filter" % event, settings["filter"], None)
        if settings["triggers"]:
            add("events/%s/trigger" % event, settings["triggers"], [])
    for instance in state.get("instances", []):
        add("instances/" + instance, "present", "absent")
    if state.get("dynamic_events"):
        add("dynamic_events", state["dynamic_events"], [])
    return found
