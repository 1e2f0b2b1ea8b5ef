# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit_check and audit_report action plugins, driven the way the task executor
drives them, with a connection that fails the test if it is ever used."""

from __future__ import annotations

import json
import os
import re

import pytest

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
        "boot": {
            "mount_point": "/sys/kernel/tracing",
            "unit": "sys-kernel-tracing.mount",
            "systemd": True,
            "source": "fstab",
            "file": "/etc/fstab",
            "options_file": "/etc/fstab",
            "mounted": True,
            "fstype": "tracefs",
            "configured_options": ["nosuid", "nodev", "noexec"],
            "options": ["rw", "nosuid", "nodev", "noexec", "relatime"],
            "gid": 0,
            "mode": "0700",
            "agrees": True,
            "differences": [],
            "error": None,
        },
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


def test_check_compliant(run_action):
    result = run_action("audit_check", {"facts": COMPLIANT})
    assert result["changed"] is False and result["compliant"] is True
    assert result["violations"] == 0 and result["msg"] == "compliant"
    assert [check["status"] for check in result["checks"]] == ["pass"] * 7


def test_check_violation_and_policy(run_action):
    result = run_action("audit_check", {"facts": DEBUGFS_MOUNTED, "policy": {"min_lockdown": "integrity"}})
    assert result["changed"] is False and result["compliant"] is False
    assert result["violations"] == 2
    statuses = {check["check"]: check["status"] for check in result["checks"]}
    assert statuses["debugfs_not_mounted"] == "fail" and statuses["lockdown"] == "fail"
    assert result["policy"]["min_lockdown"] == "integrity"


def test_check_same_in_check_mode(run_action):
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
def test_check_bad_input(args, words, run_action):
    result = run_action("audit_check", args)
    assert result["failed"] is True and words in result["msg"]


def test_check_unknown_option(run_action):
    from ansible.errors import AnsibleActionFail

    with pytest.raises(AnsibleActionFail, match="bogus"):
        run_action("audit_check", {"facts": COMPLIANT, "bogus": 1})


def results(run_action):
    return {
        "good": run_action("audit_check", {"facts": COMPLIANT}),
        "../bad": run_action("audit_check", {"facts": DEBUGFS_MOUNTED}),
        "gone": None,
    }


def test_report_writes_and_is_idempotent(tmp_path, run_action):
    args = {
        "results": results(run_action),
        "dest": str(tmp_path / "audit"),
        "run_id": "r1",
        "formats": ["json", "junit", "html"],
    }
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


def test_report_check_mode_writes_nothing(tmp_path, run_action):
    result = run_action(
        "audit_report", {"results": results(run_action), "dest": str(tmp_path / "a"), "run_id": "r1"}, check_mode=True
    )
    assert result["changed"] is True and len(result["written"]) == 3
    assert result["msg"].startswith("would write 3 report file(s)")
    assert not (tmp_path / "a").exists()


def test_report_default_run_id_and_relative_dest(tmp_path, monkeypatch, run_action):
    monkeypatch.chdir(tmp_path)
    result = run_action("audit_report", {"results": {"good": results(run_action)["good"]}})
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
def test_report_bad_input(tmp_path, args, words, run_action):
    base = {"results": results(run_action), "dest": str(tmp_path)}
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
def test_audit_check_refuses_hostile_facts(change, message, run_action):
    """What a host reported is checked before any check reads it (issue 12, finding 1)."""
    result = run_action("audit_check", {"facts": dict(COMPLIANT, **change)})
    assert result["failed"] and re.search("the host's tracefs_info result was refused: " + message, result["msg"])
    assert "exception" not in result
