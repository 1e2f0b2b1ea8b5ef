# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run_sample action plugin and the sample filter, driven the way ansible drives
them, with a connection that fails the test if it is ever used."""

from __future__ import annotations

import json

import bad_input_cases
import pytest

FLEET = ["web%02d" % number for number in range(1, 21)]


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "traces" / "20261127T031500Z-1a2b3c4d"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"format": 1, "run_id": run.name, "hosts": {}}))
    return run


def args_for(run, **changes):
    return dict(dict(run_dir=str(run), group="web", hosts=FLEET, size="25%", seed="incident-1234"), **changes)


def test_records_the_sample_once(run, run_action):
    from ansible_collections.tracefleet.ftrace.plugins.filter.sample import sample

    result = run_action("run_sample", args_for(run))
    assert not result.get("failed"), result
    assert result["changed"] is True
    recorded = json.loads((run / "manifest.json").read_text())["sample"]
    assert recorded == result["sample"]
    assert recorded["hosts"] == sorted(sample(FLEET, "25%", "incident-1234"))
    assert len(recorded["hosts"]) == 5 and recorded["group_size"] == 20 and recorded["size"] == "25%"
    again = run_action("run_sample", args_for(run, hosts=list(reversed(FLEET))))
    assert again["changed"] is False and not again.get("failed")


def test_check_mode_writes_nothing(run, run_action):
    before = (run / "manifest.json").read_bytes()
    result = run_action("run_sample", args_for(run), check_mode=True)
    assert result["changed"] is False and len(result["sample"]["hosts"]) == 5
    assert (run / "manifest.json").read_bytes() == before


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"size": "0%"}, "size='0%'"),
        ({"seed": None}, "seed="),
        ({"group": ""}, "group="),
        ({"seed": "another"}, "already records another sample"),
    ],
)
def test_refusals_fail_the_task_and_change_nothing(run, changes, message, run_action):
    run_action("run_sample", args_for(run))
    before = (run / "manifest.json").read_bytes()
    result = run_action("run_sample", args_for(run, **changes))
    assert result.get("failed") and message in result["msg"], result
    assert (run / "manifest.json").read_bytes() == before


def test_a_missing_run_directory_fails(tmp_path, run_action):
    result = run_action("run_sample", args_for(tmp_path / "nope"))
    assert result.get("failed") and "no such directory" in result["msg"]
    assert not (tmp_path / "nope").exists()


def test_the_filter_names_itself_in_its_errors():
    from ansible.errors import AnsibleFilterError

    from ansible_collections.tracefleet.ftrace.plugins.filter.sample import FilterModule

    sample = FilterModule().filters()["sample"]
    assert sample(["b", "a", "c"], 3, 1) == ["b", "a", "c"]
    with pytest.raises(AnsibleFilterError, match=r"tracefleet.ftrace.sample: size='0%'"):
        sample(FLEET, "0%", 1)


def _bad_input_cases():
    cases = bad_input_cases.load("sample")["bad_input_cases_sample"]
    return [pytest.param(case, id=case["name"]) for case in cases]


@pytest.mark.parametrize("case", _bad_input_cases())
def test_bad_input_suite_sample_cases(case, run_action):
    """The molecule bad-input suite's sampling cases: the filter (as the rollout calls it)
    and run_sample refuse each with its message, and nothing is written."""
    import os
    import re

    from ansible.errors import AnsibleActionFail, AnsibleFilterError

    from ansible_collections.tracefleet.ftrace.plugins.filter.sample import FilterModule

    args = case["args"]
    if case["module"] == "sample":
        with pytest.raises(AnsibleFilterError) as caught:
            FilterModule().filters()["sample"](args["hosts"], args["size"], args["seed"])
        message = caught.value.message
    else:
        assert case["module"] == "run_sample"
        try:
            result = run_action("run_sample", dict(args))
        except AnsibleActionFail as exc:  # the task's result, as the executor makes it
            result = {"failed": True, "msg": exc.message}
        assert result.get("failed") is True and not result.get("changed"), result
        message = result["msg"]
        assert not os.path.exists(args["run_dir"])
    assert re.search(case["msg"], message), (case["msg"], message)
