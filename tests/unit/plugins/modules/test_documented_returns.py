# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""RETURN says what the modules return: every key a run returns is documented (and its
documented `contains` where there is one), and every key documented as returned
`always` is there. Run on the fake tracefs tree; event names come back as system/event
even where the kernel's files spell them system:event."""

from __future__ import annotations

import pytest
import yaml

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


@pytest.fixture
def run(state_tree, run_module, fake_host, monkeypatch):
    host = _locate.Host
    monkeypatch.setattr(_locate, "Host", lambda: host(str(fake_host.root)))

    def run_checked(module, args) -> dict:
        result = run_module(module, args)
        assert not result.get("failed"), result.get("msg")
        return result

    return run_checked


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
