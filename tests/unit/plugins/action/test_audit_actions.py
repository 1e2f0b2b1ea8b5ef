# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit_check and audit_report action plugins, driven the way the task executor
drives them, with a connection that fails the test if it is ever used."""

from __future__ import annotations

import importlib
import json
import os
import re
from unittest.mock import MagicMock

import pytest
from ansible.module_utils import _internal


@pytest.fixture(autouse=True)
def controller(monkeypatch):
    """Importing controller code sets ansible's process-wide `is_controller` flag, after
    which a module's warnings go to the display instead of its result, and the module
    tests that look for them fail. So the controller side is imported here, inside the
    tests, and the flag is put back after each one."""
    monkeypatch.setattr(_internal, "is_controller", True)
    yield


def action_module(name):
    return importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.action." + name)


COMPLIANT = {
    "changed": False,
    "kernel_release": "6.1.0-56-cloud-amd64",
    "tracefs": {
        "registered": True,
        "mounted": True,
        "path": "/sys/kernel/tracing",
        "options": ["rw", "nosuid", "nodev", "noexec"],
        "super_options": ["rw"],
        "mountpoints": [
            {
                "mount_point": "/sys/kernel/tracing",
                "fstype": "tracefs",
                "options": ["rw", "nosuid", "nodev", "noexec"],
                "super_options": ["rw"],
            }
        ],
    },
    "debugfs": {
        "registered": True,
        "mount_allowed": True,
        "mounted": False,
        "mountpoints": [],
        "policy": "on",
        "policy_source": "default",
        "mount_point_exists": True,
    },
    "lockdown": "none",
    "lockdown_source": "none",
    "usable": True,
    "instance": None,
    "instances": [],
    "instance_events": {},
    "enabled_events": [],
    "dynamic_events": [],
    "ledger": {
        "path": "/var/lib/tracefleet/ledger.json",
        "exists": False,
        "error": None,
        "entries": [],
        "instances": [],
        "probe_groups": [],
    },
}
DEBUGFS_MOUNTED = dict(
    COMPLIANT,
    debugfs=dict(
        COMPLIANT["debugfs"],
        mounted=True,
        mountpoints=[{"mount_point": "/sys/kernel/debug", "fstype": "debugfs", "options": ["rw"]}],
    ),
)


def run_action(name, args, check_mode=False):
    from ansible.playbook.play_context import PlayContext

    module = action_module(name)
    task = MagicMock()
    task.args = args
    task.check_mode = check_mode
    task.async_val = 0
    task.action = "tracefleet.ftrace." + name
    connection = MagicMock()
    connection.exec_command.side_effect = AssertionError("the host was contacted")
    connection.put_file.side_effect = AssertionError("the host was contacted")
    action = module.ActionModule(task, connection, PlayContext(), loader=None, templar=None, shared_loader_obj=None)
    return action.run(task_vars={"inventory_hostname": "h1"})


def test_check_compliant():
    result = run_action("audit_check", {"facts": COMPLIANT})
    assert result["changed"] is False and result["compliant"] is True
    assert result["violations"] == 0 and result["msg"] == "compliant"
    assert [check["status"] for check in result["checks"]] == ["pass"] * 6


def test_check_violation_and_policy():
    result = run_action("audit_check", {"facts": DEBUGFS_MOUNTED, "policy": {"min_lockdown": "integrity"}})
    assert result["changed"] is False and result["compliant"] is False
    assert result["violations"] == 2
    statuses = {check["check"]: check["status"] for check in result["checks"]}
    assert statuses["debugfs_not_mounted"] == "fail" and statuses["lockdown"] == "fail"
    assert result["policy"]["min_lockdown"] == "integrity"


def test_check_same_in_check_mode():
    assert (
        run_action("audit_check", {"facts": DEBUGFS_MOUNTED}, check_mode=True)["checks"]
        == run_action("audit_check", {"facts": DEBUGFS_MOUNTED})["checks"]
    )


@pytest.mark.parametrize(
    "args, words",
    [
        ({"facts": {"failed": True, "msg": "boom"}}, "failed tracefs_info result: boom"),
        ({"facts": {"changed": False}}, "facts has no 'tracefs'"),
        ({"facts": COMPLIANT, "policy": {"tracefs_mode": "rw"}}, "tracefs_mode='rw'"),
        ({"facts": COMPLIANT, "policy": {"nope": True}}, "nope"),
    ],
)
def test_check_bad_input(args, words):
    result = run_action("audit_check", args)
    assert result["failed"] is True and words in result["msg"]


def test_check_unknown_option():
    from ansible.errors import AnsibleActionFail

    with pytest.raises(AnsibleActionFail, match="bogus"):
        run_action("audit_check", {"facts": COMPLIANT, "bogus": 1})


def results():
    return {
        "good": run_action("audit_check", {"facts": COMPLIANT}),
        "../bad": run_action("audit_check", {"facts": DEBUGFS_MOUNTED}),
        "gone": None,
    }


def test_report_writes_and_is_idempotent(tmp_path):
    args = {"results": results(), "dest": str(tmp_path / "audit"), "run_id": "r1", "formats": ["json", "junit", "html"]}
    result = run_action("audit_report", args)
    assert result["changed"] is True
    assert result["path"] == str(tmp_path / "audit" / "r1")
    assert set(result["files"]) == {"json", "junit", "html"}
    assert all(os.path.isfile(path) for path in result["files"].values())
    assert result["violating"] == {"../bad": ["debugfs_not_mounted"]}
    assert result["summary"]["no_result"] == ["gone"] and result["compliant"] is False
    assert sorted(os.listdir(tmp_path)) == ["audit"]
    again = run_action("audit_report", args)
    assert again["changed"] is False and again["written"] == [] and "up to date" in again["msg"]


def test_report_check_mode_writes_nothing(tmp_path):
    result = run_action(
        "audit_report", {"results": results(), "dest": str(tmp_path / "a"), "run_id": "r1"}, check_mode=True
    )
    assert result["changed"] is True and len(result["written"]) == 3
    assert result["msg"].startswith("would write 3 report file(s)")
    assert not (tmp_path / "a").exists()


def test_report_default_run_id_and_relative_dest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_action("audit_report", {"results": {"good": results()["good"]}})
    assert result["run_id"] == os.path.basename(result["path"])
    assert os.path.dirname(result["path"]) == str(tmp_path / "audit")
    data = json.loads(open(result["files"]["json"]).read())
    assert data["summary"]["compliant"] == ["good"] and result["compliant"] is True


@pytest.mark.parametrize(
    "args, words",
    [
        ({"run_id": "../up"}, "run_id='../up'"),
        ({"formats": ["pdf"]}, "pdf"),
    ],
)
def test_report_bad_input(tmp_path, args, words):
    base = {"results": results(), "dest": str(tmp_path)}
    try:
        result = run_action("audit_report", dict(base, **args))
    except Exception as exc:  # argument spec errors are raised for the executor to report
        result = {"failed": True, "msg": str(exc)}
    assert result["failed"] is True and words in result["msg"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(lockdown=float("nan")), r"facts\.lockdown=nan: a string is expected, not float"),
        (dict(dynamic_events="p:tracefleet/x"), r"facts\.dynamic_events='p:tracefleet/x': a list is expected"),
        (dict(enabled_events=["sched/x\udcff", 7]), r"facts\.enabled_events\[1\]=7: a string is expected"),
    ],
)
def test_audit_check_refuses_hostile_facts(change, message):
    """What a host reported is checked before any check reads it (issue 12, finding 1)."""
    result = run_action("audit_check", {"facts": dict(COMPLIANT, **change)})
    assert result["failed"] and re.search("the host's tracefs_info result was refused: " + message, result["msg"])
    assert "exception" not in result
