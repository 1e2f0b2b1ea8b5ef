# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The modules' documentation against itself: EXAMPLES use only documented options
(suboptions too), give every task a name, are tasks rather than plays, and together
exercise every option a user would set; seealso links point where their titles say.

The documentation is read as YAML, with the collection's own doc fragments merged the
way ansible-doc merges them (ansible-core's loader needs a configured plugin path and
differs between the versions the tests run on)."""

from __future__ import annotations

import importlib
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py"))
PREFIX = "tracefleet.ftrace."

# Options every module of a kind shares through a doc fragment, and which an example
# need not show on each module: where the ledger lives and which tracefs to use.
PLUMBING = {"ledger_path", "tracefs_path"}
# trace_capture's docs belong to its own owner (issue 18 splits the work); checked
# for names and task form like the others, not for coverage.
COVERAGE_EXEMPT = {"trace_capture"}


def _module(name: str):
    return importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.modules." + name)


def _fragment_options(reference: str) -> dict:
    """The options a `tracefleet.ftrace.NAME[.VAR]` fragment adds (others add none)."""
    if not reference.startswith(PREFIX):
        return {}
    name, _dot, variable = reference[len(PREFIX) :].partition(".")
    fragment = importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.doc_fragments." + name)
    text = getattr(fragment.ModuleDocFragment, variable or "DOCUMENTATION")
    return (yaml.safe_load(text) or {}).get("options") or {}


def documented_options(name: str) -> dict:
    doc = yaml.safe_load(_module(name).DOCUMENTATION)
    options: dict = {}
    for reference in doc.get("extends_documentation_fragment") or []:
        options.update(_fragment_options(reference))
    options.update(doc.get("options") or {})
    return options


def example_tasks(name: str) -> list[dict]:
    return yaml.safe_load(_module(name).EXAMPLES)


def module_calls(name: str) -> list[tuple[str, dict]]:
    """(task name, arguments) of every example task that calls the module."""
    return [
        (task.get("name"), task[PREFIX + name] or {})
        for task in example_tasks(name)
        if isinstance(task, dict) and PREFIX + name in task
    ]


def _check_arguments(where: str, arguments: dict, options: dict) -> list[str]:
    problems = []
    for key, value in arguments.items():
        if key not in options:
            problems.append("%s: %r is not a documented option" % (where, key))
            continue
        suboptions = options[key].get("suboptions")
        if suboptions and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    problems.extend(_check_arguments("%s.%s" % (where, key), item, suboptions))
        elif suboptions and isinstance(value, dict):
            problems.extend(_check_arguments("%s.%s" % (where, key), value, suboptions))
    return problems


@pytest.mark.parametrize("name", MODULES)
def test_examples_are_named_tasks(name):
    tasks = example_tasks(name)
    assert isinstance(tasks, list) and tasks
    for task in tasks:
        assert "hosts" not in task and "tasks" not in task, "%s EXAMPLES hold a play, not tasks" % name
        assert task.get("name"), "%s: an example task has no name: %r" % (name, task)
        modules = [key for key in task if "." in key]
        assert len(modules) == 1 and modules[0].count(".") == 2, "%s: %r calls no FQCN module" % (name, task)


@pytest.mark.parametrize("name", MODULES)
def test_examples_use_documented_options(name):
    problems = []
    for task in example_tasks(name):
        for key, arguments in task.items():
            if key.startswith(PREFIX) and isinstance(arguments, dict):
                module = key[len(PREFIX) :]
                problems.extend(_check_arguments(task["name"], arguments, documented_options(module)))
    assert not problems


@pytest.mark.parametrize("name", [name for name in MODULES if name not in COVERAGE_EXEMPT])
def test_examples_exercise_every_option(name):
    used = set()
    for _task, arguments in module_calls(name):
        used.update(arguments)
    assert set(documented_options(name)) - PLUMBING - used == set()


@pytest.mark.parametrize(
    ("name", "option", "value"),
    [
        ("trace_probe", "type", "uretprobe"),
        ("trace_probe", "type", "kretprobe"),
        ("trace_probe", "type", "uprobe"),
        ("trace_probe", "state", "absent"),
        ("trace_instance", "state", "absent"),
        ("tracefs", "state", "unmounted"),
    ],
)
def test_examples_show_each_kind(name, option, value):
    assert any(arguments.get(option) == value for _task, arguments in module_calls(name))


def test_a_uprobe_example_by_file_offset():
    targets = [arguments.get("target", "") for _task, arguments in module_calls("trace_probe")]
    assert any(":0x" in target for target in targets)


@pytest.mark.parametrize("name", MODULES)
def test_seealso_links_to_collection_guides_point_at_them(name):
    for entry in yaml.safe_load(_module(name).DOCUMENTATION).get("seealso") or []:
        if "link" not in entry:
            continue
        if "collection" in entry.get("description", "") or "guide" in entry.get("description", ""):
            guide = entry["link"].rpartition("/blob/main/")[2]
            assert guide.startswith("docs/") and os.path.isfile(os.path.join(ROOT, guide)), entry
