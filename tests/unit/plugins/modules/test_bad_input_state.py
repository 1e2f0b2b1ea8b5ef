"""The state modules' cases of the molecule bad-input suite, run on a fake tracefs tree:
each fails, matches its message, reports no traceback and changes nothing. Cases whose
refusal comes from the kernel itself (a filter, a trigger or a fetcharg it rejects) are
left to the real kernel; the ones that need a setup task get it here."""

from __future__ import annotations

import json
import os
import re
import shutil

import bad_input_cases
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _probes
from ansible_collections.tracefleet.ftrace.plugins.modules import (
    teardown,
    trace_event,
    trace_instance,
    trace_probe,
    tracer,
)

MODULES = {
    "trace_instance": trace_instance,
    "tracer": tracer,
    "trace_event": trace_event,
    "trace_probe": trace_probe,
    "teardown": teardown,
}
# Refused by the kernel itself: only the real kernel can say no here.
KERNEL_REFUSALS = (
    "a filter the kernel rejects",
    "a trigger the kernel rejects",
    "a fetcharg the kernel rejects",
    "a kernel-rejected replacement",
)
TRIGGERS = "# Available triggers:\n# traceon traceoff snapshot stacktrace enable_event disable_event\n"


def _load():
    data = bad_input_cases.load("state")
    cases = []
    for variable, items in data.items():
        for case in items:
            marks = [pytest.mark.skip("refused by the real kernel")] if case["name"].startswith(KERNEL_REFUSALS) else []
            cases.append(pytest.param(variable, case, marks=marks, id=case["name"]))
    return cases


def test_the_suite_has_enough_state_cases():
    data = bad_input_cases.load("state")
    assert len(data["bad_input_cases_state"]) >= 25
    assert {case["module"] for case in data["bad_input_cases_state"]} == set(MODULES)


@pytest.fixture
def host(fake_host, tmp_path, monkeypatch):
    files = {
        "trace": "",
        "error_log": "",
        "current_tracer": "nop\n",
        "tracing_on": "1\n",
        "available_tracers": "function function_graph nop\n",
        "trace_clock": "[local] global mono\n",
        "buffer_size_kb": "1408\n",
        "tracing_cpumask": "3\n",
        "set_event": "",
        "set_ftrace_filter": "",
        "set_event_pid": "",
        "set_ftrace_pid": "no pid\n",
        "dynamic_events": "p:tracefleet/known do_sys_openat2\n",
        "available_filter_functions": "do_sys_openat2\nvfs_read\nvfs_write\n",
    }
    fake_host.mount_tracefs(files)
    bad = fake_host.tracing / "instances" / "bad"
    for name, text in dict(
        files,
        set_event="sched:sched_switch\n",
        **{
            "options/overwrite": "1\n",
            "events/sched/sched_switch/enable": "1\n",
            "events/sched/sched_switch/filter": "prev_pid != 0\n",
            "events/sched/sched_switch/trigger": TRIGGERS,
        },
    ).items():
        path = bad / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (fake_host.tracing / "per_cpu" / "cpu0").mkdir(parents=True)
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("0 T do_sys_openat2\n0 T vfs_read\n")
    real = _probes.kprobe_target
    monkeypatch.setattr(_probes, "kprobe_target", lambda t, kind, target: real(t, kind, target, str(kallsyms)))
    # the setups the pending cases need (under /tmp on the VM; under tmp_path here)
    setup = tmp_path / "setup"
    setup.mkdir()
    os.mkfifo(str(setup / "tracefleet-bad-fifo"))
    (setup / "tracefleet-bad-ledger").mkdir()
    (setup / "tracefleet-bad-ledger" / "ledger.json").write_text(
        json.dumps({"format": 1, "entries": [{"kind": "knob", "session": "x", "instance": None, "file": "tracing_on"}]})
    )
    (setup / "tracefleet-bad-ledger" / "ledger.json.lock").write_text("")
    (setup / "tracefleet-bad-lock").mkdir()
    (setup / "tracefleet-bad-lock" / "ledger.json.lock").symlink_to("/etc/passwd")
    hostile = setup / "tf-bad\n-:known"
    shutil.copy("/bin/true", str(hostile))
    (setup / "tf-clean").symlink_to(hostile)
    ledger = tmp_path / "ledger.json"
    (tmp_path / "ledger.json.lock").write_text("")  # the setup's tasks made it
    ledger.write_text(
        json.dumps(
            {
                "format": 1,
                "entries": [
                    {"kind": "probe", "group": "tracefleet", "event": "known", "session": "bad-input", "time": 0},
                    {"kind": "instance", "name": "bad", "session": "bad-input", "time": 0},
                ],
            }
        )
    )
    return fake_host, setup, ledger


def snapshot(root):
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path)] = "-> " + os.readlink(path)
        elif path.is_file() and not path.is_fifo():
            found[str(path)] = path.read_bytes()
        else:
            found[str(path)] = "dir" if path.is_dir() else "other"
    return found


@pytest.mark.parametrize("variable, case", _load())
def test_case(host, tmp_path, capsys, variable, case):
    fake_host, setup, ledger = host
    args = json.loads(json.dumps(case["args"]).replace("/tmp/", str(setup) + "/"))
    args.setdefault("ledger_path", str(ledger))
    args.setdefault("tracefs_path", str(fake_host.tracing))
    pattern = case["msg"].replace("/tmp/", str(setup) + "/")
    before = snapshot(tmp_path)
    with patch_module_args(args), pytest.raises(SystemExit):
        MODULES[case["module"]].main()
    result = json.loads(capsys.readouterr().out)
    assert result.get("failed") is True, result
    assert not result.get("changed")
    assert "exception" not in result and "MODULE FAILURE" not in result["msg"]
    assert re.search(pattern, result["msg"]), (pattern, result["msg"])
    assert snapshot(tmp_path) == before
