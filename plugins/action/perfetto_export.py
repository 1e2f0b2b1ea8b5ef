# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""perfetto_export: write a capture run as one Perfetto archive on the controller,
from the run directory trace_capture filled. It never contacts a host."""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _perfetto, _perfetto_archive, _runs
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._controller_action import (
    ControllerAction,
)

ARGUMENT_SPEC = dict(
    run_dir=dict(type="path", required=True),
    tasks=dict(type="dict", default={}),
)

HOW_TO_OPEN = "open https://ui.perfetto.dev, choose 'Open trace file' and pick %s"


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, args: dict, check_mode: bool) -> dict:
        # Relative paths are relative to the directory ansible-playbook was started in.
        run_dir = os.path.abspath(args["run_dir"])
        if not check_mode and os.path.isdir(run_dir):
            # A no-op unless a writer of the run was killed before it rewrote
            # manifest.json: the run's end brings it up to date with the records.
            _runs.refresh_manifest(run_dir)
        tasks = _perfetto.tasks_option(args["tasks"])
        result = _perfetto_archive.export(run_dir, tasks=tasks, dry_run=check_mode)
        if not result["files"]:
            action = "nothing exported"
        elif result["changed"]:
            action = "would write" if check_mode else "wrote"
        else:
            action = "up to date:"
        problems = result["problems"]
        summary = (
            "%s %s: %d host(s), %d file(s), %d events"
            % (action, result["path"], result["hosts"], len(result["files"]), result["events"])
            if result["files"]
            else "%s for %s" % (action, run_dir)
        )
        return dict(
            result,
            open_with=HOW_TO_OPEN % result["path"] if result["files"] else None,
            msg="%s%s" % (summary, "; %d problem(s): %s" % (len(problems), "; ".join(problems)) if problems else ""),
        )
