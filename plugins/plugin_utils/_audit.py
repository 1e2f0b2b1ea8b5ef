# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The compliance audit, on the controller: judge a host's tracefs_info result
against a policy, and write the run's reports (JSON, JUnit XML, Markdown, HTML).

Nothing here contacts a host. Everything in a report that came from a host (its
inventory name, mount points, instance and event names, probe definitions, error
messages) is untrusted text: it is escaped for the format it lands in, and it
never becomes part of a path. Reports carry no wall-clock time, so the same run id
and the same results give the same bytes, and writing them again changes nothing.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile, _mount_syscalls, _validation
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _escape, _host_result, _runs
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._paths import PathEscapeError, inside

PASS, FAIL, SKIP = "pass", "fail", "skip"
STATUSES = (PASS, FAIL, SKIP)
LOCKDOWN_LEVELS = {"none": 0, "integrity": 1, "confidentiality": 2}

POLICY_SPEC = dict(
    tracefs_path=dict(type="str", default="/sys/kernel/tracing"),
    tracefs_options=dict(type="list", elements="str", default=["nosuid", "nodev", "noexec"]),
    tracefs_gid=dict(type="raw"),
    tracefs_group=dict(type="str"),
    tracefs_mode=dict(type="raw"),
    debugfs_mounted_allowed=dict(type="bool", default=False),
    require_debugfs_disallowed=dict(type="bool", default=False),
    min_lockdown=dict(type="str", default="none", choices=list(LOCKDOWN_LEVELS)),
    allow_leftovers=dict(type="bool", default=False),
    probe_groups=dict(type="list", elements="str", default=["tracefleet"]),
    require_persistent=dict(type="bool", default=True),
)

FORMATS = ("json", "junit", "markdown", "html")
FILE_NAMES = _runs.AUDIT_FILES
REPORT_FORMAT = 1
# `p:group/event ...`, `r10:group/event ...`, `s:synthetic/name ...`, `e:group/event ...`
_DYNAMIC_EVENT = re.compile(r"^[a-z]+\d*:(?:(?P<group>[^/\s]+)/)?\S+")
NO_RESULT = "no audit result: the host was unreachable or a task before the audit failed on it"


class AuditError(TracefleetError, ValueError):
    """Bad input (policy, facts, results, run id); nothing was written."""


# ---------------------------------------------------------------- policy


def normalize_policy(policy: dict | None) -> dict:
    """The policy with defaults filled in and values checked."""
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise AuditError("policy must be a dict, got %s" % type(policy).__name__)
    validated = ArgumentSpecValidator(POLICY_SPEC).validate(policy)
    if validated.error_messages:
        raise AuditError("policy: %s" % "; ".join(validated.error_messages))
    normal = validated.validated_parameters
    normal["tracefs_gid"] = _parse_gid(normal["tracefs_gid"])
    normal["tracefs_mode"] = _parse_mode(normal["tracefs_mode"])
    return normal


def _parse_gid(value) -> int | None:
    """A numeric gid; "" is unset too (what a role's empty variable templates to)."""
    if value == "":
        return None
    try:
        return _validation.parse_gid(value, "tracefs_gid", resolve_names=False)
    except _validation.ValidationError as exc:
        raise AuditError(
            "policy: %s; a group name is resolved on the host first (the compliance role "
            "does it with getent) and its name goes in tracefs_group" % exc
        ) from None


def _parse_mode(value) -> int | None:
    """`'0750'` or `'750'` (octal text), or an int such as YAML's unquoted 0750; "" is unset."""
    if value == "":
        return None
    try:
        return _validation.parse_octal_mode(value, "tracefs_mode")
    except _validation.ValidationError as exc:
        raise AuditError("policy: %s" % exc) from None


def _octal(mode: int) -> str:
    return "%04o" % mode


# ---------------------------------------------------------------- checks


def _result(check: str, status: str, expected, actual, message: str) -> dict:
    return {"check": check, "status": status, "expected": expected, "actual": actual, "message": message}


def _listing(items) -> str:
    return ", ".join(str(item) for item in items)


def _tracefs_mounts(facts: dict) -> list[dict]:
    return [mount for mount in facts["tracefs"].get("mountpoints") or [] if isinstance(mount, dict)]


