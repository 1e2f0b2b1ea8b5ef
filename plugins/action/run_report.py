# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""run_report: write a capture run's HTML report on the controller, from the run
directory trace_capture filled. It never contacts a host."""

from __future__ import annotations

import os

from ansible.plugins.action import ActionBase

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _run_report

ARGUMENT_SPEC = dict(
    run_dir=dict(type="path", required=True),
    title=dict(type="str"),
    audit=dict(type="path"),
    top_events=dict(type="int", default=10),
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
        check_mode = bool(self._task.check_mode)
        # Relative paths are relative to the directory ansible-playbook was started in.
        run_dir = os.path.abspath(args["run_dir"])
        audit = os.path.abspath(args["audit"]) if args["audit"] else None
        try:
            report = _run_report.write_report(run_dir, title=args["title"], audit=audit,
                                              top=args["top_events"], dry_run=check_mode)
        except (_run_report.RunReportError, OSError) as exc:
            result.update(failed=True, msg=str(exc))
            return result
        if report["changed"]:
            action = "would write" if check_mode else "wrote"
        else:
            action = "up to date:"
        result.update(report)
        result["msg"] = "%s %s: %d host(s), %d capture(s), %d events, %d lost%s" % (
            action, report["path"], report["hosts"], report["captures"], report["events"],
            report["lost_events"],
            "; %d problem(s): %s" % (len(report["problems"]), "; ".join(report["problems"]))
            if report["problems"] else "")
        return result
