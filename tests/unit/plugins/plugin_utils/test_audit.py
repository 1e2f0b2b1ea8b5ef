# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import copy
import json
import os
import re
import stat
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _audit

TRACING = "/sys/kernel/tracing"
HOSTILE = '<script>alert("x")</script>&../../etc|`*_[x](y)#\x1b\x00'


def mount(point, fstype, options=("rw", "nosuid", "nodev", "noexec", "relatime"), super_options=("rw",)):
    return {
        "mount_point": point,
        "source": fstype,
        "fstype": fstype,
        "options": list(options),
        "super_options": list(super_options),
        "root": "/",
        "mount_id": 30,
    }


def boot(**changes):
    """tracefs.boot of a systemd host whose own unit mounts tracefs as it is mounted now."""
    unit = "/lib/systemd/system/sys-kernel-tracing.mount"
    result = {
        "mount_point": TRACING,
        "unit": "sys-kernel-tracing.mount",
        "systemd": True,
        "source": "systemd",
        "file": unit,
        "dropins": [],
        "options_file": unit,
        "mounted": True,
        "fstype": "tracefs",
        "configured_options": ["nosuid", "nodev", "noexec"],
        "options": ["rw", "nosuid", "nodev", "noexec", "relatime"],
        "gid": 0,
        "mode": "0700",
        "agrees": True,
        "differences": [],
        "error": None,
    }
    result.update(changes)
    return result


