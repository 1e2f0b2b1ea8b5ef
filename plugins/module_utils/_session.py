# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every state-changing tracing module shares: the common options, finding a
usable tracefs, and the ledger.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _instance
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Control
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import DEFAULT_PATH
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import Host, usable

COMMON_ARGS = dict(
    session=dict(type="str", default="default"),
    ledger_path=dict(type="path", default=DEFAULT_PATH),
    tracefs_path=dict(type="path"),
)


class TracingUnavailable(Exception):
    pass


def open_tracefs(tracefs_path: str | None) -> Control:
    """A Control on the usable tracefs: the one given, or the one the mount table names."""
    if tracefs_path is None:
        host = Host()
        state = host.tracefs()
        if not state["mounted"]:
            raise TracingUnavailable(
                "tracefs is not mounted on this host; mount it first with tracefleet.ftrace.tracefs"
            )
        tracefs_path = state["path"]
        if not usable(tracefs_path):
            if host.lockdown in ("confidentiality", "unknown"):
                raise TracingUnavailable(
                    "tracefs is mounted at %s but its files are missing: kernel lockdown (%s) "
                    "restricts tracefs on this host" % (tracefs_path, host.lockdown)
                )
            raise TracingUnavailable("tracefs at %s is not readable (use become)" % tracefs_path)
    elif not usable(tracefs_path):
        raise TracingUnavailable("tracefs_path=%s holds no usable tracing files" % tracefs_path)
    return Control(tracefs_path)


def open_instance(tracefs_path: str | None, instance: str | None) -> Control:
    """The usable tracefs, after checking that `instance` (None: the top level) is a
    valid name and exists. Raises InstanceError or TracingUnavailable."""
    _instance.validate_name(instance)
    control = open_tracefs(tracefs_path)
    _instance.require(control, instance)
    return control
