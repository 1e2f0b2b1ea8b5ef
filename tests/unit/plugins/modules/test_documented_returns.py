# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""RETURN says what the modules return: every key a run returns is documented (and its
documented `contains` where there is one), and every key documented as returned
`always` is there. Run on the fake tracefs tree; event names come back as system/event
even where the kernel's files spell them system:event."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _locate
from ansible_collections.tracefleet.ftrace.plugins.modules import (
    teardown,
    trace_event,
    trace_instance,
    tracefs_info,
    tracer,
)

# Keys AnsibleModule itself adds to every result.
COMMON = {"changed", "diff", "invocation", "warnings", "deprecations", "failed", "msg"}

FILES = {
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
def run(fake_host, monkeypatch, capsys, tmp_path):
    host = _locate.Host
    monkeypatch.setattr(_locate, "Host", lambda: host(str(fake_host.root)))
    fake_host.mount_tracefs(FILES)
    (fake_host.tracing / "per_cpu" / "cpu0").mkdir(parents=True)

    def run_module(module, args) -> dict:
        args = dict({"ledger_path": str(tmp_path / "ledger.json")}, **args)
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        result = json.loads(capsys.readouterr().out)
        assert not result.get("failed"), result.get("msg")
        return result

    return run_module


def check_documented(module, result: dict) -> None:
    documented = yaml.safe_load(module.RETURN)
    returned = set(result) - COMMON
    assert returned <= set(documented), "returned but not in RETURN"
    always = {key for key, doc in documented.items() if doc.get("returned") == "always"}
    assert always <= set(result), "documented as always returned but missing"
    for key in returned:
        contains = documented[key].get("contains")
        if contains and isinstance(result[key], dict):
            assert set(result[key]) <= set(contains), "%s has keys RETURN does not list" % key


def test_state_modules_return_what_they_document(run):
    check_documented(trace_instance, run(trace_instance, {"name": "tf"}))
    check_documented(tracer, run(tracer, {"instance": "tf", "tracing_on": False, "_ansible_diff": True}))
    events = run(trace_event, {"events": [{"name": "sched:sched_switch", "filter": "prev_pid != 0"}]})
    check_documented(trace_event, events)
    assert list(events["events"]) == ["sched/sched_switch"]
    check_documented(teardown, run(teardown, {}))


def test_tracefs_info_returns_what_it_documents(run, fake_host):
    fake_host.tracefs_write("set_event", "sched:sched_switch\n")
    fake_host.tracefs_write("events/sched/sched_switch/enable", "1\n")
    fake_host.tracefs_write("events/sched/sched_switch/filter", "prev_pid == 1\n")
    (fake_host.tracing / "instances" / "tf").mkdir()
    (fake_host.tracing / "instances" / "tf" / "set_event").write_text("sched:sched_switch\n")
    result = run(tracefs_info, {})
    check_documented(tracefs_info, result)
    assert result["enabled_events"] == ["sched/sched_switch"]
    assert list(result["event_settings"]) == ["sched/sched_switch"]
    assert result["instance_events"] == {"tf": ["sched/sched_switch"]}
    assert "events/sched/sched_switch/enable" in {item["knob"] for item in result["drift"]}