def check_tracefs_mounted(facts: dict, policy: dict) -> dict:
    path = policy["tracefs_path"]
    points = [mount.get("mount_point") for mount in _tracefs_mounts(facts)]
    name = "tracefs_mounted"
    if path in points:
        return _result(name, PASS, path, points, "tracefs is mounted at %s" % path)
    if facts["tracefs"].get("registered") is False:
        return _result(
            name,
            FAIL,
            path,
            points,
            "tracefs is not mounted at %s: the kernel does not know tracefs (not in /proc/filesystems)" % path,
        )
    if points:
        return _result(name, FAIL, path, points, "tracefs is mounted at %s, not at %s" % (_listing(points), path))
    return _result(name, FAIL, path, points, "tracefs is not mounted (policy: at %s)" % path)


def check_tracefs_options(facts: dict, policy: dict) -> dict | None:
    required = list(policy["tracefs_options"])
    if not required:
        return None
    name = "tracefs_options"
    mounts = _tracefs_mounts(facts)
    if not mounts:
        return _result(name, SKIP, required, {}, "tracefs is not mounted: no mount options to check")
    actual = {mount.get("mount_point"): list(mount.get("options") or []) for mount in mounts}
    missing = {point: [option for option in required if option not in options] for point, options in actual.items()}
    lacking = ["%s lacks %s" % (point, _listing(options)) for point, options in missing.items() if options]
    if lacking:
        return _result(name, FAIL, required, actual, "; ".join(lacking))
    return _result(name, PASS, required, actual, "every tracefs mount has %s" % _listing(required))


def _superblock(facts: dict) -> list:
    """gid= and mode= belong to the superblock, shared by every tracefs mount."""
    options = facts["tracefs"].get("super_options")
    if options:
        return options
    mounts = _tracefs_mounts(facts)
    return (mounts[0].get("super_options") or []) if mounts else []


def check_tracefs_gid(facts: dict, policy: dict) -> dict | None:
    gid, group = policy["tracefs_gid"], policy.get("tracefs_group")
    if gid is None and not group:
        return None
    name = "tracefs_gid"
    wanted = gid if not group else "%s (%s)" % (gid, group)
    if gid is None:
        return _result(name, FAIL, group, None, "the group %r required on tracefs does not exist on this host" % group)
    if not _tracefs_mounts(facts):
        return _result(name, SKIP, gid, None, "tracefs is not mounted: no group to check")
    options = _superblock(facts)
    try:
        actual = _mount_syscalls.tracefs_gid(options)
    except ValueError:
        shown = _mount_syscalls.option_value(options, "gid")
        return _result(name, FAIL, gid, shown, "tracefs gid=%s is not a number" % shown)
    if actual == gid:
        return _result(name, PASS, gid, actual, "tracefs files belong to group %s" % wanted)
    return _result(
        name, FAIL, gid, actual, "tracefs is mounted with gid=%s; the policy requires gid=%s" % (actual, wanted)
    )


def check_tracefs_mode(facts: dict, policy: dict) -> dict | None:
    mode = policy["tracefs_mode"]
    if mode is None:
        return None
    name = "tracefs_mode"
    if not _tracefs_mounts(facts):
        return _result(name, SKIP, _octal(mode), None, "tracefs is not mounted: no mode to check")
    options = _superblock(facts)
    try:
        actual = _mount_syscalls.tracefs_mode(options)
    except ValueError:
        shown = _mount_syscalls.option_value(options, "mode")
        return _result(name, FAIL, _octal(mode), shown, "tracefs mode=%s is not octal" % shown)
    if actual == mode:
        return _result(name, PASS, _octal(mode), _octal(actual), "tracefs is mounted with mode=%s" % _octal(actual))
    return _result(
        name,
        FAIL,
        _octal(mode),
        _octal(actual),
        "tracefs is mounted with mode=%s; the policy requires mode=%s" % (_octal(actual), _octal(mode)),
    )


def _not_at_boot(boot: dict) -> str:
    """Why nothing mounts tracefs at boot, in the words of the configuration."""
    source, where, unit = boot.get("source"), boot.get("file"), boot.get("unit")
    if source == "masked":
        return "%s masks %s, so systemd mounts nothing there at boot" % (where, unit)
    if source == "fstab":
        return "its %s line has noauto and no systemd link starts %s at boot" % (where, unit)
    if source in ("unit", "systemd"):
        return "%s defines %s but nothing starts it at boot (no .wants/ or .requires/ link)" % (where, unit)
    if boot.get("systemd"):
        return "nothing mounts it at boot (no /etc/fstab line, no %s)" % unit
    return "nothing mounts it at boot (no /etc/fstab line, and no systemd)"


