# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""run_sample: record the host sample of a run in its manifest.json, on the controller.
It draws the sample again from the group, size and seed (plugin_utils/_sample), so
the record always matches its method, and never contacts a host."""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _runs, _sample
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._controller_action import (
    ControllerAction,
)

ARGUMENT_SPEC = dict(
    run_dir=dict(type="path", required=True),
    group=dict(type="str", required=True),
    hosts=dict(type="list", elements="str", required=True),
    size=dict(type="raw", required=True),
    seed=dict(type="raw", required=True),
)


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, args: dict, check_mode: bool) -> dict:
        # Relative paths are relative to the directory ansible-playbook was started in.
        run = os.path.abspath(args["run_dir"])
        sample = _sample.record(args["group"], args["hosts"], args["size"], args["seed"])
        manifest = os.path.join(run, _runs.MANIFEST)
        if check_mode:
            return dict(changed=False, sample=sample, manifest=manifest, msg="check mode: nothing recorded")
        if not os.path.isdir(run):
            raise _runs.RunError("run_dir=%r: no such directory (record a sample after a capture)" % args["run_dir"])
        changed = _runs.record_sample(run, sample)
        _runs.refresh_manifest(run)
        return dict(
            changed=changed,
            sample=sample,
            manifest=manifest,
            msg="%s the sample of %d of the %d host(s) of %s (seed %s) in %s"
            % (
                "recorded" if changed else "already recorded:",
                len(sample["hosts"]),
                sample["group_size"],
                sample["group"],
                sample["seed"],
                manifest,
            ),
        )
