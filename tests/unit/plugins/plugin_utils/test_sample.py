# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host sample: sizes, seeds, the ranking, and its record in a run's manifest."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result, _runs, _sample

FLEET = ["web%02d" % number for number in range(1, 65)]


@pytest.mark.parametrize(
    "size, population, expected",
    [
        (5, 64, 5),
        ("5", 64, 5),
        (" 7 ", 64, 7),
        (100, 64, 64),
        (1, 1, 1),
        (3, 0, 0),
        ("10%", 64, 6),  # 6.4 rounded down
        ("10%", 5, 1),  # 0.5 rounded down, but at least one host
        ("100%", 64, 64),
        ("50%", 3, 1),
        ("2.5%", 200, 5),
        ("33.3%", 1000, 333),
        ("0.1%", 64, 1),
    ],
)
def test_count(size, population, expected):
    assert _sample.count(size, population) == expected


@pytest.mark.parametrize(
    "size", [0, "0", "0%", "0.0%", "101%", "-1", -1, "1.5", "ten", "", "%", "5 %", True, None, 2.5, [5], "1e3"]
)
def test_bad_sizes_are_refused_naming_the_value(size):
    with pytest.raises(_sample.SampleError, match="size="):
        _sample.count(size, 10)


@pytest.mark.parametrize("seed, text", [(42, "42"), ("42", "42"), ("incident-1234", "incident-1234"), (0, "0")])
def test_seed_text(seed, text):
    assert _sample.seed_text(seed) == text


@pytest.mark.parametrize(
    "seed", [None, True, 4.2, "", "x" * 257, ["a"], {"a": 1}, "s\n", "incident\x1b[2J", "a\u2028b", "\x00"]
)
def test_bad_seeds_are_refused(seed):
    with pytest.raises(_sample.SampleError, match="seed="):
        _sample.seed_text(seed)


def test_a_seed_with_a_control_character_is_refused_by_name_and_position():
    # It is recorded in the manifest and printed to be given again with -e.
    with pytest.raises(_sample.SampleError) as caught:
        _sample.seed_text("incident-1234\n")
    assert str(caught.value) == "seed='incident-1234\\n': it holds the non-printable character '\\n' at position 13"
    assert _sample.seed_text("incident 1234\twith a tab") == "incident 1234\twith a tab"


def test_the_ranking_is_sha256_of_seed_and_name():
    # Fixed by the method's definition, whatever the Python or ansible-core version.
    assert _sample.rank("42", "web01") == hashlib.sha256(b"42\0web01").digest()
    expected = sorted(FLEET, key=lambda host: hashlib.sha256(("s1\0" + host).encode()).hexdigest())[:5]
    assert sorted(_sample.draw(FLEET, 5, "s1")) == sorted(expected)


def test_a_seed_gives_the_same_sample_in_any_inventory_order():
    chosen = _sample.draw(FLEET, "10%", "incident-1234")
    assert len(chosen) == 6
    shuffled = list(FLEET)
    for attempt in range(20):
        random.Random(attempt).shuffle(shuffled)
        again = _sample.draw(shuffled, "10%", "incident-1234")
        assert sorted(again) == sorted(chosen)
        # ... and in the order of the list it was drawn from
        assert again == [host for host in shuffled if host in chosen]


def test_an_integer_seed_and_its_text_are_the_same_seed():
    assert _sample.draw(FLEET, 8, 20261103) == _sample.draw(FLEET, 8, "20261103")


def test_seeds_give_different_samples():
    samples = {tuple(_sample.draw(FLEET, 8, seed)) for seed in range(50)}
    assert len(samples) == 50


def test_every_host_can_be_drawn_and_about_evenly():
    hits = dict.fromkeys(FLEET, 0)
    for seed in range(2000):
        for host in _sample.draw(FLEET, 8, seed):
            hits[host] += 1
    # 2000 draws of 8 of 64: 250 per host on average.
    assert min(hits.values()) > 170 and max(hits.values()) < 330


def test_a_larger_sample_holds_the_smaller_one():
    smaller = set(_sample.draw(FLEET, 5, "x"))
    assert smaller < set(_sample.draw(FLEET, 20, "x"))
    assert set(_sample.draw(FLEET, "100%", "x")) == set(FLEET)


def test_a_host_joining_moves_no_other_host_out():
    before = set(_sample.draw(FLEET, 10, "x"))
    after = set(_sample.draw(FLEET + ["web65"], 10, "x"))
    assert len(before - after) <= 1
    assert before - after == set() or after - before == {"web65"}


def test_duplicates_count_once_and_an_empty_group_gives_no_hosts():
    assert sorted(_sample.draw(["a", "b", "a", "b"], 5, 1)) == ["a", "b"]
    assert _sample.draw([], 5, 1) == []


@pytest.mark.parametrize("hosts", ["web01", {"web01": 1}, 5, [1, 2], [None]])
def test_hosts_must_be_a_list_of_names(hosts):
    with pytest.raises(_sample.SampleError):
        _sample.draw(hosts, 1, 1)