def facts(**changes):
    """A compliant host as tracefs_info reports it (gather: all), then `changes`."""
    result = {
        "changed": False,
        "kernel_release": "6.1.0-56-cloud-amd64",
        "tracefs": {
            "registered": True,
            "mounted": True,
            "path": TRACING,
            "options": ["rw", "nosuid", "nodev", "noexec", "relatime"],
            "super_options": ["rw"],
            "mountpoints": [mount(TRACING, "tracefs")],
            "boot": boot(),
        },
        "debugfs": {
            "registered": True,
            "mount_allowed": True,
            "policy": "on",
            "policy_source": "default",
            "mounted": False,
            "mount_point_exists": True,
            "mountpoints": [],
        },
        "lockdown": "none",
        "lockdown_source": "cmdline",
        "usable": True,
        "instance": None,
        "instances": [],
        "instance_events": {},
        "enabled_events": [],
        "dynamic_events": [],
        "ledger": {
            "path": "/var/lib/tracefleet/ledger.json",
            "exists": True,
            "error": None,
            "entries": [],
            "instances": [],
            "probe_groups": [],
        },
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = dict(result[key], **value)
        else:
            result[key] = value
    return result


def not_mounted():
    return facts(
        tracefs={"mounted": False, "path": None, "options": [], "super_options": [], "mountpoints": []}, usable=False
    )


def run(host_facts, **policy):
    checks = _audit.evaluate(host_facts, _audit.normalize_policy(policy))
    return {check["check"]: check for check in checks}


def status(host_facts, check, **policy):
    return run(host_facts, **policy)[check]["status"]


STRICT = dict(require_debugfs_disallowed=True, min_lockdown="integrity", tracefs_gid=1001, tracefs_mode="0750")


def test_default_policy_on_a_compliant_host():
    checks = run(facts())
    assert list(checks) == [
        "tracefs_mounted",
        "tracefs_options",
        "tracefs_persistent",
        "debugfs_not_mounted",
        "no_leftover_instances",
        "no_leftover_probes",
        "no_enabled_events",
    ]
    assert {check["status"] for check in checks.values()} == {"pass"}
    for check in checks.values():
        assert set(check) == {"check", "status", "expected", "actual", "message"}


def test_opt_in_checks_only_when_asked():
    assert list(run(facts(), **STRICT)) == [
        "tracefs_mounted",
        "tracefs_options",
        "tracefs_gid",
        "tracefs_mode",
        "tracefs_persistent",
        "debugfs_not_mounted",
        "debugfs_disallowed",
        "lockdown",
        "no_leftover_instances",
        "no_leftover_probes",
        "no_enabled_events",
    ]
    relaxed = run(facts(), debugfs_mounted_allowed=True, allow_leftovers=True, tracefs_options=[])
    assert list(relaxed) == ["tracefs_mounted", "tracefs_persistent"]
    assert list(run(facts(), require_persistent=False, tracefs_options=[], debugfs_mounted_allowed=True)) == [
        "tracefs_mounted",
        "no_leftover_instances",
        "no_leftover_probes",
        "no_enabled_events",
    ]


# One row per check and outcome: (facts, policy, check, status, words in the message).
CASES = [
    # tracefs_mounted
    (facts(), {}, "tracefs_mounted", "pass", "mounted at /sys/kernel/tracing"),
    (not_mounted(), {}, "tracefs_mounted", "fail", "not mounted"),
    (
        facts(tracefs={"mountpoints": [mount("/mnt/trace", "tracefs")]}),
        {},
        "tracefs_mounted",
        "fail",
        "mounted at /mnt/trace, not at /sys/kernel/tracing",
    ),
    (
        facts(tracefs={"registered": False, "mounted": False, "mountpoints": []}),
        {},
        "tracefs_mounted",
        "fail",
        "does not know tracefs",
    ),
    # tracefs_options: every tracefs mount, each named with what it lacks
    (facts(), {}, "tracefs_options", "pass", "every tracefs mount has nosuid, nodev, noexec"),
    (
        facts(tracefs={"mountpoints": [mount(TRACING, "tracefs", ("rw", "nosuid", "relatime"))]}),
        {},
        "tracefs_options",
        "fail",
        "/sys/kernel/tracing lacks nodev, noexec",
    ),
    (
        facts(
            tracefs={"mountpoints": [mount(TRACING, "tracefs"), mount("/mnt/t", "tracefs", ("rw", "nodev", "noexec"))]}
        ),
        {},
        "tracefs_options",
        "fail",
        "/mnt/t lacks nosuid",
    ),
    (not_mounted(), {}, "tracefs_options", "skip", "not mounted"),
    # tracefs_gid: gid= in the superblock options, 0 when absent
    (
        facts(tracefs={"super_options": ["rw", "gid=1001", "mode=750"]}),
        {"tracefs_gid": "1001"},
        "tracefs_gid",
        "pass",
        "group 1001",
    ),
    (
        facts(),
        {"tracefs_gid": 1001, "tracefs_group": "tracing"},
        "tracefs_gid",
        "fail",
        "gid=0; the policy requires gid=1001 (tracing)",
    ),
    (facts(), {"tracefs_group": "tracing"}, "tracefs_gid", "fail", "'tracing' required on tracefs does not exist"),
    (not_mounted(), {"tracefs_gid": 1001}, "tracefs_gid", "skip", "not mounted"),
    # tracefs_mode: mode= in the superblock options, 0700 when absent
    (
        facts(tracefs={"super_options": ["rw", "gid=1001", "mode=750"]}),
        {"tracefs_mode": "0750"},
        "tracefs_mode",
        "pass",
        "mode=0750",
    ),
    (
        facts(tracefs={"super_options": ["rw", "mode=750"]}),
        {"tracefs_mode": 0o750},
        "tracefs_mode",
        "pass",
        "mode=0750",
    ),
    (facts(), {"tracefs_mode": "750"}, "tracefs_mode", "fail", "mode=0700; the policy requires mode=0750"),
    (not_mounted(), {"tracefs_mode": "0750"}, "tracefs_mode", "skip", "not mounted"),
    # debugfs_not_mounted
    (facts(), {}, "debugfs_not_mounted", "pass", "not mounted"),
    (
        facts(debugfs={"mounted": True, "mountpoints": [mount("/sys/kernel/debug", "debugfs")]}),
        {},
        "debugfs_not_mounted",
        "fail",
        "debugfs is mounted at /sys/kernel/debug",
    ),
    # debugfs_disallowed (opt-in)
    (
        facts(
            debugfs={
                "registered": False,
                "mount_allowed": False,
                "policy": "off",
                "policy_source": "cmdline",
                "mount_point_exists": False,
            }
        ),
        {"require_debugfs_disallowed": True},
        "debugfs_disallowed",
        "pass",
        "not registered",
    ),
    (
        facts(
            debugfs={
                "mount_allowed": False,
                "policy": "no-mount",
                "policy_source": "kconfig",
                "mount_point_exists": False,
            }
        ),
        {"require_debugfs_disallowed": True},
        "debugfs_disallowed",
        "pass",
        "may not be mounted",
    ),
    (
        facts(),
        {"require_debugfs_disallowed": True},
        "debugfs_disallowed",
        "fail",
        "may be mounted (debugfs policy 'on' from default)",
    ),
    (
        facts(debugfs={"mount_allowed": None}),
        {"require_debugfs_disallowed": True},
        "debugfs_disallowed",
        "skip",
        "do not say",
    ),
    # lockdown (opt-in)
    (
        facts(lockdown="integrity"),
        {"min_lockdown": "integrity"},
        "lockdown",
        "pass",
        "lockdown is integrity (from cmdline)",
    ),
    (
        facts(lockdown="confidentiality", usable=False),
        {"min_lockdown": "integrity"},
        "lockdown",
        "pass",
        "confidentiality",
    ),
    (
        facts(lockdown="integrity"),
        {"min_lockdown": "confidentiality"},
        "lockdown",
        "fail",
        "requires confidentiality or stricter",
    ),
    (
        facts(lockdown="unknown", lockdown_source="none"),
        {"min_lockdown": "integrity"},
        "lockdown",
        "skip",
        "securityfs is not mounted",
    ),
    # no_leftover_instances: instances the ledger says tracefleet made
    (facts(instances=["other"]), {}, "no_leftover_instances", "pass", "1 other instance(s), not tracefleet's"),
    (
        facts(instances=["other", "tf-a"], ledger={"instances": ["tf-a", "tf-gone"]}),
        {},
        "no_leftover_instances",
        "fail",
        "tracefleet instances left behind: tf-a (",
    ),
    (
        facts(ledger={"error": "cannot read the ledger: Permission denied"}),
        {},
        "no_leftover_instances",
        "skip",
        "Permission denied",
    ),
    (not_mounted(), {}, "no_leftover_instances", "skip", "tracefs is not mounted"),
    (facts(lockdown="confidentiality", usable=False), {}, "no_leftover_instances", "skip", "lockdown confidentiality"),
    (facts(instance="tf-a"), {}, "no_leftover_instances", "skip", "instance 'tf-a'"),
    # no_leftover_probes: group tracefleet, extra groups, and groups the ledger recorded
    (
        facts(dynamic_events=["p:kprobes/other do_sys_open", "p:myprobe vfs_read"]),
        {},
        "no_leftover_probes",
        "pass",
        "no probe in group(s) tracefleet",
    ),
    (
        facts(dynamic_events=["p:tracefleet/open do_sys_openat2"]),
        {},
        "no_leftover_probes",
        "fail",
        "p:tracefleet/open do_sys_openat2",
    ),
    (
        facts(dynamic_events=["r10:lab/ret vfs_read $retval"], ledger={"probe_groups": ["lab"]}),
        {},
        "no_leftover_probes",
        "fail",
        "group(s) lab, tracefleet",
    ),
    (
        facts(dynamic_events=["p:ops/x vfs_read"]),
        {"probe_groups": ["tracefleet", "ops"]},
        "no_leftover_probes",
        "fail",
        "p:ops/x vfs_read",
    ),
    (facts(ledger={"error": "boom"}), {}, "no_leftover_probes", "skip", "other groups"),
    (
        facts(dynamic_events=["p:tracefleet/x vfs_read"], ledger={"error": "boom"}),
        {},
        "no_leftover_probes",
        "fail",
        "p:tracefleet/x",
    ),
    (not_mounted(), {}, "no_leftover_probes", "skip", "tracefs is not mounted"),
    # no_enabled_events: anything at the top level, and in tracefleet's instances
    (
        facts(instances=["other"], instance_events={"other": ["sched/sched_switch"]}),
        {},
        "no_enabled_events",
        "pass",
        "top level or in a tracefleet instance",
    ),
    (facts(enabled_events=["sched/sched_wakeup"]), {}, "no_enabled_events", "fail", "sched/sched_wakeup (top level)"),
    (
        facts(instances=["tf-a"], instance_events={"tf-a": ["irq/irq_handler_entry"]}, ledger={"instances": ["tf-a"]}),
        {},
        "no_enabled_events",
        "fail",
        "irq/irq_handler_entry (instance tf-a)",
    ),
    (facts(ledger={"error": "boom"}), {}, "no_enabled_events", "skip", "tracefleet instances cannot be checked"),
    (not_mounted(), {}, "no_enabled_events", "skip", "tracefs is not mounted"),
]


@pytest.mark.parametrize(
    "host_facts, policy, check, expected, words",
    CASES,
    ids=["%s-%s-%d" % (case[2], case[3], number) for number, case in enumerate(CASES)],
)
def test_check(host_facts, policy, check, expected, words):
    result = run(host_facts, **policy)[check]
    assert result["status"] == expected, result
    assert words in result["message"]


@pytest.mark.parametrize("check", ["no_leftover_instances", "no_leftover_probes", "no_enabled_events"])
def test_leftover_checks_need_their_facts(check):
    gathered = {
        "no_leftover_instances": "instances",
        "no_leftover_probes": "dynamic_events",
        "no_enabled_events": "enabled_events",
    }[check]
    host_facts = facts()
    del host_facts[gathered]
    assert status(host_facts, check) == "skip"
    no_ledger = facts()
    del no_ledger["ledger"]
    assert "gather: ledger" in run(no_ledger)["no_leftover_instances"]["message"]


def test_owned_instance_events_need_instance_events():
    host_facts = facts(instances=["tf-a"], ledger={"instances": ["tf-a"]})
    del host_facts["instance_events"]
    result = run(host_facts)["no_enabled_events"]
    assert result["status"] == "skip" and "gather: instance_events" in result["message"]


def test_probe_group():
    assert _audit.probe_group("p:tracefleet/open do_sys_openat2 name=+0($arg2):string") == "tracefleet"
    assert _audit.probe_group("r10:g/e vfs_read") == "g"
    assert _audit.probe_group("p:noevent_group vfs_read") is None
    assert _audit.probe_group("s:synthetic/wakeup_lat pid_t pid") == "synthetic"
    assert _audit.probe_group("garbage") is None


@pytest.mark.parametrize(
    "policy, words",
    [
        ({"bogus": 1}, "bogus"),
        ({"min_lockdown": "total"}, "min_lockdown"),
        ({"tracefs_mode": "rwx"}, "tracefs_mode='rwx'"),
        ({"tracefs_mode": "0999"}, "tracefs_mode"),
        ({"tracefs_mode": 0o17777}, "tracefs_mode"),
        ({"tracefs_gid": "tracing"}, "resolved on the host"),
        ({"tracefs_gid": -1}, "tracefs_gid=-1"),
        ({"tracefs_gid": True}, "tracefs_gid=True is not a numeric group id"),
        # The shared mode rule: three or four octal digits (one or two were accepted once).
        ({"tracefs_mode": "7"}, "tracefs_mode='7' is not an octal mode"),
        ({"tracefs_mode": 0o17777}, "tracefs_mode=8191 is out of range"),
        ("strict", "policy must be a dict"),
    ],
)
def test_bad_policy(policy, words):
    with pytest.raises(_audit.AuditError, match="policy") as error:
        _audit.normalize_policy(policy)
    assert words in str(error.value)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("text", "registered result"),
        ({"failed": True, "msg": "cannot read the kernel's mount table"}, "mount table"),
        ({"tracefs": {}}, "'debugfs'"),
    ],
)
def test_bad_facts(bad, words):
    with pytest.raises(_audit.AuditError, match="facts") as error:
        _audit.audit(bad, {})
    assert words in str(error.value)