def _stated(boot: dict, name: str, value: str) -> str:
    """`value` as the boot configuration gives it: `gid=0 (none given)` when it gives none."""
    given = _mount_syscalls.option_value(boot.get("configured_options") or [], name)
    return "%s=%s" % (name, value) + ("" if given is not None else " (none given)")


def _boot_problems(boot: dict, policy: dict, path: str, live_mounted: bool) -> list[str]:
    """What keeps the boot-time mount from matching the policy and the live mount."""
    problems = []
    origin = boot.get("options_file") or boot.get("file")
    if boot.get("fstype") != "tracefs":
        problems.append("%s mounts %s at %s, not tracefs" % (boot.get("file"), boot.get("fstype") or "no type", path))
    options = boot.get("options") or []
    missing = [option for option in policy["tracefs_options"] if option not in options]
    if missing:
        problems.append(
            "%s mounts it without %s (the policy requires %s)"
            % (origin, _listing(missing), _listing(policy["tracefs_options"]))
        )
    gid, mode = policy["tracefs_gid"], policy["tracefs_mode"]
    if gid is not None and boot.get("gid") != gid:
        problems.append(
            "%s mounts it with %s; the policy requires gid=%s"
            % (origin, _stated(boot, "gid", "%s" % boot.get("gid")), gid)
        )
    if mode is not None and boot.get("mode") != _octal(mode):
        problems.append(
            "%s mounts it with %s; the policy requires mode=%s"
            % (origin, _stated(boot, "mode", "%s" % boot.get("mode")), _octal(mode))
        )
    # Not mounted now is tracefs_mounted's finding; a boot configuration that mounts
    # the policy's mount is what this check asks for.
    changes = [
        "%s %s now, %s at boot" % (item.get("setting"), item.get("live"), item.get("boot"))
        for item in boot.get("differences") or []
        if live_mounted or item.get("setting") != "mounted"
    ]
    if changes:
        problems.append("the next boot's mount (%s) differs from the live one: %s" % (origin, _listing(changes)))
    return problems


def check_tracefs_persistent(facts: dict, policy: dict) -> dict | None:
    """The mount the next boot makes (an /etc/fstab line, a mount unit) matches the
    policy and the live mount: a host compliant now stays compliant after a reboot."""
    if not policy["require_persistent"]:
        return None
    name = "tracefs_persistent"
    path = policy["tracefs_path"]
    expected: dict = {"mounted_at_boot": True, "options": list(policy["tracefs_options"])}
    if policy["tracefs_gid"] is not None:
        expected["gid"] = policy["tracefs_gid"]
    if policy["tracefs_mode"] is not None:
        expected["mode"] = _octal(policy["tracefs_mode"])
    expected["same_as_live"] = True
    boot = facts["tracefs"].get("boot")
    if not isinstance(boot, dict):
        return _result(
            name,
            SKIP,
            expected,
            None,
            "the facts have no tracefs.boot (gather them with this collection's tracefs_info)",
        )
    actual = {key: boot.get(key) for key in ("source", "file", "dropins", "mounted", "options", "gid", "mode")}
    actual["differences"] = boot.get("differences") or []
    if boot.get("error"):
        return _result(
            name, SKIP, expected, actual, "the boot configuration of %s cannot be read: %s" % (path, boot["error"])
        )
    if boot.get("mount_point") != path:
        return _result(
            name,
            SKIP,
            expected,
            actual,
            "the facts describe the boot configuration of %s, not of %s (tracefs_info reports the "
            "mount point tracefs is mounted at, else /sys/kernel/tracing)" % (boot.get("mount_point"), path),
        )
    live_mounted = path in [mount.get("mount_point") for mount in _tracefs_mounts(facts)]
    if boot.get("mounted") is None:
        return _result(name, SKIP, expected, actual, "the facts do not say whether %s is mounted at boot" % path)
    if not boot["mounted"]:
        now = "tracefs is mounted at %s now, but " if live_mounted else "tracefs at %s: "
        return _result(name, FAIL, expected, actual, now % path + _not_at_boot(boot))
    problems = _boot_problems(boot, policy, path, live_mounted)
    if problems:
        return _result(
            name, FAIL, expected, actual, "tracefs at %s after the next boot: %s" % (path, "; ".join(problems))
        )
    dropins = boot.get("dropins") or []
    settings = list(boot.get("options") or []) + ["gid=%s" % boot.get("gid"), "mode=%s" % boot.get("mode")]
    return _result(
        name,
        PASS,
        expected,
        actual,
        "%s%s mounts tracefs at %s at boot %s: %s"
        % (
            boot.get("file"),
            " with %s" % _listing(dropins) if dropins else "",
            path,
            "as it is mounted now" if live_mounted else "as the policy asks",
            _listing(settings),
        ),
    )


