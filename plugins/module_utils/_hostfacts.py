# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What tracefs_info reports: a host's mount, debugfs and lockdown facts (and what the
next boot mounts: `_tracefs_boot`, `_debugfs_boot`), the tracing state of the top
level or one instance, its drift from the kernel's defaults, and the ledger as it is
on disk. Read-only: nothing is mounted, written or locked.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils import (
    _debugfs_boot,
    _instance,
    _knob_state,
    _tracefs_boot,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import Host, read_host, usable
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

# The parts of the tracing state that need a usable tracefs.
PARTS = ("knobs", "events", "instances", "instance_events", "dynamic_events", "error_log", "drift")
GATHER_CHOICES = ("all", "mounts", "ledger") + PARTS
KNOB_KEYS = (
    "tracers",
    "current_tracer",
    "tracing_on",
    "buffer_size_kb",
    "buffer_size_raw",
    "buffer_subbuf_size_kb",
    "trace_clock",
    "trace_clocks",
    "options",
    "cpumask",
    "function_lists",
    "pid_lists",
)


class FactsError(TracefleetError):
    """The facts asked for cannot be gathered; `details` are extra keys of the failed result."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.details = details


def tracing_automount(host: Host) -> bool | None:
    """lstat does not trigger an automount; a mounted debugfs is needed to look."""
    for entry in host.mounts:
        if entry.fstype == "debugfs":
            return os.path.lexists(os.path.join(entry.mount_point, "tracing"))
    return None


def read_ledger(path: str) -> dict:
    """The ledger as it is on disk: dry_run neither creates nor locks anything."""
    result: dict = {"path": path, "exists": None, "error": None, "entries": [], "instances": [], "probe_groups": []}
    try:
        with Ledger(path, dry_run=True) as ledger:
            entries = ledger.entries
    except LedgerError as exc:
        result["error"] = str(exc)
        return result
    result["exists"] = os.path.isfile(path)
    result["entries"] = entries
    result["instances"] = sorted({entry["name"] for entry in entries if entry.get("kind") == "instance"})
    result["probe_groups"] = sorted({entry["group"] for entry in entries if entry.get("kind") == "probe"})
    return result


def instance_events(root: str, instances: list[str]) -> dict[str, list[str]]:
    """The enabled events of each instance, as system/event."""
    return {
        name: [line.replace(":", "/", 1) for line in TracingDir(root, name).lines("set_event")] for name in instances
    }


def _parts(gather: list[str]) -> set[str]:
    """The parts to gather: `all` is everything, and drift needs the tracing parts."""
    parts = set(gather)
    if "all" in parts:
        parts.add("ledger")
    if "all" in parts or "drift" in parts:
        parts.update(PARTS)
    return parts


def _tracing_state(result: dict, host: Host, root: str, instance: str | None, parts: set[str]) -> None:
    """Add the tracing parts asked for to `result` (tracefs at `root` is usable)."""
    if not TracingDir(root, instance).exists():
        raise FactsError(
            "instance=%r does not exist (no %s)" % (instance, TracingDir(root, instance).directory), **result
        )
    state = _knob_state.snapshot(TracingDir(root, instance))
    if "knobs" in parts:
        result.update((key, state[key]) for key in KNOB_KEYS)
    if "events" in parts:
        result["enabled_events"] = state["enabled_events"]
        result["event_settings"] = state["event_settings"]
    if "instances" in parts and instance is None:
        result["instances"] = state["instances"]
    if "instance_events" in parts and instance is None:
        result["instance_events"] = instance_events(root, state["instances"])
    if "dynamic_events" in parts and instance is None:
        result["dynamic_events"] = state["dynamic_events"]
    if "error_log" in parts:
        result["error_log"] = state["error_log"]
    if "drift" in parts:
        defaults = _knob_state.host_defaults(host.cmdline, top_level=instance is None, sysfs=host.path("/sys"))
        result["drift"] = _knob_state.drift(state, defaults)


def gather(instance: str | None, wanted: list[str], ledger_path: str) -> dict:
    """The tracefs_info result: the facts always gathered, then the parts asked for."""
    try:
        _instance.validate_name(instance)
    except _instance.InstanceError as exc:
        raise FactsError(str(exc)) from None
    parts = _parts(wanted)
    host = read_host("mount table")
    tracefs = host.tracefs()
    tracefs["boot"] = _tracefs_boot.boot_facts(host.root, host.mounts, tracefs["path"], host.cmdline)
    debugfs = host.debugfs()
    debugfs["boot"] = _debugfs_boot.boot_facts(host.root, debugfs["policy"])
    result = dict(
        changed=False,
        kernel_release=host.release,
        kernel_config=host.kconfig_source,
        tracefs=tracefs,
        debugfs=debugfs,
        tracing_automount=tracing_automount(host),
        lockdown=host.lockdown,
        lockdown_source=host.lockdown_source,
        usable=usable(tracefs["path"]),
        instance=instance,
    )
    if result["usable"] and parts & set(PARTS):
        _tracing_state(result, host, tracefs["path"], instance, parts)
    if "ledger" in parts:
        result["ledger"] = read_ledger(ledger_path)
    return result
