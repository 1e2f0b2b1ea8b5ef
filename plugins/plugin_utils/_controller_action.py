# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The base of the collection's controller-only actions (audit_check, audit_report,
run_report): no connection, no module on the host, arguments validated against the
subclass's ARGUMENT_SPEC, and expected errors (TracefleetError, OSError) turned into a
failed result.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError


class ControllerAction(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    ARGUMENT_SPEC: dict = {}
    # Errors that become `failed` with their text as the message: the collection's
    # own, and the controller's file system refusing something.
    ERRORS: tuple = (TracefleetError, OSError)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._VALID_ARGS = frozenset(cls.ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        """Validate, then call the subclass's `act(args, check_mode)`, which does the
        work and returns what goes into the task's result."""
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        try:
            result.update(self.act(args, bool(self._task.check_mode)))  # pylint: disable=no-member
        except self.ERRORS as exc:
            result.update(failed=True, msg=str(exc))
        return result