def check_debugfs_not_mounted(facts: dict, policy: dict) -> dict | None:
    if policy["debugfs_mounted_allowed"]:
        return None
    debugfs = facts["debugfs"]
    points = [mount.get("mount_point") for mount in debugfs.get("mountpoints") or [] if isinstance(mount, dict)]
    if debugfs.get("mounted") or points:
        return _result(
            "debugfs_not_mounted",
            FAIL,
            [],
            points,
            "debugfs is mounted at %s" % (_listing(points) or "an unknown place"),
        )
    return _result("debugfs_not_mounted", PASS, [], points, "debugfs is not mounted")


def check_debugfs_disallowed(facts: dict, policy: dict) -> dict | None:
    if not policy["require_debugfs_disallowed"]:
        return None
    debugfs = facts["debugfs"]
    evidence = "debugfs policy '%s' from %s" % (debugfs.get("policy"), debugfs.get("policy_source"))
    expected = "off or no-mount"
    # The mode the kernel was given (no-mount and off look the same from user space on
    # the lab kernels: neither registers the filesystem), else what the facts show.
    policy_mode = debugfs.get("policy") if debugfs.get("policy") in ("off", "no-mount") else None
    if debugfs.get("registered") is False:
        return _result(
            "debugfs_disallowed",
            PASS,
            expected,
            policy_mode or "off",
            "debugfs is not registered (%s)" % evidence,
        )
    if debugfs.get("mount_allowed") is False:
        return _result(
            "debugfs_disallowed",
            PASS,
            expected,
            policy_mode or "no-mount",
            "debugfs may not be mounted (%s; /sys/kernel/debug %s)"
            % (evidence, "exists" if debugfs.get("mount_point_exists") else "does not exist"),
        )
    if debugfs.get("mount_allowed") is None:
        return _result(
            "debugfs_disallowed", SKIP, expected, None, "the facts do not say whether debugfs may be mounted"
        )
    return _result(
        "debugfs_disallowed",
        FAIL,
        expected,
        "on",
        "debugfs may be mounted (%s); boot with debugfs=off or debugfs=no-mount (tracefleet.ftrace.tracefs "
        "with debugfs=disallowed puts debugfs=off on the next boot's command line), or build with "
        "CONFIG_DEBUG_FS_DISALLOW_MOUNT" % evidence,
    )


def check_lockdown(facts: dict, policy: dict) -> dict | None:
    minimum = policy["min_lockdown"]
    if LOCKDOWN_LEVELS[minimum] == 0:
        return None
    mode = facts.get("lockdown")
    expected = "%s or stricter" % minimum
    if mode not in LOCKDOWN_LEVELS:
        return _result(
            "lockdown",
            SKIP,
            expected,
            mode,
            "the lockdown mode is %s: securityfs is not mounted and the kernel "
            "command line has no lockdown=" % (mode or "not reported"),
        )
    source = facts.get("lockdown_source") or "unknown source"
    if LOCKDOWN_LEVELS[mode] >= LOCKDOWN_LEVELS[minimum]:
        return _result("lockdown", PASS, expected, mode, "lockdown is %s (from %s)" % (mode, source))
    return _result(
        "lockdown",
        FAIL,
        expected,
        mode,
        "lockdown is %s (from %s); the policy requires %s or stricter" % (mode, source, minimum),
    )


def _tracing_unavailable(facts: dict) -> str | None:
    """Why the tracing state cannot be read from these facts, or None."""
    if facts.get("instance"):
        return "the facts are of instance %r, not of the top level" % facts["instance"]
    if not facts["tracefs"].get("mounted"):
        return "tracefs is not mounted"
    if not facts.get("usable"):
        if facts.get("lockdown") == "confidentiality":
            return "tracefs is not usable under lockdown confidentiality"
        return "tracefs is not usable (its control files cannot be read)"
    return None


def _ledger(facts: dict) -> tuple[dict | None, str | None]:
    ledger = facts.get("ledger")
    if not isinstance(ledger, dict):
        return None, "the facts have no ledger (tracefs_info gather: ledger)"
    if ledger.get("error"):
        return None, "the ledger could not be read (%s)" % ledger["error"]
    return ledger, None


