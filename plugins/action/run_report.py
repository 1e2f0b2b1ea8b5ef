# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""run_report: write a capture run's HTML report on the controller, from the run
directory trace_capture filled. It never contacts a host."""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _run_report, _runs
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._controller_action import (
    ControllerAction,
)

ARGUMENT_SPEC = dict(
    run_dir=dict(type="path", required=True),
    title=dict(type="str"),
    audit=dict(type="path"),
    top_events=dict(type="int", default=10),
)


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, args: dict, check_mode: bool) -> dict:
        # Relative paths are relative to the directory ansible-playbook was started in.
        run_dir = os.path.abspath(args["run_dir"])
        if not check_mode and os.path.isdir(run_dir):
            # A no-op unless a writer of the run was killed before it rewrote
            # manifest.json: the run's end brings it up to date with the records.
            _runs.refresh_manifest(run_dir)
        audit = os.path.abspath(args["audit"]) if args["audit"] else None
        report = _run_report.write_report(
            run_dir, title=args["title"], audit=audit, top=args["top_events"], dry_run=check_mode
        )
        if report["changed"]:
            action = "would write" if check_mode else "wrote"
        else:
            action = "up to date:"
        return dict(
            report,
            msg="%s %s: %d host(s), %d capture(s), %d events, %d lost%s%s"
            % (
                action,
                report["path"],
                report["hosts"],
                report["captures"],
                report["events"],
                report["lost_events"],
                ", %d failed host(s)" % report["failed_hosts"] if report["failed_hosts"] else "",
                "; %d problem(s): %s" % (len(report["problems"]), "; ".join(report["problems"]))
                if report["problems"]
                else "",
            ),
        )