def test_audit_result():
    result = _audit.audit(
        facts(
            debugfs={"mounted": True, "mountpoints": [mount("/sys/kernel/debug", "debugfs")]},
            enabled_events=["sched/sched_switch"],
        ),
        None,
    )
    assert result["violations"] == 2 and result["compliant"] is False
    assert result["msg"] == "2 violation(s): debugfs_not_mounted, no_enabled_events"
    assert result["facts_summary"] == {
        "kernel_release": "6.1.0-56-cloud-amd64",
        "lockdown": "none",
        "tracefs_path": TRACING,
        "usable": True,
    }
    assert result["policy"]["tracefs_path"] == TRACING
    assert _audit.audit(facts(), {})["compliant"] is True


FSTAB_BOOT = dict(
    source="fstab",
    file="/etc/fstab",
    options_file="/etc/fstab",
    configured_options=["nosuid", "nodev", "noexec", "gid=1001", "mode=0750"],
    gid=1001,
    mode="0750",
)
GROUP_MOUNT = {"super_options": ["rw", "gid=1001", "mode=750"]}
DROPIN = "/etc/systemd/system/sys-kernel-tracing.mount.d/50-tracing.conf"

# tracefs_persistent: (tracefs facts, policy, status, words in the message).
PERSISTENT_CASES = [
    # systemd's own unit mounts what the default policy asks, as it is mounted now
    ({}, {}, "pass", "/lib/systemd/system/sys-kernel-tracing.mount mounts tracefs at /sys/kernel/tracing at boot as"),
    (
        dict(GROUP_MOUNT, boot=boot(**FSTAB_BOOT)),
        {"tracefs_gid": 1001, "tracefs_mode": "0750"},
        "pass",
        "/etc/fstab mounts tracefs at /sys/kernel/tracing at boot as it is mounted now: rw, nosuid, nodev, "
        "noexec, relatime, gid=1001, mode=0750",
    ),
    (
        dict(boot=boot(dropins=[DROPIN], options_file=DROPIN)),
        {},
        "pass",
        "sys-kernel-tracing.mount with %s mounts" % DROPIN,
    ),
    # the finding: compliant now, nothing at boot
    (
        dict(boot=boot(source="none", file=None, mounted=False, systemd=False)),
        {},
        "fail",
        "tracefs is mounted at /sys/kernel/tracing now, but nothing mounts it at boot (no /etc/fstab line, "
        "and no systemd)",
    ),
    (
        dict(boot=boot(source="none", file=None, mounted=False)),
        {},
        "fail",
        "nothing mounts it at boot (no /etc/fstab line, no sys-kernel-tracing.mount)",
    ),
    (
        dict(boot=boot(source="masked", file="/etc/systemd/system/sys-kernel-tracing.mount", mounted=False)),
        {},
        "fail",
        "now, but /etc/systemd/system/sys-kernel-tracing.mount masks sys-kernel-tracing.mount, so systemd mounts "
        "nothing there at boot",
    ),
    (
        dict(boot=boot(mounted=False, **FSTAB_BOOT)),
        {},
        "fail",
        "its /etc/fstab line has noauto and no systemd link starts sys-kernel-tracing.mount at boot",
    ),
    (
        dict(boot=boot(source="unit", file="/etc/systemd/system/sys-kernel-tracing.mount", mounted=False)),
        {},
        "fail",
        "defines sys-kernel-tracing.mount but nothing starts it at boot",
    ),
    # the boot configuration against the policy, naming the file and the option
    (
        dict(
            boot=boot(
                options=["rw", "nosuid", "nodev", "relatime"],
                agrees=False,
                differences=[{"setting": "noexec", "live": "on", "boot": "off"}],
                **FSTAB_BOOT,
            )
        ),
        {},
        "fail",
        "tracefs at /sys/kernel/tracing after the next boot: /etc/fstab mounts it without noexec (the policy "
        "requires nosuid, nodev, noexec); "
        "the next boot's mount (/etc/fstab) differs from the live one: noexec on now, off at boot",
    ),
    (
        dict(GROUP_MOUNT, boot=boot(options_file=DROPIN, gid=0, mode="0750", configured_options=["mode=0750"])),
        {"tracefs_gid": 1001, "tracefs_group": "tracing"},
        "fail",
        "%s mounts it with gid=0 (none given); the policy requires gid=1001" % DROPIN,
    ),
    (
        dict(GROUP_MOUNT, boot=boot(**{**FSTAB_BOOT, "mode": "0755", "configured_options": ["mode=0755"]})),
        {"tracefs_mode": "0750"},
        "fail",
        "/etc/fstab mounts it with mode=0755; the policy requires mode=0750",
    ),
    (
        dict(boot=boot(fstype="tmpfs", **{key: FSTAB_BOOT[key] for key in ("source", "file")})),
        {},
        "fail",
        "/etc/fstab mounts tmpfs at /sys/kernel/tracing, not tracefs",
    ),
    # the policy is met at boot, but the live mount is not what the next boot makes
    (
        dict(
            GROUP_MOUNT,
            boot=boot(
                agrees=False,
                differences=[
                    {"setting": "gid", "live": "1001", "boot": "0"},
                    {"setting": "mode", "live": "0750", "boot": "0700"},
                ],
            ),
        ),
        {},
        "fail",
        "differs from the live one: gid 1001 now, 0 at boot, mode 0750 now, 0700 at boot",
    ),
    # not mounted now: tracefs_mounted's finding; the boot configuration alone is judged
    (
        dict(
            mounted=False,
            path=None,
            mountpoints=[],
            boot=boot(agrees=False, differences=[{"setting": "mounted", "live": "not mounted", "boot": "mounted"}]),
        ),
        {},
        "pass",
        "at boot as the policy asks",
    ),
    (
        dict(mounted=False, path=None, mountpoints=[], boot=boot(source="none", file=None, mounted=False)),
        {},
        "fail",
        "tracefs at /sys/kernel/tracing: nothing mounts it at boot",
    ),
    # what the facts cannot answer
    (dict(boot=None), {}, "skip", "the facts have no tracefs.boot"),
    (
        dict(boot=boot(error="fstab=/etc/fstab is not a regular file", source=None, mounted=None, agrees=None)),
        {},
        "skip",
        "the boot configuration of /sys/kernel/tracing cannot be read: fstab=/etc/fstab is not a regular file",
    ),
    (
        {},
        {"tracefs_path": "/srv/trace"},
        "skip",
        "describe the boot configuration of /sys/kernel/tracing, not of /srv/trace",
    ),
]


