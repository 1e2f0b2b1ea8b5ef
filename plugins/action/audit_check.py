# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""audit_check: judge a registered tracefs_info result against a policy, on the
controller. It never contacts the host."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _audit

ARGUMENT_SPEC = dict(
    facts=dict(type="dict", required=True),
    policy=dict(type="dict", default={}),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            result.update(_audit.audit(args["facts"], args["policy"]))
        except _audit.AuditError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        result["changed"] = False
        return result
