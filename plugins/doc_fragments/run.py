# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The run directory that the controller-side modules of a run (run_report,
    # perfetto_export, run_sample, run_failures) work on.
    DOCUMENTATION = r"""
options:
  run_dir:
    description:
      - The run's directory on the controller, C(<dest>/<run_id>), which is the directory of the
        C(manifest) path that M(tracefleet.ftrace.trace_capture) returns.
      - A relative path is relative to the directory C(ansible-playbook) was started in.
      - The run's manifest is read from the per-host records under C(<run_dir>/.records/) that
        the run's writers keep, and C(<run_dir>/manifest.json) is brought up to date with them
        (outside check mode) when a writer was killed before it could rewrite it. A run without
        records (copied without its hidden files) is read from its C(manifest.json).
    type: path
    required: true
"""
