"""Runs on the controller: safe directory names, one run id per play, and a manifest
that parallel workers update without losing each other's entries."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _runs


@pytest.mark.parametrize(
    "host, safe",
    [
        ("web01", "web01"),
        ("web01.example.org", "web01.example.org"),
        ("../x", None),
        ("..", None),
        ("a/b", None),
        ("a b", None),
        (".hidden", None),
    ],
)
def test_host_dir_name_is_one_safe_component(host, safe):
    name = _runs.host_dir_name(host)
    if safe is not None:
        assert name == safe
    else:
        assert "/" not in name and not name.startswith(".") and name not in ("", ".", "..")
        assert name != host
    assert os.path.basename(name) == name


def test_changed_names_never_collide():
    assert _runs.host_dir_name("a/b") != _runs.host_dir_name("a_b")
    assert _runs.host_dir_name("a/b") != _runs.host_dir_name("a:b")


@pytest.mark.parametrize("run_id", ["../x", ".hidden", "a/b", "", "x" * 201])
def test_bad_run_ids(run_id):
    with pytest.raises(_runs.RunError, match="run_id="):
        _runs.check_run_id(run_id)


def test_play_run_id_is_shared_per_key(tmp_path):
    first = _runs.play_run_id(str(tmp_path), "123-play-a")
    assert _runs.play_run_id(str(tmp_path), "123-play-a") == first
    other = _runs.play_run_id(str(tmp_path), "123-play-b")
    assert other != first
    assert _runs.check_run_id(first) == first


def _file_one(args):
    run, host = args
    staging = os.path.join(run, ".%s.partial" % _runs.host_dir_name(host))
    os.makedirs(staging)
    with open(os.path.join(staging, "trace.dat"), "wb") as handle:
        handle.write(host.encode() * 1000)
    _runs.file_capture(
        run, host, _runs.host_dir_name(host), staging, dict(name="trace", events=len(host)), kernel="6.1.0"
    )
    os.rmdir(staging)


def test_parallel_hosts_all_land_in_the_manifest(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    hosts = ["host%02d" % index for index in range(12)] + ["../escape"]
    with multiprocessing.get_context("fork").Pool(6) as pool:
        pool.map(_file_one, [(run, host) for host in hosts])
    manifest = json.loads((tmp_path / "run1" / "manifest.json").read_text())
    assert sorted(manifest["hosts"]) == sorted(hosts)
    escape = manifest["hosts"]["../escape"]
    assert escape["dir"].startswith("_escape-")
    path = tmp_path / "run1" / escape["captures"][0]["files"][0]["path"]
    assert path.read_bytes() == b"../escape" * 1000
    assert not (tmp_path / "escape").exists()
    assert sorted(os.listdir(run)) == sorted(
        [_runs.host_dir_name(host) for host in hosts] + ["manifest.json", ".manifest.lock"]
    )


def test_same_name_replaces_the_capture(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    for events in (1, 2):
        staging = tmp_path / "stage"
        staging.mkdir()
        (staging / "trace.dat").write_bytes(b"x" * events)
        _runs.file_capture(run, "h", "h", str(staging), dict(name="trace", events=events), None)
        staging.rmdir()
    manifest = json.loads((tmp_path / "run1" / "manifest.json").read_text())
    captures = manifest["hosts"]["h"]["captures"]
    assert [capture["events"] for capture in captures] == [2]
    assert captures[0]["files"][0]["bytes"] == 2


def test_a_host_directory_that_leads_outside_is_refused(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(run, "planted"))
    staging = tmp_path / "stage"
    staging.mkdir()
    (staging / "trace.dat").write_bytes(b"x")
    with pytest.raises(_runs.RunError, match="host 'h' would land outside"):
        _runs.file_capture(run, "h", "planted", str(staging), dict(name="trace"), None)
    assert os.listdir(tmp_path / "elsewhere") == []


def test_the_manifest_gets_the_mode_of_a_new_file(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    manifest = tmp_path / "run1" / "manifest.json"
    for _attempt in range(2):
        staging = tmp_path / "stage"
        staging.mkdir()
        (staging / "trace.dat").write_bytes(b"x")
        _runs.file_capture(run, "h", "h", str(staging), dict(name="trace"), None)
        staging.rmdir()
        assert stat.S_IMODE(manifest.stat().st_mode) == _runs.new_file_mode()
        manifest.chmod(0o600)  # a rewrite does not keep a mode someone changed