@pytest.mark.parametrize("tracefs, policy, expected, words", PERSISTENT_CASES)
def test_tracefs_persistent(tracefs, policy, expected, words):
    host_facts = facts(tracefs=tracefs)
    if tracefs.get("boot", "") is None:
        del host_facts["tracefs"]["boot"]
    result = run(host_facts, **policy)["tracefs_persistent"]
    assert result["status"] == expected, result
    assert words in result["message"]
    assert result["expected"]["mounted_at_boot"] is True and result["expected"]["same_as_live"] is True


def test_tracefs_persistent_expected_and_actual():
    result = run(facts(tracefs=dict(GROUP_MOUNT, boot=boot(**FSTAB_BOOT))), tracefs_gid=1001, tracefs_mode="750")
    check = result["tracefs_persistent"]
    assert check["expected"] == {
        "mounted_at_boot": True,
        "options": ["nosuid", "nodev", "noexec"],
        "gid": 1001,
        "mode": "0750",
        "same_as_live": True,
    }
    assert check["actual"] == {
        "source": "fstab",
        "file": "/etc/fstab",
        "dropins": [],
        "mounted": True,
        "options": ["rw", "nosuid", "nodev", "noexec", "relatime"],
        "gid": 1001,
        "mode": "0750",
        "differences": [],
    }


