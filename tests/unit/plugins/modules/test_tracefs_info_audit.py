# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What tracefs_info gathers for the compliance audit: the ledger and the enabled
events of every instance. Read-only: nothing is created, not even a lock file."""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _locate
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.modules import tracefs_info


@pytest.fixture
def run(fake_host, monkeypatch, capsys):
    host = _locate.Host
    monkeypatch.setattr(_locate, "Host", lambda: host(str(fake_host.root)))

    def run_module(args=None) -> dict:
        with patch_module_args(args or {}), pytest.raises(SystemExit):
            tracefs_info.main()
        return json.loads(capsys.readouterr().out)

    return run_module


def make_instance(fake_host, name, set_event=""):
    path = fake_host.tracing / "instances" / name
    path.mkdir()
    (path / "set_event").write_text(set_event)


def test_ledger_and_instance_events(run, fake_host, tmp_path):
    fake_host.mount_tracefs()
    make_instance(fake_host, "tf-a", "sched:sched_switch\nirq:irq_handler_entry\n")
    make_instance(fake_host, "other")
    ledger_path = str(tmp_path / "state" / "ledger.json")
    with Ledger(ledger_path) as ledger:
        ledger.record("s", kind="instance", name="tf-a")
        ledger.record("s", kind="probe", group="lab", event="open")
        ledger.record("s", kind="event", instance="tf-a", event="sched/sched_switch", original="0")
    before = sorted(os.listdir(tmp_path / "state"))
    result = run({"ledger_path": ledger_path})
    assert result["instance_events"] == {"other": [], "tf-a": ["sched/sched_switch", "irq/irq_handler_entry"]}
    ledger = result["ledger"]
    assert ledger["exists"] is True and ledger["error"] is None
    assert ledger["instances"] == ["tf-a"] and ledger["probe_groups"] == ["lab"]
    assert [entry["kind"] for entry in ledger["entries"]] == ["instance", "probe", "event"]
    assert sorted(os.listdir(tmp_path / "state")) == before


def test_missing_ledger_reads_empty_and_creates_nothing(run, fake_host, tmp_path):
    ledger_path = tmp_path / "nowhere" / "ledger.json"
    result = run({"gather": ["ledger"], "ledger_path": str(ledger_path)})
    assert result["ledger"] == {
        "path": str(ledger_path),
        "exists": False,
        "error": None,
        "entries": [],
        "instances": [],
        "probe_groups": [],
    }
    assert not (tmp_path / "nowhere").exists()
    assert "instance_events" not in result


def test_unreadable_ledger_is_reported_not_fatal(run, fake_host, tmp_path):
    ledger_path = tmp_path / "ledger.json"
    ledger_path.write_text("{not json")
    result = run({"gather": ["mounts", "ledger"], "ledger_path": str(ledger_path)})
    assert "failed" not in result
    assert result["ledger"]["exists"] is None and "cannot read the ledger" in result["ledger"]["error"]


def test_ledger_only_when_asked(run, fake_host):
    fake_host.mount_tracefs()
    result = run({"gather": ["instances", "events"]})
    assert "ledger" not in result and "instance_events" not in result
    assert run({"gather": ["instance_events"]})["instance_events"] == {}


def test_instance_facts_have_no_instance_events(run, fake_host):
    fake_host.mount_tracefs()
    make_instance(fake_host, "tf-a", "sched:sched_switch\n")
    (fake_host.tracing / "instances" / "tf-a" / "trace").write_text("")
    result = run({"instance": "tf-a", "gather": ["instance_events", "events"]})
    assert "instance_events" not in result and result["enabled_events"] == ["sched/sched_switch"]