def test_hosts_given_as_one_templated_string_are_named_by_the_plain_type():
    class TaggedStr(str):  # what ansible-core 2.19 makes of a templated string
        pass

    with pytest.raises(_sample.SampleError, match=r"must be a list of names, not str$"):
        _sample.draw(TaggedStr("web01,web02"), 1, 1)


def test_record_describes_the_sample():
    record = _sample.record("web", list(reversed(FLEET)), "10%", 7)
    assert record == {
        "method": _sample.METHOD,
        "group": "web",
        "group_size": 64,
        "size": "10%",
        "seed": "7",
        "hosts": sorted(_sample.draw(FLEET, "10%", 7)),
    }
    assert _host_result.check(_host_result.MANIFEST_SAMPLE, record) == record


def test_record_needs_the_group():
    with pytest.raises(_sample.SampleError, match="group="):
        _sample.record("", FLEET, 1, 1)
    with pytest.raises(_sample.SampleError, match=r"group='web\\nall': it holds the non-printable character"):
        _sample.record("web\nall", FLEET, 1, 1)


# ------------------------------------------------------------ the manifest


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "20261127T031500Z-1a2b3c4d"
    run.mkdir()
    (run / _runs.MANIFEST).write_text(json.dumps({"format": 1, "run_id": run.name, "hosts": {"web01": {}}}))
    return run


def manifest_of(run):
    """manifest.json, brought up to date as the run_sample action does after recording."""
    _runs.refresh_manifest(str(run))
    return json.loads((run / _runs.MANIFEST).read_text())


def test_record_sample_writes_once_and_keeps_the_hosts(run):
    record = _sample.record("web", FLEET, 5, "s")
    assert _runs.record_sample(str(run), record) is True
    first = manifest_of(run)
    assert first["sample"] == record
    assert first["hosts"] == {"web01": {}}
    assert (run / _runs.MANIFEST).stat().st_mode & 0o777 == _runs.FILE_MODE
    assert _runs.record_sample(str(run), dict(record)) is False
    assert manifest_of(run) == first


def test_record_sample_refuses_another_sample_and_changes_nothing(run):
    _runs.record_sample(str(run), _sample.record("web", FLEET, 5, "s"))
    before = json.dumps(manifest_of(run)).encode()
    with pytest.raises(_runs.RunError, match="already records another sample .seed='s', size='5'"):
        _runs.record_sample(str(run), _sample.record("web", FLEET, 5, "t"))
    assert json.dumps(manifest_of(run)).encode() == before


def test_record_sample_needs_a_manifest(tmp_path):
    with pytest.raises(_runs.RunError, match="no manifest yet"):
        _runs.record_sample(str(tmp_path), _sample.record("web", FLEET, 5, "s"))
    (tmp_path / _runs.MANIFEST).write_text("[]")
    with pytest.raises(_runs.RunError, match="not a tracefleet manifest"):
        _runs.record_sample(str(tmp_path), _sample.record("web", FLEET, 5, "s"))


@pytest.mark.parametrize(
    "change",
    [
        {"group_size": -1},
        {"size": "10"},  # fine: a count
        {"size": "ten"},
        {"seed": 7},
        {"hosts": "web01"},
        {"hosts": [1]},
        {"method": "Random.shuffle"},
        {"seed": "s\n"},
        {"seed": "s\x1b[2J"},
        {"group": "web\nall"},
        {"group_size": 1 << 21},
        {"hosts": ["web01"] * ((1 << 20) + 1)},
    ],
)
def test_record_sample_checks_the_record_before_writing(run, change):
    record = dict(_sample.record("web", FLEET, 5, "s"), **change)
    before = (run / _runs.MANIFEST).read_bytes()
    if change == {"size": "10"}:
        assert _runs.record_sample(str(run), record) is True
        return
    with pytest.raises(_host_result.HostResultError):
        _runs.record_sample(str(run), record)
    assert (run / _runs.MANIFEST).read_bytes() == before


def test_a_sample_read_back_is_checked_as_host_data():
    from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _run_dir

    good = _sample.record("web", FLEET, 3, "s")
    manifest, problems = _run_dir.checked_manifest({"format": 1, "hosts": {}, "sample": good})
    assert manifest["sample"] == good and problems == []
    manifest, problems = _run_dir.checked_manifest(
        {"format": 1, "hosts": {}, "sample": dict(good, group_size=float("nan"), hosts=["a", 5])}
    )
    assert manifest["sample"]["hosts"] == ["a"]
    assert "group_size" not in manifest["sample"]
    assert len(problems) == 2
    manifest, problems = _run_dir.checked_manifest(
        {"format": 1, "hosts": {}, "sample": dict(good, seed="s\n-e evil=1", group="web\x1b[2J")}
    )
    assert "seed" not in manifest["sample"] and "group" not in manifest["sample"]
    assert [problem.split(":")[0] for problem in problems] == [
        "manifest.json.sample.group='web\\x1b[2J'",
        "manifest.json.sample.seed='s\\n-e evil=1'",
    ]
