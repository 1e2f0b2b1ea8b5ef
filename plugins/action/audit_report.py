# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""audit_report: write a compliance run's reports on the controller, from the
audit_check results of every host. It never contacts a host."""

from __future__ import annotations

import datetime
import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _audit
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._controller_action import (
    ControllerAction,
)

ARGUMENT_SPEC = dict(
    results=dict(type="dict", required=True),
    dest=dict(type="path", default="./audit"),
    formats=dict(type="list", elements="str", default=["json", "junit", "markdown"], choices=list(_audit.FORMATS)),
    run_id=dict(type="str"),
)


def default_run_id() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC
    ERRORS = (TracefleetError, OSError)

    def act(self, args: dict, check_mode: bool) -> dict:
        run_id = args["run_id"] or default_run_id()
        report = _audit.build_report(args["results"], _audit.check_run_id(run_id))
        # Relative to the directory ansible-playbook was started in.
        written = _audit.write_reports(report, os.path.abspath(args["dest"]), args["formats"], dry_run=check_mode)
        summary = report["summary"]
        return dict(
            changed=bool(written["written"]),
            run_id=run_id,
            path=written["path"],
            files=written["files"],
            written=written["written"],
            summary=summary,
            compliant=not summary["violating"] and not summary["no_result"],
            violating=summary["violating"],
            msg="%s: %d host(s), %d violating, %d without a result"
            % (
                (
                    "%s %d report file(s) in %s"
                    % ("would write" if check_mode else "wrote", len(written["written"]), written["path"])
                )
                if written["written"]
                else "reports in %s up to date" % written["path"],
                summary["hosts"],
                len(summary["violating"]),
                len(summary["no_result"]),
            ),
        )
