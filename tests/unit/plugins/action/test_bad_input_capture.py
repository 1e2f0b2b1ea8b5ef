# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The molecule bad-input suite's trace_capture cases (cases/capture.yml), as a task
runs them: the action plugin validates the task and runs the real module, in this
process, on a fake tracefs with the instance `bad` (and, for the open-window cases,
the window converge.yml leaves open in session bad-input). Each case fails with its
message and no traceback, before the module is run where the action refuses it, and
leaves the tracefs tree, the ledger and the controller's dest as they were."""

from __future__ import annotations

import json
import re
from unittest.mock import MagicMock

import bad_input_cases
import pytest
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.modules import trace_capture

# How the module's own failures begin; the action's refusals (its argument spec and
# _capture_spec.problem) come before the module is run.
MODULE_FAILURE = "trace_capture (instance="


def _cases():
    data = bad_input_cases.load("capture")
    return [pytest.param(variable, case, id=case["name"]) for variable, cases in sorted(data.items()) for case in cases]


@pytest.fixture(autouse=True)
def controller(monkeypatch):
    """Importing controller code sets ansible's process-wide `is_controller` flag; put
    it back after each test (see test_run_report_action.py)."""
    monkeypatch.setattr(_internal, "is_controller", True)
    yield


@pytest.fixture
def target(fake_host, tmp_path):
    """The VM after converge.yml, as far as trace_capture sees it: the instance `bad`
    with an event enabled, its ring buffer and stats, and a ledger."""
    fake_host.mount_tracefs()
    for name, text in {
        "tracing_on": "1\n",
        "trace": "# tracer: nop\n",
        "trace_clock": "[local] global\n",
        "current_tracer": "nop\n",
        "set_event": "sched:sched_switch\n",
        "set_event_notrace_pid": "",
        "events/sched/sched_switch/enable": "1\n",
        "per_cpu/cpu0/stats": "entries: 0\noverrun: 0\ncommit overrun: 0\ndropped events: 0\n",
        "per_cpu/cpu0/trace_pipe_raw": "",
    }.items():
        fake_host.write("tracing/instances/bad/" + name, text)
    (tmp_path / "remote-tmp").mkdir()
    return fake_host


def run_task(target, tmp_path, capsys, args: dict) -> tuple[dict, MagicMock]:
    """The task `args` through the action; the module runs here, on the fake host."""
    # Imported here: importing controller code sets `is_controller` (see the fixture).
    import importlib

    from ansible.errors import AnsibleActionFail
    from ansible.playbook.play_context import PlayContext

    plugin = importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.action.trace_capture")

    def execute(module_name, module_args=None, task_vars=None):
        module_args = dict(module_args, tracefs_path=str(target.tracing), ledger_path=str(tmp_path / "ledger.json"))
        _internal.is_controller = False
        try:
            with patch_module_args(module_args), pytest.raises(SystemExit):
                trace_capture.main()
        finally:
            _internal.is_controller = True
        return json.loads(capsys.readouterr().out)

    task = MagicMock()
    task.check_mode = False
    task.async_val = 0
    task.action = "tracefleet.ftrace.trace_capture"
    task.get_play.return_value = MagicMock(_uuid="play-1")
    task.args = dict({"dest": str(tmp_path / "controller" / "traces")}, **args)
    action = plugin.ActionModule(task, MagicMock(), PlayContext(), loader=None, templar=None, shared_loader_obj=None)
    action._load_name = "tracefleet.ftrace.trace_capture"
    action._make_tmp_path = MagicMock(return_value=str(tmp_path / "remote-tmp"))
    action._remove_tmp_path = MagicMock()
    action._execute_module = MagicMock(side_effect=execute)
    try:
        result = action.run(task_vars={"inventory_hostname": "mol-badinput"})
    except AnsibleActionFail as exc:  # the task's result, as the executor makes it
        result = {"failed": True, "msg": exc.message}
    return result, action._execute_module


def snapshot(tmp_path) -> dict:
    """The tracefs tree, the ledger and the controller's dest (the module's temporary
    directory on the target aside: the action removes it)."""
    found = {}
    for path in sorted(tmp_path.rglob("*")):
        if "remote-tmp" in path.parts:
            continue
        found[str(path)] = path.read_bytes() if path.is_file() else "dir"
    return found


@pytest.mark.parametrize("variable, case", _cases())
def test_case(target, tmp_path, capsys, variable, case):
    if variable.endswith("_open_window"):
        # converge.yml's "A capture window left open"
        opened, _module = run_task(
            target, tmp_path, capsys, {"instance": "bad", "state": "started", "session": "bad-input"}
        )
        assert not opened.get("failed"), opened
    before = snapshot(tmp_path)
    result, module = run_task(target, tmp_path, capsys, case["args"])
    assert result.get("failed") is True and not result.get("changed"), result
    assert "exception" not in result and "MODULE FAILURE" not in result["msg"]
    assert re.search(case["msg"], result["msg"]), (case["msg"], result["msg"])
    assert snapshot(tmp_path) == before
    assert module.called == result["msg"].startswith(MODULE_FAILURE), result["msg"]