def _missing(facts: dict, key: str, gather: str) -> str | None:
    if key not in facts:
        return "the facts have no %s (tracefs_info gather: %s)" % (key, gather)
    return None


def probe_group(line: str) -> str | None:
    """The group of a dynamic_events line; None when it names none (kernel default)."""
    match = _DYNAMIC_EVENT.match(line.strip())
    return match.group("group") if match else None


def check_no_leftover_instances(facts: dict, policy: dict) -> dict | None:
    if policy["allow_leftovers"]:
        return None
    name = "no_leftover_instances"
    problem = _tracing_unavailable(facts) or _missing(facts, "instances", "instances")
    if problem:
        return _result(name, SKIP, [], None, "cannot list the instances: %s" % problem)
    ledger, problem = _ledger(facts)
    if problem or ledger is None:
        return _result(name, SKIP, [], None, "cannot tell which instances are tracefleet's: %s" % problem)
    present = list(facts["instances"] or [])
    left = sorted(set(ledger.get("instances") or []) & set(present))
    if left:
        return _result(
            name,
            FAIL,
            [],
            left,
            "tracefleet instances left behind: %s (remove them with tracefleet.ftrace.teardown)" % _listing(left),
        )
    others = len(present)
    return _result(
        name,
        PASS,
        [],
        left,
        "no tracefleet instance is left%s" % (" (%d other instance(s), not tracefleet's)" % others if others else ""),
    )


def check_no_leftover_probes(facts: dict, policy: dict) -> dict | None:
    if policy["allow_leftovers"]:
        return None
    name = "no_leftover_probes"
    problem = _tracing_unavailable(facts) or _missing(facts, "dynamic_events", "dynamic_events")
    if problem:
        return _result(name, SKIP, [], None, "cannot list the probes: %s" % problem)
    ledger, ledger_problem = _ledger(facts)
    groups = sorted(set(policy["probe_groups"]) | set((ledger or {}).get("probe_groups") or []))
    left = [line for line in facts["dynamic_events"] or [] if probe_group(line) in groups]
    if left:
        return _result(
            name,
            FAIL,
            [],
            left,
            "probes left behind in group(s) %s: %s (remove "
            "them with tracefleet.ftrace.teardown)" % (_listing(groups), _listing(left)),
        )
    if ledger_problem:
        return _result(
            name,
            SKIP,
            [],
            left,
            "no probe in group(s) %s, but %s, so other groups "
            "tracefleet used are unknown" % (_listing(groups), ledger_problem),
        )
    return _result(name, PASS, [], left, "no probe in group(s) %s" % _listing(groups))


def check_no_enabled_events(facts: dict, policy: dict) -> dict | None:
    if policy["allow_leftovers"]:
        return None
    name = "no_enabled_events"
    problem = _tracing_unavailable(facts) or _missing(facts, "enabled_events", "events")
    if problem:
        return _result(name, SKIP, [], None, "cannot list the enabled events: %s" % problem)
    found = ["%s (top level)" % event for event in facts["enabled_events"] or []]
    ledger, unknown = _ledger(facts)
    owned = sorted((ledger or {}).get("instances") or [])
    if owned:
        unknown = _missing(facts, "instance_events", "instance_events")
    if owned and not unknown:
        per_instance = facts["instance_events"] or {}
        for instance in owned:
            found.extend("%s (instance %s)" % (event, instance) for event in per_instance.get(instance) or [])
    if found:
        return _result(name, FAIL, [], found, "events left enabled: %s" % _listing(found))
    if unknown:
        return _result(
            name,
            SKIP,
            [],
            found,
            "no event is enabled at the top level, but the tracefleet instances cannot be checked: %s" % unknown,
        )
    return _result(name, PASS, [], found, "no event is enabled at the top level or in a tracefleet instance")


CHECKS = (
    check_tracefs_mounted,
    check_tracefs_options,
    check_tracefs_gid,
    check_tracefs_mode,
    check_tracefs_persistent,
    check_debugfs_not_mounted,
    check_debugfs_disallowed,
    check_lockdown,
    check_no_leftover_instances,
    check_no_leftover_probes,
    check_no_enabled_events,
)