def test_tracefs_persistent_is_left_out_when_not_required():
    assert "tracefs_persistent" not in run(facts(tracefs={"boot": boot(mounted=False)}), require_persistent=False)
    assert _audit.normalize_policy({})["require_persistent"] is True


def test_tracefs_persistent_flows_into_every_report():
    """The finding reaches the JSON, JUnit, Markdown and HTML reports like the other mount checks."""
    drifted = facts(
        tracefs=dict(
            GROUP_MOUNT,
            boot=boot(agrees=False, differences=[{"setting": "gid", "live": "1001", "boot": "0"}]),
        )
    )
    report = _audit.build_report({"web1": _audit.audit(drifted, {})}, "boot")
    assert report["summary"]["violating"] == {"web1": ["tracefs_persistent"]}
    message = report["hosts"]["web1"]["checks"][2]["message"]
    assert "/lib/systemd/system/sys-kernel-tracing.mount" in message and "gid 1001 now, 0 at boot" in message
    assert json.loads(_audit.render_json(report))["hosts"]["web1"]["checks"][2]["status"] == "fail"
    junit = ET.fromstring(_audit.render_junit(report).encode("utf-8"))
    failure = junit.find("testsuite/testcase[@name='tracefs_persistent']/failure")
    assert failure is not None and failure.get("message") == message
    assert "differences" in failure.text
    assert "| web1 | tracefs\\_persistent |" in _audit.render_markdown(report)  # markdown escapes the _
    page = _audit.render_html(report)
    assert "<td>tracefs_persistent</td>" in page and "gid 1001 now, 0 at boot" in page


