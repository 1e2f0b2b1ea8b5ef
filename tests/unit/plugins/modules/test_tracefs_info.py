from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _locate
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


def test_not_mounted_reports_mounts_only(run):
    result = run()
    assert result["changed"] is False
    assert result["tracefs"]["mounted"] is False and result["usable"] is False
    assert "tracers" not in result and "drift" not in result
    assert result["debugfs"]["registered"] and result["debugfs"]["mount_allowed"]
    assert result["lockdown"] == "unknown"


def test_idle_host_has_no_drift(run, fake_host):
    fake_host.mount_tracefs()
    result = run()
    assert result["usable"] is True
    assert result["tracefs"]["path"] == str(fake_host.tracing)
    assert result["current_tracer"] == "nop"
    assert result["tracing_on"] is True
    assert result["buffer_size_kb"] == 1408
    assert result["trace_clock"] == "global"
    assert result["tracers"] == ["blk", "mmiotrace", "function_graph", "function", "nop"]
    assert result["instances"] == [] and result["enabled_events"] == []
    assert result["function_lists"]["set_ftrace_filter"] == []
    assert result["drift"] == []


def test_busy_host_drift(run, fake_host):
    fake_host.mount_tracefs()
    fake_host.tracefs_write("current_tracer", "function\n")
    fake_host.tracefs_write("tracing_on", "0\n")
    fake_host.tracefs_write("buffer_size_kb", "4096\n")
    fake_host.tracefs_write("trace_clock", "[local] global\n")
    fake_host.tracefs_write("trace_options", "noprint-parent\nsym-offset\nfuncgraph-proc\n")
    fake_host.tracefs_write("tracing_cpumask", "1\n")
    fake_host.tracefs_write("set_ftrace_filter", "do_sys_openat2\n")
    fake_host.tracefs_write("set_ftrace_pid", "42\n")
    fake_host.tracefs_write("set_event", "sched:sched_switch\n")
    fake_host.tracefs_write("events/sched/sched_switch/filter", "prev_pid == 1\n")
    fake_host.tracefs_write("events/sched/sched_switch/trigger", "traceoff:unlimited\n")
    fake_host.tracefs_write("dynamic_events", "p:tracefleet/open do_sys_openat2\n")
    fake_host.tracefs_write("error_log", "[ 25.4] trace_kprobe: error: Invalid probed address or symbol\n")
    (fake_host.tracing / "instances" / "other").mkdir()
    result = run()
    knobs = {item["knob"]: item for item in result["drift"]}
    assert knobs["current_tracer"]["value"] == "function"
    assert knobs["tracing_on"]["value"] is False
    assert knobs["buffer_size_kb"]["value"] == 4096
    assert knobs["trace_clock"] == {"knob": "trace_clock", "value": "local", "default": "global"}
    assert knobs["options/print-parent"]["value"] is False
    assert knobs["options/sym-offset"]["value"] is True
    assert "options/funcgraph-proc" not in knobs  # tracer-specific, not judged
    assert knobs["tracing_cpumask"]["default"] == "3"
    assert knobs["set_ftrace_filter"]["value"] == ["do_sys_openat2"]
    assert knobs["set_ftrace_pid"]["value"] == ["42"]
    assert knobs["events/sched/sched_switch/enable"]["value"] is True
    assert knobs["events/sched/sched_switch/filter"]["value"] == "prev_pid == 1"
    assert knobs["events/sched/sched_switch/trigger"]["value"] == ["traceoff:unlimited"]
    assert knobs["instances/other"]["value"] == "present"
    assert knobs["dynamic_events"]["value"] == ["p:tracefleet/open do_sys_openat2"]
    assert result["error_log"] == ["[ 25.4] trace_kprobe: error: Invalid probed address or symbol"]
    assert result["enabled_events"] == ["sched/sched_switch"]


def test_allocated_default_buffer_is_not_drift(run, fake_host):
    fake_host.mount_tracefs()
    fake_host.tracefs_write("buffer_size_kb", "1410\n")
    assert run()["drift"] == []


def test_instance_state(run, fake_host):
    fake_host.mount_tracefs()
    instance = fake_host.tracing / "instances" / "tf"
    instance.mkdir()
    for name in ("trace", "tracing_on", "current_tracer", "trace_clock", "buffer_size_kb"):
        (instance / name).write_text(
            {
                "tracing_on": "1\n",
                "current_tracer": "nop\n",
                "trace_clock": "[local] global\n",
                "buffer_size_kb": "1410 (expanded: 1408)\n",
            }.get(name, "")
        )
    result = run({"instance": "tf"})
    assert result["instance"] == "tf"
    assert result["drift"] == []  # instances default to the local clock
    assert "instances" not in result and "dynamic_events" not in result


