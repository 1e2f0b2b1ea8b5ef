# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""run_failures: record the hosts of a run that failed or were unreachable in its
manifest.json, on the controller (_runs.record_failures). What it is given comes from
the hosts' registered results, so it is checked as host data (_host_result.FAILURES).
It never contacts a host."""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _escape, _runs
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._controller_action import (
    ControllerAction,
)

SHOWN = 20  # host names listed in msg

ARGUMENT_SPEC = dict(
    run_dir=dict(type="path", required=True),
    failures=dict(type="dict", required=True),
)


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, args: dict, check_mode: bool) -> dict:
        # Relative paths are relative to the directory ansible-playbook was started in.
        run = os.path.abspath(args["run_dir"])
        manifest = os.path.join(run, _runs.MANIFEST)
        if os.path.lexists(run) and not os.path.isdir(run):
            raise _runs.RunError("run_dir=%r: not a directory" % args["run_dir"])
        if args["failures"] and not check_mode and not os.path.isdir(run):
            # Every host failed before a capture made the run: it is made here, as
            # trace_capture would (its name a run id, 0700).
            try:
                _runs.run_dir(os.path.dirname(run), os.path.basename(run))
            except _runs.RunError as exc:
                raise _runs.RunError(
                    "run_dir=%r: no such directory, and not one to make: %s" % (args["run_dir"], exc)
                ) from None
        records, changed = _runs.record_failures(run, args["failures"], dry_run=check_mode)
        if not check_mode:
            _runs.refresh_manifest(run)
        if not records:
            what = "no failed host to record"
        elif not changed:
            what = "already recorded: %d failed host(s)" % len(records)
        else:
            shown = ", ".join(changed[:SHOWN]) + (
                " and %d more" % (len(changed) - SHOWN) if len(changed) > SHOWN else ""
            )
            what = "%s %d failed host(s) (%s)" % (
                "would record" if check_mode else "recorded",
                len(changed),
                _escape.line(shown),
            )
        return dict(
            changed=bool(changed),
            failures=records,
            recorded=changed,
            manifest=manifest,
            msg="%s in %s" % (what, manifest),
        )
