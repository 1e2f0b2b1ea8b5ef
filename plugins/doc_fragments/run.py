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
    type: path
    required: true
"""