@pytest.mark.parametrize("name", ["missing", "../etc", "a/b", ".."])
def test_bad_or_missing_instance(run, fake_host, name):
    fake_host.mount_tracefs()
    result = run({"instance": name})
    assert result["failed"] is True
    assert "instance=%r" % name in result["msg"]


def test_lockdown_confidentiality_empty_tracefs(run, fake_host):
    fake_host.write("proc/cmdline", "lockdown=confidentiality\n")
    fake_host.mount_tracefs(files={})
    result = run()
    assert result["tracefs"]["mounted"] is True
    assert result["usable"] is False
    assert result["lockdown"] == "confidentiality" and result["lockdown_source"] == "cmdline"
    assert "tracers" not in result


def test_debugfs_off(run, fake_host):
    fake_host.write("proc/filesystems", "nodev\tsysfs\nnodev\ttracefs\n")
    fake_host.write("proc/cmdline", "debugfs=off\n")
    (fake_host.root / "sys/kernel/debug").rmdir()
    result = run({"gather": ["mounts"]})
    assert result["debugfs"] == {
        "registered": False,
        "mounted": False,
        "mount_point_exists": False,
        "mountpoints": [],
        "mount_allowed": False,
        "policy": "off",
        "policy_source": "cmdline",
        # A systemd unit and an fstab line cannot bring back what the kernel refuses.
        "boot": {"systemd_unit": None, "fstab_mount_points": [], "kept_unmounted": True},
    }


def test_debugfs_boot_facts_from_systemd_and_fstab(run, fake_host):
    fake_host.write("etc/fstab", "debugfs /sys/kernel/debug debugfs noauto 0 0\n")
    fake_host.write("lib/systemd/system/sys-kernel-debug.mount", "[Mount]\n")
    result = run({"gather": ["mounts"]})
    assert result["debugfs"]["boot"] == {
        "systemd_unit": "unmasked",
        "fstab_mount_points": ["/sys/kernel/debug"],
        "kept_unmounted": False,
    }
    (fake_host.root / "etc/systemd/system").mkdir(parents=True)
    os.symlink("/dev/null", fake_host.root / "etc/systemd/system/sys-kernel-debug.mount")
    result = run({"gather": ["mounts"]})
    # Masked, and the only fstab line is noauto: nothing mounts debugfs at boot.
    assert result["debugfs"]["boot"] == {
        "systemd_unit": "masked",
        "fstab_mount_points": ["/sys/kernel/debug"],
        "kept_unmounted": True,
    }
    assert result["changed"] is False


def test_gather_mounts_only(run, fake_host):
    fake_host.mount_tracefs()
    result = run({"gather": ["mounts"]})
    assert result["usable"] is True and "tracers" not in result and "drift" not in result


def test_unreadable_mount_table_fails_cleanly(run, fake_host):
    fake_host.mountinfo("garbage line without separator\n")
    result = run()
    assert result["failed"] is True and "mount table" in result["msg"]


def test_unknown_option_rejected(run):
    result = run({"bogus": 1})
    assert result["failed"] is True and "bogus" in result["msg"]


@pytest.mark.parametrize("name", [".hidden", "x" * 65])
def test_instance_names_follow_the_one_rule(run, fake_host, name):
    """A leading '.' or more than 64 characters were accepted here once; the rule of
    _instance.validate_name applies now, as everywhere else."""
    fake_host.mount_tracefs()
    result = run({"instance": name})
    assert result["failed"] is True
    assert result["msg"].startswith("instance=%r is not a valid instance name" % name)


def test_missing_instance_result_carries_the_facts(run, fake_host):
    fake_host.mount_tracefs()
    result = run({"instance": "missing"})
    assert result["msg"] == "instance='missing' does not exist (no %s)" % (fake_host.tracing / "instances" / "missing")
    assert result["usable"] is True and result["tracefs"]["mounted"] is True


@pytest.mark.parametrize("reading, fact, drift", [(None, None, None), ("4\n", 4, None), ("8\n", 8, 8)])
def test_subbuf_size_fact_and_drift(run, fake_host, monkeypatch, reading, fact, drift):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _knob_state

    monkeypatch.setattr(_knob_state, "system_page_size", lambda: 4096)
    fake_host.mount_tracefs()
    if reading is not None:
        fake_host.tracefs_write("buffer_subbuf_size_kb", reading)
    result = run()
    assert result["buffer_subbuf_size_kb"] == fact
    knobs = {item["knob"]: item for item in result["drift"]}
    if drift is None:
        assert "buffer_subbuf_size_kb" not in knobs
    else:
        assert knobs["buffer_subbuf_size_kb"] == {"knob": "buffer_subbuf_size_kb", "value": drift, "default": 4}
