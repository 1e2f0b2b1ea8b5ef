# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the state modules' tests share: a small tracefs tree to run on, and a runner
that calls a module's main() the way ansible does."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

# One event, one tracer besides nop and one filterable function: enough for
# trace_instance, tracer, trace_event and teardown to each change something.
STATE_FILES = {
    "trace": "",
    "error_log": "",
    "current_tracer": "nop\n",
    "tracing_on": "1\n",
    "available_tracers": "function nop\n",
    "trace_clock": "[local] global mono\n",
    "buffer_size_kb": "7 (expanded: 1408)\n",
    "set_event": "",
    "dynamic_events": "",
    "available_filter_functions": "vfs_read\n",
    "set_ftrace_filter": "",
    "events/sched/sched_switch/enable": "0\n",
    "events/sched/sched_switch/filter": "none\n",
    "events/sched/sched_switch/trigger": "# Available triggers:\n",
}


@pytest.fixture
def state_tree(fake_host):
    """The fake tracefs mounted with STATE_FILES and one CPU; its tracing directory."""
    fake_host.mount_tracefs(STATE_FILES)
    (fake_host.tracing / "per_cpu" / "cpu0").mkdir(parents=True)
    return fake_host.tracing


@pytest.fixture
def run_module(capsys, tmp_path):
    """run_module(module, args): the result of the module's main() with `args`, its
    ledger under tmp_path unless `args` names one."""

    def run(module, args) -> dict:
        args = dict({"ledger_path": str(tmp_path / "ledger.json")}, **args)
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run