def validate_facts(facts) -> dict:
    if not isinstance(facts, dict):
        raise AuditError(
            "facts must be the registered result of tracefleet.ftrace.tracefs_info, got %s" % type(facts).__name__
        )
    if facts.get("failed"):
        raise AuditError("facts is a failed tracefs_info result: %s" % facts.get("msg", "no message"))
    for key in ("tracefs", "debugfs"):
        if not isinstance(facts.get(key), dict):
            raise AuditError("facts has no %r: pass the registered result of tracefleet.ftrace.tracefs_info" % key)
    # What the host reported, checked before any check reads it (the keys the checks
    # read; the others are never used).
    try:
        return _host_result.check(_host_result.TRACEFS_INFO_FACTS, facts, "facts")
    except _host_result.HostResultError as exc:
        raise AuditError("the host's tracefs_info result was refused: %s" % exc) from None


def evaluate(facts: dict, policy: dict) -> list[dict]:
    """Every check the policy asks for, in a fixed order. `policy` is normalized."""
    return _checks(validate_facts(facts), policy)


def _checks(facts: dict, policy: dict) -> list[dict]:
    return [result for result in (check(facts, policy) for check in CHECKS) if result is not None]


def facts_summary(facts: dict) -> dict:
    """What a report shows about a host besides its checks."""
    return {
        "kernel_release": facts.get("kernel_release"),
        "lockdown": facts.get("lockdown"),
        "tracefs_path": facts["tracefs"].get("path"),
        "usable": facts.get("usable"),
    }


def audit(facts, policy) -> dict:
    """The audit_check result for one host."""
    policy = normalize_policy(policy)
    facts = validate_facts(facts)
    checks = _checks(facts, policy)
    failed = [check["check"] for check in checks if check["status"] == FAIL]
    return {
        "checks": checks,
        "violations": len(failed),
        "compliant": not failed,
        "policy": policy,
        "facts_summary": facts_summary(facts),
        "msg": "compliant" if not failed else "%d violation(s): %s" % (len(failed), _listing(failed)),
    }


# ---------------------------------------------------------------- the run's report


def _plain(value):
    """Plain JSON types, whatever the results were made of; text that cannot be
    encoded (lone surrogates from undecodable host bytes) becomes backslash escapes."""
    if isinstance(value, dict):
        return {_plain(key) if isinstance(key, str) else str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return int(value) if isinstance(value, int) else float(value)
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _host_entry(host: str, result) -> dict:
    entry: dict = {"compliant": None, "violations": 0, "error": None, "checks": [], "facts_summary": {}, "policy": {}}
    if not isinstance(result, dict) or not result:
        entry["error"] = NO_RESULT
        return entry
    if result.get("failed") or result.get("unreachable"):
        entry["error"] = "the audit failed: %s" % result.get("msg", "no message")
        return entry
    if result.get("skipped"):
        entry["error"] = "the audit was skipped on this host"
        return entry
    checks = result.get("checks")
    if not isinstance(checks, list):
        raise AuditError("results[%r] is not an audit_check result (no 'checks' list)" % host)
    for check in checks:
        if not isinstance(check, dict) or check.get("status") not in STATUSES or not check.get("check"):
            raise AuditError("results[%r] has a malformed check: %r" % (host, check))
        entry["checks"].append({key: check.get(key) for key in ("check", "status", "expected", "actual", "message")})
    entry["violations"] = sum(1 for check in entry["checks"] if check["status"] == FAIL)
    entry["compliant"] = entry["violations"] == 0
    entry["facts_summary"] = result.get("facts_summary") or {}
    entry["policy"] = result.get("policy") or {}
    return entry


def build_report(results: dict, run_id: str) -> dict:
    """The run's report: every host's checks and the totals."""
    if not isinstance(results, dict):
        raise AuditError("results must be a dict of host name -> audit_check result")
    hosts = {}
    for host in sorted(results, key=str):
        hosts[str(host)] = _host_entry(str(host), results[host])
    hosts = _plain(hosts)
    counts = dict.fromkeys(STATUSES, 0)
    for entry in hosts.values():
        for check in entry["checks"]:
            counts[check["status"]] += 1
    summary = {
        "hosts": len(hosts),
        "compliant": sorted(host for host, entry in hosts.items() if entry["compliant"] is True),
        "violating": {
            host: [check["check"] for check in entry["checks"] if check["status"] == FAIL]
            for host, entry in hosts.items()
            if entry["compliant"] is False
        },
        "no_result": sorted(host for host, entry in hosts.items() if entry["compliant"] is None),
        "checks": counts,
    }
    return {
        "format": REPORT_FORMAT,
        "tool": "tracefleet.ftrace.audit_report",
        "run_id": _plain(run_id),
        "summary": summary,
        "hosts": hosts,
    }


def _text(value) -> str:
    """A value as one line of text for the human-readable formats (keys too); the
    escaping is `_escape.line`, shared by every report writer."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join("%s: %s" % (_escape.line(key), _text(item)) for key, item in value.items()) or "(none)"
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value) or "(none)"
    return _escape.line(value)


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def _xml(value) -> str:
    return _escape.xml(_text(value))


def render_junit(report: dict) -> str:
    """JUnit XML: one testsuite per host, one testcase per check; a violation is a
    failure, a check that could not be evaluated is skipped, a host without a result
    is an error."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suites = ET.Element("testsuites", name="tracefleet compliance %s" % _xml(report["run_id"]))
    for host, entry in report["hosts"].items():
        suite = ET.SubElement(suites, "testsuite", name=_xml(host))
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="run_id", value=_xml(report["run_id"]))
        for key, value in sorted(entry["facts_summary"].items()):
            ET.SubElement(properties, "property", name=_xml(key), value=_xml(value))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if entry["error"]:
            case = ET.SubElement(suite, "testcase", classname=_xml(host), name="audit", time="0")
            ET.SubElement(case, "error", type="no-result", message=_xml(entry["error"]))
            counts["tests"] += 1
            counts["errors"] += 1
        for check in entry["checks"]:
            case = ET.SubElement(suite, "testcase", classname=_xml(host), name=_xml(check["check"]), time="0")
            counts["tests"] += 1
            detail = "expected: %s\nactual: %s" % (_xml(check["expected"]), _xml(check["actual"]))
            if check["status"] == FAIL:
                counts["failures"] += 1
                failure = ET.SubElement(case, "failure", type="violation", message=_xml(check["message"]))
                failure.text = detail
            elif check["status"] == SKIP:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=_xml(check["message"]))
            else:
                ET.SubElement(case, "system-out").text = _xml(check["message"])
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", "0")
    for key, value in totals.items():
        suites.set(key, str(value))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _md(value) -> str:
    return _escape.markdown(_text(value))