def test_hostile_boot_facts_are_refused_naming_the_field():
    bad = facts(tracefs={"boot": boot(differences=[{"setting": ["x"], "live": "on", "boot": "off"}])})
    with pytest.raises(_audit.AuditError, match=r"facts\.tracefs\.boot\.differences\[0\]\.setting"):
        _audit.audit(bad, {})


def test_evaluation_does_not_modify_facts():
    host_facts = facts(instances=["tf-a"], ledger={"instances": ["tf-a"]})
    before = copy.deepcopy(host_facts)
    _audit.audit(host_facts, STRICT)
    assert host_facts == before


# ---------------------------------------------------------------- reports


def results():
    """Three hosts: compliant, violating with a skipped check, and unreachable; the
    violating one has a hostile inventory name and hostile facts."""
    violating = facts(
        debugfs={"mounted": True, "mountpoints": [mount("/sys/kernel/debug", "debugfs")]},
        instances=[HOSTILE],
        ledger={"instances": [HOSTILE]},
        kernel_release=HOSTILE,
        lockdown="unknown",
    )
    return {
        "good": _audit.audit(facts(), {}),
        HOSTILE: _audit.audit(violating, {"min_lockdown": "integrity"}),
        "down": None,
    }


@pytest.fixture
def report():
    return _audit.build_report(results(), "r1")


def test_report_summary(report):
    summary = report["summary"]
    assert summary["hosts"] == 3
    assert summary["compliant"] == ["good"]
    assert summary["violating"] == {HOSTILE: ["debugfs_not_mounted", "no_leftover_instances"]}
    assert summary["no_result"] == ["down"]
    assert summary["checks"] == {"pass": 12, "fail": 2, "skip": 1}
    assert report["hosts"]["down"]["error"] == _audit.NO_RESULT


@pytest.mark.parametrize(
    "result, words",
    [
        (None, "unreachable"),
        ({}, "unreachable"),  # the role's placeholder before the audit ran
        ({"failed": True, "msg": "facts has no 'tracefs'"}, "facts has no 'tracefs'"),
        ({"skipped": True, "changed": False}, "skipped"),
    ],
)
def test_no_result(result, words):
    report = _audit.build_report({"h": result}, "r")
    assert report["hosts"]["h"]["compliant"] is None and report["summary"]["no_result"] == ["h"]
    assert words in report["hosts"]["h"]["error"]


@pytest.mark.parametrize(
    "bad", [{"h": {"checks": "no"}}, {"h": {"checks": [{"check": "x", "status": "maybe"}]}}, ["h"]]
)
def test_malformed_results(bad):
    with pytest.raises(_audit.AuditError, match="results"):
        _audit.build_report(bad, "r")


def test_json(report):
    data = json.loads(_audit.render_json(report))
    assert data["run_id"] == "r1" and data["format"] == 1
    assert data["hosts"]["good"]["compliant"] is True
    assert data["hosts"][HOSTILE]["violations"] == 2
    assert [check["status"] for check in data["hosts"][HOSTILE]["checks"]].count("skip") == 1


def test_junit(report):
    root = ET.fromstring(_audit.render_junit(report).encode("utf-8"))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("16", "2", "1", "1")
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert set(suites) == {"good", "down", HOSTILE.replace("\x1b", "\\x1b").replace("\x00", "\\x00")}
    good = suites["good"]
    assert len(good.findall("testcase")) == 7 and good.get("failures") == "0"
    assert not good.findall("testcase/failure") and not good.findall("testcase/skipped")
    bad = next(suite for name, suite in suites.items() if name.startswith("<script>"))
    failures = {
        case.get("name"): case.find("failure") for case in bad.findall("testcase") if case.find("failure") is not None
    }
    assert set(failures) == {"debugfs_not_mounted", "no_leftover_instances"}
    assert failures["debugfs_not_mounted"].get("message") == "debugfs is mounted at /sys/kernel/debug"
    assert "actual: /sys/kernel/debug" in failures["debugfs_not_mounted"].text
    skipped = [case.get("name") for case in bad.findall("testcase") if case.find("skipped") is not None]
    assert skipped == ["lockdown"]
    assert bad.get("tests") == "8" and bad.get("skipped") == "1"
    error = suites["down"].find("testcase/error")
    assert error is not None and error.get("message") == _audit.NO_RESULT
    properties = {prop.get("name"): prop.get("value") for prop in good.iter("property")}
    assert properties["kernel_release"] == "6.1.0-56-cloud-amd64" and properties["run_id"] == "r1"


@pytest.mark.parametrize("fmt", ["junit", "markdown", "html"])
def test_no_raw_control_characters(report, fmt):
    """A report read with cat cannot send escape sequences to the terminal."""
    text = _audit.RENDERERS[fmt](report)
    assert "\x1b" not in text and "\x00" not in text
    assert "\\x1b" in text
    assert "<script>" not in text


