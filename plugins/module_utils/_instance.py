# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tracefs instances: names, paths, creation and removal with ownership in the ledger.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import (
    Control,
    ControlError,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class InstanceError(Exception):
    pass


def validate_name(name: str | None, option: str = "instance") -> str | None:
    """None (the top level) or a name that stays inside instances/."""
    if name is None:
        return None
    if not _NAME.match(name) or name in (".", ".."):
        raise InstanceError(
            "%s=%r is not a valid instance name: use up to 64 letters, digits, '_', '-' "
            "and '.', starting with a letter, digit or '_' (no '/', no '..')" % (option, name)
        )
    return name


def relative(instance: str | None, *parts: str) -> str:
    """Path of a control file relative to the tracefs root."""
    if instance is None:
        return os.path.join(*parts) if parts else ""
    return os.path.join("instances", instance, *parts)


def exists(control: Control, name: str) -> bool:
    return os.path.isdir(control.path(relative(name)))


def require(control: Control, name: str | None, option: str = "instance") -> None:
    if name is not None and not exists(control, name):
        raise InstanceError(
            "%s=%r does not exist (no %s); create it with "
            "tracefleet.ftrace.trace_instance" % (option, name, control.path(relative(name)))
        )


def enabled_events(control: Control, name: str | None) -> list[str]:
    text = control.read(relative(name, "set_event")) or ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def create(control: Control, ledger: Ledger, session: str, name: str) -> None:
    ledger.record(session, kind="instance", name=name)
    control.mkdir(relative(name))


def remove(control: Control, ledger: Ledger, name: str) -> None:
    """Disable the instance's events one by one (an enabled probe would make rmdir
    fail with EBUSY), then rmdir it and forget its ledger entries."""
    for event in enabled_events(control, name):
        control.write(relative(name, "set_event"), "!" + event)
    try:
        control.rmdir(relative(name))
    except ControlError as exc:
        if exc.errno == 16:
            raise InstanceError(
                "instance %r is busy: a process holds one of its files open (a reader of "
                "trace_pipe?) or a probe is enabled in it: %s" % (name, exc)
            ) from None
        raise
    ledger.forget_instance_contents(name)
    entry = ledger.find(kind="instance", name=name)
    if entry is not None:
        ledger.forget(entry)
