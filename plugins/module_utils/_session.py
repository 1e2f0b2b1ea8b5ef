# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Transitional: the old names of `_task` and `_instance.open_instance`, returning a
`Control` as before, for the capture code until it moves to those (then this file goes).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _instance, _task
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Control
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import COMMON_ARGS, TracingUnavailable

__all__ = ["COMMON_ARGS", "TracingUnavailable", "open_instance", "open_tracefs"]


def open_tracefs(tracefs_path: str | None) -> Control:
    return _task.open_tracefs(tracefs_path).control


def open_instance(tracefs_path: str | None, instance: str | None) -> Control:
    return _instance.open_instance(tracefs_path, instance).control
