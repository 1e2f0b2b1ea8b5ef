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

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result, _runs


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


# ---------------------------------------------------------------- failed hosts (record_failures)

DOWN = {"reason": "Failed to connect to the host via ssh: No route to host", "unreachable": True, "task": "probe"}
STOPPED = {"reason": "the workload exited with rc 2", "task": "tracefleet.ftrace.session : Capture"}


def _capture(run, host, tmp_path):
    staging = tmp_path / ("stage-" + host)
    staging.mkdir()
    (staging / "trace.dat").write_bytes(b"x")
    _runs.file_capture(run, host, host, str(staging), dict(name="trace"), "6.1.0")
    staging.rmdir()


def _manifest(run) -> dict:
    return json.loads(open(os.path.join(run, "manifest.json")).read())


def test_failures_make_the_manifest_of_a_run_nobody_captured_in(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    records, changed = _runs.record_failures(run, {"web07": DOWN, "web19": STOPPED})
    assert changed == ["web07", "web19"]
    manifest = _manifest(run)
    assert manifest["format"] == _runs.FORMAT and manifest["run_id"] == "run1" and manifest["hosts"] == {}
    assert manifest["created"] and manifest["updated"]
    assert manifest["failed"] == records
    assert records["web07"] == dict(DOWN, time=records["web07"]["time"])
    assert records["web19"] == dict(STOPPED, unreachable=False, time=records["web19"]["time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", records["web19"]["time"])
    assert stat.S_IMODE(os.stat(os.path.join(run, "manifest.json")).st_mode) == 0o600


def test_failures_join_the_captures_and_a_host_keeps_its_own(tmp_path):
    """A host that failed after its capture (at the teardown) is failed and keeps the capture."""
    run = _runs.run_dir(str(tmp_path), "run1")
    for host in ("web01", "web02"):
        _capture(run, host, tmp_path)
    before = _manifest(run)
    _records, changed = _runs.record_failures(run, {"web02": {"reason": "teardown: busy", "task": "teardown"}})
    manifest = _manifest(run)
    assert changed == ["web02"] and list(manifest["failed"]) == ["web02"]
    assert manifest["hosts"] == before["hosts"] and manifest["created"] == before["created"]
    assert manifest["failed"]["web02"]["reason"] == "teardown: busy"


def test_recording_the_same_failures_again_changes_nothing(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    first, _changed = _runs.record_failures(run, {"web07": DOWN})
    data = open(os.path.join(run, "manifest.json"), "rb").read()
    # The next batch of a rollout records every host that failed so far.
    records, changed = _runs.record_failures(run, {"web07": dict(DOWN), "web19": STOPPED})
    assert changed == ["web19"] and records["web07"] == first["web07"]
    again, changed = _runs.record_failures(run, {"web07": DOWN, "web19": STOPPED})
    assert changed == [] and again == records
    # A host already recorded and not named again stays; another reason replaces its record.
    _records, changed = _runs.record_failures(run, {"web19": dict(STOPPED, reason="another")})
    assert changed == ["web19"]
    manifest = _manifest(run)
    assert sorted(manifest["failed"]) == ["web07", "web19"] and manifest["failed"]["web19"]["reason"] == "another"
    assert manifest["failed"]["web07"] == first["web07"]
    assert data != open(os.path.join(run, "manifest.json"), "rb").read()


def test_no_failures_and_a_dry_run_write_nothing(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    assert _runs.record_failures(run, {}) == ({}, [])
    records, changed = _runs.record_failures(run, {"web07": DOWN}, dry_run=True)
    assert changed == ["web07"] and records["web07"]["reason"] == DOWN["reason"]
    assert os.listdir(run) == []


def test_a_later_capture_of_a_failed_host_ends_its_record(tmp_path):
    """The run id used again for another try: the host that failed is captured now."""
    run = _runs.run_dir(str(tmp_path), "run1")
    _runs.record_failures(run, {"web07": DOWN, "web19": STOPPED})
    _capture(run, "web07", tmp_path)
    manifest = _manifest(run)
    assert list(manifest["failed"]) == ["web19"] and list(manifest["hosts"]) == ["web07"]


@pytest.mark.parametrize(
    "failure, expected",
    [
        # Kept whatever it holds, as one line of harmless text.
        ({"reason": "line one\nline two\r\n"}, "line one line two "),
        ({"reason": "\x1b[31mred\x1b[0m \x00 \u202eevil"}, "\\x1b[31mred\\x1b[0m \\x00 \\u202eevil"),
        ({"reason": "undecodable \udcff byte"}, "undecodable \\udcff byte"),
        ({"reason": ""}, ""),
    ],
)
def test_a_hostile_reason_is_kept_harmless(tmp_path, failure, expected):
    run = _runs.run_dir(str(tmp_path), "run1")
    records, _changed = _runs.record_failures(run, {"web07": failure})
    assert records["web07"]["reason"] == expected
    assert _manifest(run)["failed"]["web07"]["reason"] == expected


def test_a_long_reason_or_task_is_cut_not_refused(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    reason = "E" * 50 + "y" * (10 << 20)
    records, _changed = _runs.record_failures(run, {"web07": {"reason": reason, "task": "t" * 1000}})
    kept = records["web07"]
    assert len(kept["reason"]) == 2000 and kept["reason"].startswith("E" * 50)
    assert kept["reason"].endswith("... (cut: %d characters)" % len(reason))
    assert len(kept["task"]) == 255 and kept["task"].endswith("(cut: 1000 characters)")
    # Escapes lengthen a text: it is cut all the same.
    records, _changed = _runs.record_failures(run, {"web08": {"reason": "\x1b" * 1999}})
    assert len(records["web08"]["reason"]) == 2000 and records["web08"]["reason"].startswith("\\x1b")
    assert os.path.getsize(os.path.join(run, "manifest.json")) < 10000


@pytest.mark.parametrize(
    "failures, message",
    [
        ({"web07": {"reason": 5}}, r"failures\['web07'\]\.reason=5: a string is expected, not int"),
        ({"web07": {"reason": ["a"]}}, r"reason=\['a'\]: a string is expected, not list"),
        ({"web07": {"reason": None}}, r"reason=None: a value is required"),
        ({"web07": {"unreachable": True}}, r"failures\['web07'\]\.reason=None: missing"),
        ({"web07": {"reason": "x", "unreachable": "yes"}}, r"unreachable='yes': true or false is expected"),
        ({"web07": {"reason": "x", "task": 3}}, r"task=3: a string is expected"),
        ({"web07": {"reason": "x", "rc": 1}}, r"failures\['web07'\]\.rc=1: a key this result never has"),
        ({"web07": "down"}, r"failures\['web07'\]='down': a dict is expected, not str"),
        ({5: DOWN}, r"failures key=5: a string is expected, not int"),
        ({"w" * 5000: DOWN}, r"failures key='w+'\.\.\. \(5000 characters\): longer than 4096"),
        ({"web07\udcff": DOWN}, r"not valid Unicode"),
    ],
)
def test_failures_of_the_wrong_type_are_refused_and_nothing_is_written(tmp_path, failures, message):
    run = _runs.run_dir(str(tmp_path), "run1")
    with pytest.raises(_host_result.HostResultError, match=message):
        _runs.record_failures(run, dict(failures, web01=DOWN))
    assert os.listdir(run) == []


def test_a_manifest_whose_failed_field_is_not_a_map_is_refused(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    path = os.path.join(run, "manifest.json")
    open(path, "w").write(json.dumps({"format": 1, "hosts": {}, "failed": ["web07"]}))
    with pytest.raises(_runs.RunError, match="its `failed` field is not a map of hosts"):
        _runs.record_failures(run, {"web07": DOWN})
    open(path, "w").write(json.dumps({"format": 1}))
    with pytest.raises(_runs.RunError, match="not a tracefleet manifest"):
        _runs.record_failures(run, {"web07": DOWN})
    assert json.loads(open(path).read()) == {"format": 1}


def _file_or_fail(args):
    run, host = args
    if host.startswith("down"):
        _runs.record_failures(run, {host: dict(DOWN, reason="%s: %s" % (host, DOWN["reason"]))})
    else:
        _file_one(args)


def test_failures_recorded_while_hosts_are_filed_lose_nothing(tmp_path):
    """The manifest's lock covers the failures too: none of them, and no capture, is lost."""
    run = _runs.run_dir(str(tmp_path), "run1")
    hosts = ["host%02d" % index for index in range(8)] + ["down%02d" % index for index in range(8)]
    with multiprocessing.get_context("fork").Pool(6) as pool:
        pool.map(_file_or_fail, [(run, host) for host in hosts])
    manifest = _manifest(run)
    assert sorted(manifest["hosts"]) == hosts[:8] and sorted(manifest["failed"]) == hosts[8:]
    assert all(record["reason"].startswith(host) for host, record in manifest["failed"].items())