def _headline(report: dict) -> list[str]:
    summary = report["summary"]
    checks = summary["checks"]
    return [
        "%d host(s): %d compliant, %d violating, %d without a result."
        % (summary["hosts"], len(summary["compliant"]), len(summary["violating"]), len(summary["no_result"])),
        "Checks: %d passed, %d failed, %d skipped (could not be evaluated)."
        % (checks[PASS], checks[FAIL], checks[SKIP]),
    ]


def _host_state(entry: dict) -> str:
    if entry["compliant"] is None:
        return "no result"
    return "compliant" if entry["compliant"] else "%d violation(s)" % entry["violations"]


def render_markdown(report: dict) -> str:
    lines = ["# tracefleet compliance audit", "", "Run %s." % _md(report["run_id"]), ""]
    lines += [line for item in _headline(report) for line in (item, "")]
    failures = [
        (host, check) for host, entry in report["hosts"].items() for check in entry["checks"] if check["status"] == FAIL
    ]
    errors = [(host, entry["error"]) for host, entry in report["hosts"].items() if entry["error"]]
    if failures or errors:
        lines += ["## Violations", "", "| host | check | message |", "|---|---|---|"]
        lines += [
            "| %s | %s | %s |" % (_md(host), _md(check["check"]), _md(check["message"])) for host, check in failures
        ]
        lines += ["| %s | audit | %s |" % (_md(host), _md(error)) for host, error in errors]
        lines.append("")
    lines += ["## Hosts", ""]
    for host, entry in report["hosts"].items():
        lines += ["### %s: %s" % (_md(host), _host_state(entry)), ""]
        if entry["error"]:
            lines += [_md(entry["error"]), ""]
            continue
        facts = entry["facts_summary"]
        lines += [
            "Kernel %s, lockdown %s, tracefs at %s."
            % (_md(facts.get("kernel_release")), _md(facts.get("lockdown")), _md(facts.get("tracefs_path"))),
            "",
        ]
        lines += ["| check | status | expected | actual | message |", "|---|---|---|---|---|"]
        lines += [
            "| %s | %s | %s | %s | %s |"
            % (
                _md(check["check"]),
                check["status"].upper(),
                _md(check["expected"]),
                _md(check["actual"]),
                _md(check["message"]),
            )
            for check in entry["checks"]
        ]
        lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1a1a1a; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.pass { background: #e3f4e1; } td.fail { background: #fbe0de; font-weight: bold; }
td.skip { background: #f2f2f2; color: #555; }
h3.fail { color: #a4161a; } h3.pass { color: #1b5e20; } h3.error { color: #7a4d00; }
"""


def _h(value) -> str:
    return _escape.html(_text(value))


def render_html(report: dict) -> str:
    """One self-contained page: inline style, no script, and a content security
    policy that forbids loading anything."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>tracefleet compliance audit %s</title>" % _h(report["run_id"]),
        "<style>%s</style>" % _CSS,
        "</head>",
        "<body>",
        "<h1>tracefleet compliance audit</h1>",
        "<p>Run <code>%s</code>.</p>" % _h(report["run_id"]),
    ]
    out += ["<p>%s</p>" % _h(item) for item in _headline(report)]
    failures = [
        (host, check["check"], check["message"])
        for host, entry in report["hosts"].items()
        for check in entry["checks"]
        if check["status"] == FAIL
    ]
    failures += [(host, "audit", entry["error"]) for host, entry in report["hosts"].items() if entry["error"]]
    if failures:
        out += ["<h2>Violations</h2>", "<table>", "<tr><th>host</th><th>check</th><th>message</th></tr>"]
        out += [
            "<tr><td>%s</td><td>%s</td><td>%s</td></tr>" % (_h(host), _h(check), _h(message))
            for host, check, message in failures
        ]
        out.append("</table>")
    out.append("<h2>Hosts</h2>")
    for host, entry in report["hosts"].items():
        state = "error" if entry["compliant"] is None else (PASS if entry["compliant"] else FAIL)
        out.append('<h3 class="%s">%s: %s</h3>' % (state, _h(host), _h(_host_state(entry))))
        if entry["error"]:
            out.append("<p>%s</p>" % _h(entry["error"]))
            continue
        facts = entry["facts_summary"]
        out.append(
            "<p>Kernel %s, lockdown %s, tracefs at %s.</p>"
            % (_h(facts.get("kernel_release")), _h(facts.get("lockdown")), _h(facts.get("tracefs_path")))
        )
        out += ["<table>", "<tr><th>check</th><th>status</th><th>expected</th><th>actual</th><th>message</th></tr>"]
        out += [
            '<tr><td>%s</td><td class="%s">%s</td><td>%s</td><td>%s</td><td>%s</td></tr>'
            % (
                _h(check["check"]),
                check["status"],
                check["status"].upper(),
                _h(check["expected"]),
                _h(check["actual"]),
                _h(check["message"]),
            )
            for check in entry["checks"]
        ]
        out.append("</table>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


RENDERERS = {"json": render_json, "junit": render_junit, "markdown": render_markdown, "html": render_html}


# ---------------------------------------------------------------- files


def check_run_id(run_id) -> str:
    if not isinstance(run_id, str):
        raise AuditError("run_id=%r: a string is needed (it names a directory under dest)" % (run_id,))
    try:
        return _runs.check_run_id(run_id)
    except _runs.RunError as exc:
        raise AuditError(str(exc)) from None


def run_directory(dest: str, run_id: str) -> str:
    """<dest>/<run_id>, refusing a run directory that resolves outside dest (or to
    dest itself, through a symlink named like the run)."""
    dest = os.path.abspath(os.path.expanduser(dest))
    path = os.path.join(dest, check_run_id(run_id))
    try:
        inside(dest, run_id)
    except PathEscapeError:
        raise AuditError("run_id=%r: %s resolves outside %s" % (run_id, path, dest)) from None
    return path  # as given, not resolved: it is what the result reports


def _same_content(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read() == data
    except OSError:
        return False


def write_reports(report: dict, dest: str, formats: list[str], dry_run: bool = False) -> dict:
    """Write each format's file into <dest>/<run_id>/ (temp file + rename), leaving
    files that already hold the same bytes alone. With dry_run nothing is written;
    `written` then lists what would be."""
    unknown = [fmt for fmt in formats if fmt not in RENDERERS]
    if unknown or not formats:
        raise AuditError("formats=%r: choose from %s" % (formats, ", ".join(FORMATS)))
    directory = run_directory(dest, report["run_id"])
    files, written = {}, []
    for fmt in dict.fromkeys(formats):
        path = os.path.join(directory, FILE_NAMES[fmt])
        data = RENDERERS[fmt](report).encode("utf-8")
        files[fmt] = path
        if _same_content(path, data):
            continue
        written.append(path)
        if not dry_run:
            _runs.make_dirs(directory)
            _atomicfile.replace(path, data, mode=_runs.FILE_MODE)
    return {"path": directory, "files": files, "written": written}