def test_html_escapes_hosts_and_loads_nothing(report):
    page = _audit.render_html(report)
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert "src=" not in page and "<link" not in page
    assert "default-src 'none'" in page
    assert page.count("<table>") == 3  # violations, good, the hostile host
    assert "no audit result" in page


def test_markdown_escapes_hosts(report):
    text = _audit.render_markdown(report)
    assert "<script>" not in text and "&lt;script&gt;" in text
    row = next(line for line in text.splitlines() if line.startswith("| &lt;script"))
    # the host's pipe, backticks, brackets and hash cannot make cells, code or links
    assert "\\|" in row and "\\`" in row and "\\[x\\]" in row and "\\#" in row
    assert row.count(" | ") == 2
    assert "## Violations" in text and "### good: compliant" in text
    assert "| debugfs\\_not\\_mounted | FAIL | (none) | /sys/kernel/debug |" in text


def test_text_of_values():
    assert _audit._text(None) == "(none)"
    assert _audit._text([]) == "(none)"
    assert _audit._text(True) == "yes"
    assert _audit._text({"/a": ["x", "y"]}) == "/a: x, y"
    assert _audit._text("two\nlines") == "two lines"


def test_undecodable_host_text_is_kept_escaped():
    checks = [{"check": "c", "status": "fail", "expected": [], "actual": ["\udcff"], "message": "bad \udcff byte"}]
    report = _audit.build_report({"h": {"checks": checks}}, "r")
    for fmt in _audit.FORMATS:
        _audit.RENDERERS[fmt](report).encode("utf-8")
    assert report["hosts"]["h"]["checks"][0]["message"] == "bad \\udcff byte"


# ---------------------------------------------------------------- files


def test_write_reports(tmp_path, report):
    dest = tmp_path / "audit"
    out = _audit.write_reports(report, str(dest), ["json", "junit", "markdown", "html"])
    assert out["path"] == str(dest / "r1")
    assert sorted(os.listdir(out["path"])) == [
        "compliance-junit.xml",
        "compliance.html",
        "compliance.json",
        "compliance.md",
    ]
    assert out["files"]["junit"] == str(dest / "r1" / "compliance-junit.xml")
    assert sorted(out["written"]) == sorted(out["files"].values())
    # the same report again: same bytes, nothing written
    again = _audit.write_reports(report, str(dest), ["json", "junit", "markdown", "html"])
    assert again["written"] == []
    # a different result rewrites only what changed, leaving no temporary files
    changed = _audit.build_report(dict(results(), down=_audit.audit(facts(), {})), "r1")
    third = _audit.write_reports(changed, str(dest), ["json"])
    assert third["written"] == [out["files"]["json"]]
    assert sorted(os.listdir(out["path"])) == [
        "compliance-junit.xml",
        "compliance.html",
        "compliance.json",
        "compliance.md",
    ]


def test_dry_run_writes_nothing(tmp_path, report):
    out = _audit.write_reports(report, str(tmp_path / "audit"), ["json", "html"], dry_run=True)
    assert len(out["written"]) == 2
    assert not (tmp_path / "audit").exists()


def test_host_names_never_become_paths(tmp_path):
    dest = tmp_path / "audit"
    names = {"../escaped": None, "/etc/passwd": None, "..": None, "a/../../b": None}
    report = _audit.build_report(names, "run")
    _audit.write_reports(report, str(dest), list(_audit.FORMATS))
    assert sorted(os.listdir(tmp_path)) == ["audit"]
    assert os.listdir(dest) == ["run"]
    assert set(json.loads((dest / "run" / "compliance.json").read_text())["hosts"]) == set(names)


@pytest.mark.parametrize("run_id", ["../x", "..", ".", "a/b", "/abs", ".hidden", "", "x" * 201, "semi;colon", None])
def test_bad_run_id(tmp_path, run_id):
    with pytest.raises(_audit.AuditError, match="run_id"):
        _audit.write_reports({"run_id": run_id}, str(tmp_path), ["json"])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "gid, mode, expected",
    [("", "", (None, None)), (" 1001 ", "0750", (1001, 0o750)), (1001, 0o750, (1001, 0o750)), (0, "00750", (0, 0o750))],
)
def test_policy_gid_and_mode(gid, mode, expected):
    policy = _audit.normalize_policy({"tracefs_gid": gid, "tracefs_mode": mode})
    assert (policy["tracefs_gid"], policy["tracefs_mode"]) == expected


def test_run_directory_symlinked_to_dest_itself(tmp_path):
    dest = tmp_path / "audit"
    dest.mkdir()
    (dest / "run").symlink_to(dest)
    with pytest.raises(_audit.AuditError, match="outside"):
        _audit.run_directory(str(dest), "run")


