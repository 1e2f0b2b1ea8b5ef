# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_capture's options, shared by its action plugin (controller) and its module
(target), so that neither imports the other.

  TARGET_OPTIONS      what the module works with on the traced host
  CONTROLLER_OPTIONS  what only the action plugin uses: where and how the file lands
  ARGUMENT_SPEC       what a task may set (both of the above): the action validates it
  MODULE_SPEC         what the module's argument spec declares: all of the above (the
                      module ignores the controller options) and `work_dir`, which the
                      action sets to the task's temporary directory (a task cannot set
                      it: the action's own validation refuses it)

The module's DOCUMENTATION describes the action and module as one task: it
documents every option of MODULE_SPEC, so documentation and argument spec agree.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import datetime
import math
import re
import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import control_character
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import COMMON_ARGS

TARGET_OPTIONS = dict(
    instance=dict(type="str"),
    state=dict(type="str", default="captured", choices=["captured", "started", "collected"]),
    duration=dict(type="float"),
    start_at=dict(type="raw"),
    command=dict(type="str"),
    timeout=dict(type="float", default=600),
    allowed_rc=dict(type="list", elements="int", default=[0]),
    format=dict(type="str", default="dat", choices=["dat", "text"]),
    compress=dict(type="str", default="auto", choices=["auto", "zstd", "zlib", "gzip", "none"]),
    file_version=dict(type="int", default=7, choices=[6, 7]),
    include_self=dict(type="bool", default=False),
    clear=dict(type="bool", default=True),
    kallsyms=dict(type="bool", default=True),
    name=dict(type="str", default="trace"),
    max_duration=dict(type="float", default=3600),
    max_bytes=dict(type="bytes", default="512M"),
    **COMMON_ARGS,
)
CONTROLLER_OPTIONS = dict(
    dest=dict(type="path", default="traces"),
    run_id=dict(type="str"),
    transfer=dict(type="str", default="auto", choices=["auto", "fetch", "chunks"]),
)
ARGUMENT_SPEC = dict(TARGET_OPTIONS, **CONTROLLER_OPTIONS)
MODULE_SPEC = dict(ARGUMENT_SPEC, work_dir=dict(type="path"))
MUTUALLY_EXCLUSIVE = [("duration", "command")]

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
MIN_BYTES = 1 << 20  # a budget smaller than this holds next to nothing


def module_args(args: dict) -> dict:
    """The options of a validated task that go to the module (those that are set)."""
    return {key: value for key, value in args.items() if key in TARGET_OPTIONS and value is not None}


def show(value: float) -> str:
    """A number of seconds as messages show it: 3600, 0.05, 1000000000, nan, inf."""
    return "%d" % value if math.isfinite(value) and value == int(value) else repr(value)


def _seconds(params: dict, option: str, limit: float | None) -> str | None:
    """What is wrong with a number of seconds, if anything: it must be finite, more than
    0, and (with a limit) no more than max_duration."""
    value = params[option]
    if not math.isfinite(value) or value <= 0:
        return "%s=%s: must be a finite number of seconds, more than 0" % (option, show(value))
    if limit is not None and value > limit:
        return "%s=%s: more than max_duration=%s seconds; raise max_duration to allow a longer window" % (
            option,
            show(value),
            show(limit),
        )
    return None


def problem(params: dict, given=()) -> str | None:
    """What is wrong with the options, as far as they can be judged without the host
    (the argument spec checked their types). None when nothing is. `given`: the
    options the task set itself (the action knows them; defaults are not a choice)."""
    state = params["state"]
    if state != "captured" and params["command"] is not None:
        return "command is for state=captured; with state=%s the window spans tasks" % state
    if state == "collected" and params["duration"] is not None:
        return "duration is for state=captured or started; a collected window already has its length"
    if params["start_at"] is not None:
        if state != "started":
            return "start_at is for state=started (arming a window that opens at that time), not state=%s" % state
        start_problem = _start_problem(params["start_at"], params["max_duration"])
        if start_problem:
            return start_problem
    if "file_version" in given and params["format"] != "dat":
        return "file_version=%r is for format=dat (a trace.dat's version); format=%s has no file version" % (
            params["file_version"],
            params["format"],
        )
    # The session names the window's ledger entries, which teardown finds by it.
    session_problem = control_character(params["session"] or "")
    if session_problem:
        return "session=%r: %s" % (params["session"], session_problem)
    if not _FILE_NAME.fullmatch(params["name"]):
        return (
            "name=%r: use letters, digits, '.', '_' and '-', not starting with '.' (it names a file)" % params["name"]
        )
    checks = [
        _seconds(params, "max_duration", None),
        _seconds(params, "timeout", None if params["command"] is None else params["max_duration"]),
    ]
    if params["duration"] is not None:
        checks.append(_seconds(params, "duration", params["max_duration"]))
    for check in checks:
        if check:
            return check
    if state == "captured" and params["duration"] is None and params["command"] is None:
        return "state=captured needs duration (seconds) or command (a workload) to end the window"
    if params["command"] is not None and (not params["command"].strip() or "\0" in params["command"]):
        return "command=%r: give a command line for /bin/sh -c, without NUL characters" % params["command"]
    if params["max_bytes"] < MIN_BYTES:
        return "max_bytes=%s: a capture needs a budget of at least %d bytes (1M)" % (params["max_bytes"], MIN_BYTES)
    return None


_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?")


def start_time(value) -> float | None:
    """start_at as seconds since the epoch: a number of them, or an ISO 8601 time with a
    UTC offset (2026-12-06T03:15:00Z, ...+01:00). Raises ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        seconds = float(value.strip())
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        stamp = datetime.datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            raise ValueError("no UTC offset")
        seconds = stamp.timestamp()
    else:
        raise ValueError("not a time")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("not a time")
    return seconds


def _start_problem(value, max_duration: float) -> str | None:
    """What is wrong with start_at, judged by this machine's clock."""
    try:
        seconds = start_time(value)
    except (ValueError, OverflowError):
        return (
            "start_at=%r: give a time of day as seconds since the epoch (1796536500.5) or in ISO 8601 with "
            "a UTC offset (2026-12-06T03:15:00Z)" % (value,)
        )
    ahead = (seconds or 0) - time.time()
    if math.isfinite(max_duration) and ahead > max_duration:
        return "start_at=%r is %d seconds ahead, more than max_duration=%s; raise max_duration to arm it" % (
            value,
            ahead,
            show(max_duration),
        )
    return None
