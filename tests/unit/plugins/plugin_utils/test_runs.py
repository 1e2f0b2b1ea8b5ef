"""Runs on the controller: safe directory names, one run id per play, and a manifest
that parallel workers update without losing each other's entries."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import re
import shutil
import stat
import subprocess

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _runs


@pytest.mark.parametrize(
    "host, kept",
    [
        ("web01", True),
        ("web01.example.org", True),
        ("db_primary-2", True),
        ("../x", False),
        ("..", False),
        (".", False),
        ("a/b", False),
        ("a b", False),
        (".hidden", False),
        ("Web01", False),  # upper case: would share a directory with web01 on a case-insensitive disk
        ("manifest.json", False),  # the run's own files and directories
        ("report.html", False),
        ("audit", False),
        ("compliance.json", False),
        ("nul", False),  # a device name on some file systems
        ("nul.example.org", False),
        ("web01.", False),
        ("x" * 101, False),
        ("-x", False),
        ("web01\n", False),
        ("w\x00b", False),
        ("\udcff", False),
        ("é", False),
    ],
)
def test_host_dir_name_is_one_safe_component(host, kept):
    name = _runs.host_dir_name(host)
    assert (name == host) is kept
    assert os.path.basename(name) == name and name not in ("", ".", "..") and not name.startswith(".")
    assert name == name.lower() and name.casefold() not in _runs.RESERVED
    assert re.fullmatch(r"[a-z0-9._+-]{1,120}", name)
    assert ("+" in name) is not kept


def test_host_dir_names_never_collide():
    hosts = ["a/b", "a_b", "a:b", "Web01", "web01", "WEB01", "manifest.json", "Manifest.json", "audit", "AUDIT"]
    hosts += ["..", ".", "", "report.html", "x+1234567890ab"]
    names = [_runs.host_dir_name(host) for host in hosts]
    assert len({name.casefold() for name in names}) == len(hosts)


def test_a_second_host_on_a_directory_is_refused(tmp_path):
    """The manifest records host -> directory; a directory some other host of the run
    has (an older run's naming, or a hash that meets) is never shared."""
    run = _runs.run_dir(str(tmp_path), "run1")
    for host, directory in (("Web01", "web01"), ("web01", "WEB01")):
        staging = tmp_path / "stage"
        staging.mkdir()
        (staging / "trace.dat").write_bytes(host.encode())
        try:
            _runs.file_capture(run, host, directory, str(staging), dict(name="trace"), None)
        except _runs.RunError as exc:
            assert "host 'web01': its directory 'WEB01' belongs to host 'Web01'" in str(exc)
            assert host == "web01"
        shutil.rmtree(staging)
    assert (tmp_path / "run1" / "web01" / "trace.dat").read_bytes() == b"Web01"
    assert sorted(os.listdir(run)) == [".manifest.lock", "manifest.json", "web01"]


@pytest.mark.parametrize("directory", ["manifest.json", "audit", "Report.html", ".hidden", "."])
def test_the_run_s_own_names_are_never_a_host_directory(tmp_path, directory):
    run = _runs.run_dir(str(tmp_path), "run1")
    staging = tmp_path / "stage"
    staging.mkdir()
    (staging / "trace.dat").write_bytes(b"x")
    with pytest.raises(_runs.RunError):
        _runs.file_capture(run, "h", directory, str(staging), dict(name="trace"), None)
    assert os.listdir(run) == []


@pytest.mark.parametrize("run_id", ["../x", ".hidden", "a/b", "", "x" * 201, "r1\n", "r\x00", 5])
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
    assert escape["dir"].startswith("escape+")
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


def test_files_are_0600_and_directories_0700(tmp_path):
    """A trace.dat carries the host's kallsyms: what a run holds is private to the
    user, whatever the umask and whatever mode an older copy had."""
    old = os.umask(0o002)
    try:
        run = _runs.run_dir(str(tmp_path / "dest" / "deeper"), "run1")
        manifest = os.path.join(run, "manifest.json")
        for _attempt in range(2):
            staging = tmp_path / "stage"
            staging.mkdir()
            (staging / "trace.dat").write_bytes(b"x")
            (staging / "trace.dat").chmod(0o644)
            _runs.file_capture(run, "h", "h", str(staging), dict(name="trace"), None)
            staging.rmdir()
            assert stat.S_IMODE(os.stat(manifest).st_mode) == 0o600
            os.chmod(manifest, 0o644)  # a rewrite does not keep a mode someone changed
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(os.path.join(run, "h", "trace.dat")).st_mode) == 0o600
    for directory in ("dest", "dest/deeper", "dest/deeper/run1", "dest/deeper/run1/h"):
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(os.stat(os.path.join(run, ".manifest.lock")).st_mode) == 0o600