def test_run_directory_is_reported_as_given(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert _audit.run_directory(str(tmp_path / "link"), "r1") == str(tmp_path / "link" / "r1")


def test_run_directory_symlinked_out_of_dest(tmp_path):
    dest = tmp_path / "audit"
    dest.mkdir()
    (dest / "run").symlink_to(tmp_path)
    with pytest.raises(_audit.AuditError, match="outside"):
        _audit.run_directory(str(dest), "run")


def test_unknown_format(tmp_path, report):
    with pytest.raises(_audit.AuditError, match="formats"):
        _audit.write_reports(report, str(tmp_path), ["pdf"])


# ---------------------------------------------------------------- hostile hosts (issue 12)

RAW = ["\n", "\r", "\x1b", "\x00", "\x85", "\u2028", "\u202e", "\udcff"]


@pytest.mark.parametrize("fmt", _audit.FORMATS)
def test_raw_control_characters_from_hosts_never_reach_a_report(fmt):
    """Newlines, ESC, NUL, NEL, line separators, bidi overrides and lone surrogates
    from a host, in a host name, a message, and a key of an `actual` dict (a mount
    point), come out as visible escapes; a Markdown row stays one row."""
    hostile = "web\n# injected\x1b[2J\x00\u202e\udcff"
    checks = [
        {
            "check": "tracefs_options",
            "status": "fail",
            "expected": ["nosuid"],
            "actual": {"/sys/kernel/tracing\n## injected\x00": ["rw\r\n| x |"]},
            "message": "lacks\nnosuid\x1b]0;title\x07",
        }
    ]
    report = _audit.build_report({hostile: {"checks": checks}}, "r")
    text = _audit.RENDERERS[fmt](report)
    if fmt == "json":
        assert json.loads(text)["hosts"]  # JSON escapes by itself
        return
    for char in RAW[1:]:
        assert char not in text, repr(char)
    assert "\\x1b" in text and "\\x00" in text and "\\u202e" in text
    if fmt == "markdown":
        assert not [line for line in text.splitlines() if line.lstrip("# ").startswith("injected")]
        rows = [line for line in text.splitlines() if "tracefs" in line and line.startswith("|")]
        # 3 cells in the violations table, 5 in the host's: the host's pipes are escaped.
        assert sorted(len(re.findall(r"(?<!\\)\|", line)) for line in rows) == [4, 6]


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(tracefs={"mountpoints": [{"mount_point": 5}]}), r"facts\.tracefs\.mountpoints\[0\]\.mount_point=5"),
        (dict(tracefs={"mountpoints": "lots"}), r"facts\.tracefs\.mountpoints='lots': a list is expected"),
        (dict(tracefs={"mounted": "yes"}), r"facts\.tracefs\.mounted='yes': true or false is expected"),
        (dict(tracefs={"super_options": [["gid=0"]]}), r"facts\.tracefs\.super_options\[0\]=\['gid=0'\]"),
        (dict(dynamic_events=["p:x/y do_sys_open"] * (1 << 18)), r"facts\.dynamic_events=a list of 262144"),
        (dict(dynamic_events=["x" * 5000]), r"facts\.dynamic_events\[0\]='x{60}'\.\.\. \(5000 characters\)"),
        (dict(instances={"a": 1}), r"facts\.instances=\{'a': 1\}: a list is expected, not dict"),
        (dict(instance_events={"a": "sched/x"}), r"facts\.instance_events\['a'\]='sched/x': a list is expected"),
        (dict(ledger={"instances": [None]}), r"facts\.ledger\.instances\[0\]=None: a value is required"),
        (dict(usable=1), r"facts\.usable=1: true or false is expected, not int"),
        (dict(lockdown=["none"]), r"facts\.lockdown=\['none'\]: a string is expected, not list"),
    ],
)
def test_hostile_facts_are_refused_naming_the_field(change, field):
    with pytest.raises(_audit.AuditError, match="the host's tracefs_info result was refused: " + field):
        _audit.audit(facts(**change), {})


def test_host_text_in_facts_is_kept_escaped():
    checks = run(facts(tracefs={"mountpoints": [mount("/sys/kernel/tracing\udcff", "tracefs")]}))
    assert checks["tracefs_mounted"]["actual"] == ["/sys/kernel/tracing\\udcff"]


@pytest.mark.parametrize(
    ("registered", "policy", "actual"),
    [
        (False, "no-mount", "no-mount"),  # the lab kernels: no-mount does not register debugfs
        (False, "off", "off"),
        (False, None, "off"),
        (True, "no-mount", "no-mount"),
    ],
)
def test_debugfs_disallowed_reports_the_mode_the_kernel_was_given(registered, policy, actual):
    debugfs = {"registered": registered, "mount_allowed": False, "policy": policy, "policy_source": "cmdline"}
    policy = _audit.normalize_policy({"require_debugfs_disallowed": True})
    check = _audit.check_debugfs_disallowed(facts(debugfs=debugfs), policy)
    assert check["status"] == "pass"
    assert check["actual"] == actual


def test_reports_are_private_whatever_the_umask(tmp_path, report):
    """The audit's files name every host and its findings: 0600 in a 0700 directory,
    even under a umask that would leave them world-readable (docs/security.md)."""
    old = os.umask(0o000)
    try:
        out = _audit.write_reports(report, str(tmp_path / "audit"), ["json", "junit", "markdown", "html"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out["path"]).st_mode) == 0o700
    for path in out["files"].values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
