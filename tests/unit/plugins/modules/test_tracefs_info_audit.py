# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What tracefs_info gathers for the compliance audit: the ledger, the enabled events of
every instance, and what the next boot mounts (judged by the audit's tracefs_persistent).
Read-only: nothing is created, not even a lock file."""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _locate
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.modules import tracefs_info
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _audit


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


# ---------------------------------------------------------------- after the next boot


def tree(root):
    """Every path under the fake root with its contents' fingerprint."""
    return sorted((str(path), path.lstat().st_mtime_ns, path.lstat().st_size) for path in root.rglob("*"))


def audit_report(result, **policy):
    report = _audit.build_report({"host": _audit.audit(result, policy)}, "boot")
    checks = {check["check"]: check for check in report["hosts"]["host"]["checks"]}
    return checks["tracefs_persistent"], _audit.render_junit(report)


def test_boot_facts_from_the_fstab(run, fake_host):
    fake_host.mount_tracefs(options="rw,nosuid,nodev,noexec,relatime")
    fake_host.write("etc/fstab", "tracefs %s tracefs nosuid,nodev,noexec 0 0\n" % fake_host.tracing)
    boot = run({"gather": ["mounts"]})["tracefs"]["boot"]
    assert boot["mount_point"] == str(fake_host.tracing)
    assert (boot["source"], boot["file"], boot["mounted"], boot["agrees"]) == ("fstab", "/etc/fstab", True, True)
    check, _junit = audit_report(run(), tracefs_path=str(fake_host.tracing))
    assert check["status"] == "pass", check


def test_compliant_now_not_after_the_next_boot(run, fake_host):
    """The live mount meets the policy; nothing on disk mounts it again: a finding, in the
    JUnit report, naming what is missing."""
    fake_host.mount_tracefs(options="rw,nosuid,nodev,noexec,relatime")
    result = run()
    assert result["tracefs"]["boot"]["source"] == "none" and result["tracefs"]["boot"]["agrees"] is False
    check, junit = audit_report(result, tracefs_path=str(fake_host.tracing))
    assert check["status"] == "fail"
    assert check["message"] == (
        "tracefs is mounted at %s now, but nothing mounts it at boot (no /etc/fstab line, and no systemd)"
        % fake_host.tracing
    )
    assert '<testcase classname="host" name="tracefs_persistent" time="0">' in junit
    assert '<failure type="violation"' in junit


def test_fstab_that_differs_names_the_file_and_the_option(run, fake_host):
    fake_host.mount_tracefs(options="rw,nosuid,nodev,noexec,relatime")
    fake_host.write("etc/fstab", "tracefs %s tracefs nosuid,nodev 0 0\n" % fake_host.tracing)
    check, _junit = audit_report(run(), tracefs_path=str(fake_host.tracing))
    assert check["status"] == "fail"
    assert "/etc/fstab mounts it without noexec (the policy requires nosuid, nodev, noexec)" in check["message"]
    assert "noexec on now, off at boot" in check["message"]


def test_systemd_host_remounted_by_hand(run, fake_host):
    """systemd's own unit, a drop-in that gives the group, and a live mount whose mode was
    changed by hand since (gather: mounts reads no tracing file)."""
    fake_host.mountinfo(
        "37 21 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime - tracefs tracefs rw,gid=1001,mode=750\n"
    )
    (fake_host.root / "run/systemd/system").mkdir(parents=True)
    fake_host.write(
        "lib/systemd/system/sys-kernel-tracing.mount",
        "[Mount]\nWhat=tracefs\nWhere=/sys/kernel/tracing\nType=tracefs\nOptions=nosuid,nodev,noexec\n",
    )
    os.makedirs(fake_host.root / "lib/systemd/system/sysinit.target.wants")
    os.symlink(
        "../sys-kernel-tracing.mount",
        fake_host.root / "lib/systemd/system/sysinit.target.wants/sys-kernel-tracing.mount",
    )
    dropin = "etc/systemd/system/sys-kernel-tracing.mount.d/tracing.conf"
    fake_host.write(dropin, "[Mount]\nOptions=nosuid,nodev,noexec,gid=1001\n")
    boot = run({"gather": ["mounts"]})["tracefs"]["boot"]
    assert (boot["source"], boot["dropins"], boot["options_file"]) == ("systemd", ["/" + dropin], "/" + dropin)
    assert boot["differences"] == [{"setting": "mode", "live": "0750", "boot": "0700"}]
    check, _junit = audit_report(run({"gather": ["mounts"]}), tracefs_gid=1001, tracefs_mode="0750")
    assert check["status"] == "fail"
    assert "/%s mounts it with mode=0700 (none given); the policy requires mode=0750" % dropin in check["message"]


def test_boot_facts_are_read_only_and_the_same_in_check_mode(run, fake_host):
    fake_host.mount_tracefs()
    fake_host.write("etc/fstab", "tracefs %s tracefs nosuid,nodev,noexec 0 0\n" % fake_host.tracing)
    (fake_host.root / "run/systemd/system").mkdir(parents=True)
    before = tree(fake_host.root)
    normal = run({"gather": ["mounts"]})
    checked = run({"gather": ["mounts"], "_ansible_check_mode": True, "_ansible_diff": True})
    assert normal["changed"] is False and checked["changed"] is False and "diff" not in checked
    assert checked["tracefs"]["boot"] == normal["tracefs"]["boot"]
    assert tree(fake_host.root) == before