def _tree(root) -> list:
    return sorted(
        (os.path.relpath(os.path.join(path, name), root), os.lstat(os.path.join(path, name)).st_mode)
        for path, dirs, files in os.walk(root)
        for name in dirs + files
    )


@pytest.mark.parametrize(
    "make, dest, run_id, words",
    [
        (lambda root: (root / "file").write_text("x"), "file", "r1", "is not a directory"),
        (lambda root: (root / "file").write_text("x"), "file/below", None, "file is not a directory"),
        (lambda root: (root / "ro").mkdir(mode=0o500), "ro/new", "r1", "is not writable by this user"),
        (lambda root: (root / "d").mkdir(), "d", "../x", "run_id="),
        (lambda root: (root / "d").mkdir(), "d", "r1\n", "run_id="),
        (lambda root: (root / "d").mkdir() or (root / "d" / ".run-ids.json").write_text("{"), "d", None, "not valid"),
        (
            lambda root: (root / "d").mkdir() or (root / "out").mkdir() or os.symlink(root / "out", root / "d" / "r1"),
            "d",
            "r1",
            "leads outside dest",
        ),
    ],
)
def test_an_unusable_dest_is_found_before_anything_is_written(tmp_path, make, dest, run_id, words):
    make(tmp_path)
    before = _tree(tmp_path)
    if os.geteuid() == 0 and "writable" in words:
        pytest.skip("root may write anywhere")
    with pytest.raises(_runs.RunError, match=re.escape(words)):
        _runs.check_dest(str(tmp_path / dest), run_id)
    assert _tree(tmp_path) == before


def test_a_usable_dest_is_not_created_by_the_check(tmp_path):
    _runs.check_dest(str(tmp_path / "a" / "b"), "r1")
    _runs.check_dest(str(tmp_path / "a" / "b"), None)
    assert os.listdir(tmp_path) == []


def _packed(tmp_path, method, data):
    path = tmp_path / ("packed." + method)
    if method == "gzip":
        with gzip.open(path, "wb") as out:
            out.write(data)
    elif method == "zstd":
        subprocess.run(["zstd", "-q", "-f", "-o", str(path)], input=data, check=True)
    else:
        path.write_bytes(data)
    return path


METHODS = ["none", "gzip"] + (["zstd"] if shutil.which("zstd") else [])


@pytest.mark.parametrize("method", METHODS)
def test_unpack_stops_at_the_size_the_host_reported(tmp_path, method):
    data = os.urandom(3 << 20)
    packed = _packed(tmp_path, method, data)
    _runs.unpack(method, str(packed), str(tmp_path / "exact"), len(data))
    assert (tmp_path / "exact").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "exact").stat().st_mode) == 0o600
    with pytest.raises(_runs.RunError, match="unpacks to more than the 1000 bytes the host reported"):
        _runs.unpack(method, str(packed), str(tmp_path / "bomb"), 1000)
    assert (tmp_path / "bomb").stat().st_size <= 1000
    with pytest.raises(_runs.RunError, match="unpacks to %d bytes, the host reported %d" % (len(data), len(data) + 1)):
        _runs.unpack(method, str(packed), str(tmp_path / "short"), len(data) + 1)


def test_unpack_refuses_what_it_does_not_know(tmp_path):
    packed = _packed(tmp_path, "none", b"x")
    with pytest.raises(_runs.RunError, match="compress='lz4'"):
        _runs.unpack("lz4", str(packed), str(tmp_path / "out"), 1)
    (tmp_path / "damaged.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(_runs.RunError, match="damaged"):
        _runs.unpack("gzip", str(tmp_path / "damaged.gz"), str(tmp_path / "out2"), 10)
