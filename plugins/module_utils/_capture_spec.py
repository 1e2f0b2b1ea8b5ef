# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_capture's options, shared by its action plugin (controller) and its module
(target), so that neither imports the other.

  TARGET_OPTIONS      what the module works with on the traced host
  CONTROLLER_OPTIONS  what only the action plugin uses: where and how the file lands
  ARGUMENT_SPEC       what a task may set (both of the above): the action validates it
  MODULE_SPEC         what the module accepts: the target options and `_work_dir`, an
                      internal option the action sets to the task's temporary directory
                      (underscore-prefixed and undocumented)

The module's DOCUMENTATION describes the action and module as one task, so it
documents the controller options too; the action strips them before the module runs.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import COMMON_ARGS

TARGET_OPTIONS = dict(
    instance=dict(type="str"),
    state=dict(type="str", default="captured", choices=["captured", "started", "collected"]),
    duration=dict(type="float"),
    command=dict(type="str"),
    timeout=dict(type="float", default=600),
    allowed_rc=dict(type="list", elements="int", default=[0]),
    format=dict(type="str", default="dat", choices=["dat", "text"]),
    compress=dict(type="str", default="auto", choices=["auto", "zstd", "gzip", "none"]),
    clear=dict(type="bool", default=True),
    kallsyms=dict(type="bool", default=True),
    name=dict(type="str", default="trace"),
    **COMMON_ARGS,
)
CONTROLLER_OPTIONS = dict(
    dest=dict(type="path", default="traces"),
    run_id=dict(type="str"),
    transfer=dict(type="str", default="auto", choices=["auto", "fetch", "chunks"]),
)
ARGUMENT_SPEC = dict(TARGET_OPTIONS, **CONTROLLER_OPTIONS)
MODULE_SPEC = dict(TARGET_OPTIONS, _work_dir=dict(type="path"))
MUTUALLY_EXCLUSIVE = [("duration", "command")]

_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def module_args(args: dict) -> dict:
    """The options of a validated task that go to the module (those that are set)."""
    return {key: value for key, value in args.items() if key in TARGET_OPTIONS and value is not None}


def problem(params: dict) -> str | None:
    """What is wrong with a combination of options the argument spec cannot express."""
    if params["state"] != "captured" and (params["duration"] is not None or params["command"]):
        return "duration and command are for state=captured; with state=%s the window spans tasks" % params["state"]
    if not _FILE_NAME.match(params["name"]):
        return (
            "name=%r: use letters, digits, '.', '_' and '-', not starting with '.' (it names a file)" % params["name"]
        )
    if params["duration"] is not None and params["duration"] <= 0:
        return "duration=%s: must be more than 0 seconds" % params["duration"]
    return None
