# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""audit_check: judge a registered tracefs_info result against a policy, on the
controller. It never contacts the host."""

from __future__ import annotations

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _audit
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._controller_action import (
    ControllerAction,
)

ARGUMENT_SPEC = dict(
    facts=dict(type="dict", required=True),
    policy=dict(type="dict", default={}),
)


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC
    ERRORS = (TracefleetError,)

    def act(self, args: dict, check_mode: bool) -> dict:
        return dict(_audit.audit(args["facts"], args["policy"]), changed=False)
