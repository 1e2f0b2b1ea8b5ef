# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tracefs instances: names, opening one, creation and removal with ownership in the
ledger (the `instance` ledger kind: recorded and undone here), and the
trace_instance task.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import errno
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerKind
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import (
    TaskError,
    open_tracefs,
    refuse_control_characters,
    require_owner,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class InstanceError(TracefleetError):
    """A bad instance name, a missing instance, or one the kernel keeps busy."""


def validate_name(name: str | None, option: str = "instance") -> str | None:
    """None (the top level) or a name that stays inside instances/."""
    if name is None:
        return None
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise InstanceError(
            "%s=%r is not a valid instance name: use up to 64 letters, digits, '_', '-' "
            "and '.', starting with a letter, digit or '_' (no '/', no '..')" % (option, name)
        )
    return name


def require(tracing: TracingDir, option: str = "instance") -> None:
    """Fail unless `tracing` (an instance; the top level always exists) exists."""
    if tracing.instance is not None and not tracing.exists():
        raise InstanceError(
            "%s=%r does not exist (no %s); create it with "
            "tracefleet.ftrace.trace_instance" % (option, tracing.instance, tracing.directory)
        )


def open_instance(tracefs_path: str | None, instance: str | None) -> TracingDir:
    """The tracing directory `instance` (None: the top level) of the usable tracefs,
    after checking that the name is valid and the instance exists. Raises
    InstanceError or TracingUnavailable."""
    validate_name(instance)
    tracing = open_tracefs(tracefs_path).instance_dir(instance)
    require(tracing)
    return tracing


def enabled_events(tracing: TracingDir) -> list[str]:
    """`system:event` lines of set_event in the tracing directory `tracing`."""
    text = tracing.read("set_event") or ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def create(tracing: TracingDir, ledger: Ledger, session: str) -> None:
    """mkdir the instance `tracing`, recorded in the ledger first."""
    ledger.record(session, kind="instance", name=tracing.instance)
    tracing.control.mkdir(tracing.rel())


def remove(tracing: TracingDir, ledger: Ledger) -> None:
    """Disable the instance's events one by one (an enabled probe would make rmdir
    fail with EBUSY), then rmdir it and forget its ledger entries."""
    name = tracing.instance
    if name is None:
        raise InstanceError("the top level of tracefs is not an instance: it cannot be removed")
    disabled: list[str] = []
    try:
        for event in enabled_events(tracing):
            tracing.write("set_event", "!" + event)
            disabled.append(event)
        tracing.control.rmdir(tracing.rel())
    except ControlError as exc:
        # The instance stays: so do its events, as they were.
        problems = []
        for event in disabled:
            try:
                tracing.write("set_event", event)
            except ControlError as again:
                problems.append(str(again))
        kept = "; its events were enabled again" if disabled and not problems else ""
        if problems:
            kept = "; enabling its events again failed: " + "; ".join(problems)
        if exc.errno == errno.EBUSY:
            raise InstanceError(
                "instance %r is busy: a process holds one of its files open (a reader of "
                "trace_pipe?) or a probe is enabled in it: %s%s" % (name, exc, kept)
            ) from None
        raise InstanceError("instance %r could not be removed: %s%s" % (name, exc, kept)) from None
    ledger.forget_instance_contents(name)
    ledger.forget_if_present(kind="instance", name=name)


def _undo(top: TracingDir, ledger: Ledger, entry: dict) -> str | None:
    instance = top.instance_dir(entry["name"])
    if not instance.exists():
        return "instance %s was already gone" % entry["name"]
    remove(instance, ledger)
    return None


LEDGER_KINDS = {"instance": LedgerKind(lambda entry: "remove instance %s" % entry["name"], _undo)}


def ensure(params: dict, check_mode: bool, diff: bool) -> dict:
    """The trace_instance task: the instance `params["name"]` present or absent."""
    refuse_control_characters(params)
    name: str = params["name"]
    validate_name(name, "name")
    tracing = open_tracefs(params["tracefs_path"]).instance_dir(name)
    try:
        with Ledger(params["ledger_path"], dry_run=check_mode) as ledger:
            existed = tracing.exists()
            owned = ledger.owns_instance(name)
            before = {"exists": existed, "owned": owned and existed}
            changed = False
            if params["state"] == "present" and not existed:
                changed = True
                if not check_mode:
                    create(tracing, ledger, params["session"])
                owned = True
            elif params["state"] == "absent" and existed:
                require_owner(
                    owned,
                    params["force"],
                    "name=%r: the instance exists but tracefleet did not create it "
                    "(not in the ledger %s); set force=true to remove it anyway" % (name, params["ledger_path"]),
                    path=tracing.directory,
                    exists=True,
                    owned=False,
                )
                changed = True
                if not check_mode:
                    remove(tracing, ledger)
                owned = False
            elif params["state"] == "absent":
                owned = False
    except TaskError:
        raise
    except TracefleetError as exc:
        raise TaskError("name=%r: %s" % (name, exc)) from None
    exists = tracing.exists() if not check_mode else params["state"] == "present"
    result = dict(changed=changed, path=tracing.directory, exists=exists, owned=owned)
    if diff:
        result["diff"] = {"before": before, "after": {"exists": exists, "owned": owned}}
    return result
