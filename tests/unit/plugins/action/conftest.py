# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the action plugins' tests share: the controller flag put back after each test,
and a runner for the controller-only actions."""

from __future__ import annotations

import importlib
from unittest.mock import MagicMock

import pytest
from ansible.module_utils import _internal


@pytest.fixture(autouse=True)
def controller(monkeypatch):
    """Importing controller code sets ansible's process-wide `is_controller` flag, after
    which a module's warnings go to the display instead of its result, and the module
    tests that look for them fail. So the controller side is imported inside the tests,
    and the flag is put back after each one."""
    monkeypatch.setattr(_internal, "is_controller", True)
    yield


def _run_controller_action(name, args, check_mode=False):
    from ansible.playbook.play_context import PlayContext

    module = importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.action." + name)
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


@pytest.fixture
def run_action():
    """run_action(name, args, check_mode=False): the result of the controller-only
    action plugin `name`, driven the way the task executor drives it, with a
    connection that fails the test if it is ever used."""
    return _run_controller_action
