"""Runs on the controller: safe directory names, one run id per play, and a manifest
kept as one record per host, which parallel workers (and controllers) write without
losing each other's entries or waiting for each other's rewrite of manifest.json."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import re
import shutil
import stat
import subprocess
import threading
import unittest.mock

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result, _run_dir, _runs


def _manifest(run) -> dict:
    """manifest.json, brought up to date as the actions do after recording, and as the
    readers see the run (the two are the same)."""
    _runs.refresh_manifest(run)
    manifest = json.loads(open(os.path.join(run, "manifest.json")).read())
    assert manifest == _runs.assemble(run)[0]
    return manifest


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


def test_a_second_host_on_a_directory_is_refused(tmp_path, monkeypatch):
    """A host's record is named as its directory; a directory some other host of the
    run has (two names whose hashes meet) is never shared."""
    monkeypatch.setattr(_runs, "host_dir_name", lambda host: host.lower())
    run = _runs.run_dir(str(tmp_path), "run1")
    for host in ("Web01", "web01"):
        staging = _staging(tmp_path, host.encode())
        try:
            _runs.file_capture(run, host, str(staging), dict(name="trace"), None)
        except _runs.RunError as exc:
            assert "host 'web01': its directory 'web01' belongs to host 'Web01'" in str(exc)
            assert host == "web01"
        shutil.rmtree(staging)
    _runs.refresh_manifest(run)
    assert (tmp_path / "run1" / "web01" / "trace.dat").read_bytes() == b"Web01"
    assert sorted(os.listdir(run)) == [".manifest.lock", ".records", "manifest.json", "web01"]
    assert list(_manifest(run)["hosts"]) == ["Web01"]


@pytest.mark.parametrize("directory", ["manifest.json", "audit", "Report.html", ".hidden", ".", ".records", "a/b"])
def test_the_run_s_own_names_are_never_a_host_directory(tmp_path, monkeypatch, directory):
    """host_dir_name never makes one of them; file_capture checks it all the same."""
    monkeypatch.setattr(_runs, "host_dir_name", lambda host: directory)
    run = _runs.run_dir(str(tmp_path), "run1")
    staging = _staging(tmp_path)
    with pytest.raises(_runs.RunError):
        _runs.file_capture(run, "h", str(staging), dict(name="trace"), None)
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
    """One host's capture filed as the trace_capture action files it."""
    run, host = args
    staging = os.path.join(os.path.dirname(run), ".%s.partial" % _runs.host_dir_name(host))
    os.makedirs(staging)
    with open(os.path.join(staging, "trace.dat"), "wb") as handle:
        handle.write(host.encode() * 1000)
    _runs.file_capture(run, host, staging, dict(name="trace", events=len(host)), kernel="6.1.0")
    os.rmdir(staging)
    _runs.refresh_manifest(run)


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
        [_runs.host_dir_name(host) for host in hosts] + ["manifest.json", ".manifest.lock", ".records"]
    )
    assert manifest == _runs.assemble(run)[0]


def test_same_name_replaces_the_capture(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    for events in (1, 2):
        staging = _staging(tmp_path, b"x" * events)
        _runs.file_capture(run, "h", str(staging), dict(name="trace", events=events), None)
        staging.rmdir()
    captures = _manifest(run)["hosts"]["h"]["captures"]
    assert [capture["events"] for capture in captures] == [2]
    assert captures[0]["files"][0]["bytes"] == 2


def test_a_host_directory_that_leads_outside_is_refused(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(run, "planted"))
    staging = _staging(tmp_path)
    with pytest.raises(_runs.RunError, match="host 'planted' would land outside"):
        _runs.file_capture(run, "planted", str(staging), dict(name="trace"), None)
    assert os.listdir(tmp_path / "elsewhere") == []


def test_files_are_0600_and_directories_0700(tmp_path):
    """A trace.dat carries the host's kallsyms: what a run holds is private to the
    user, whatever the umask and whatever mode an older copy had."""
    old = os.umask(0o002)
    try:
        run = _runs.run_dir(str(tmp_path / "dest" / "deeper"), "run1")
        manifest = os.path.join(run, "manifest.json")
        for _attempt in range(2):
            staging = _staging(tmp_path)
            (staging / "trace.dat").chmod(0o644)
            _runs.file_capture(run, "h", str(staging), dict(name="trace"), None)
            _runs.refresh_manifest(run)
            staging.rmdir()
            assert stat.S_IMODE(os.stat(manifest).st_mode) == 0o600
            os.chmod(manifest, 0o644)  # a rewrite does not keep a mode someone changed
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(os.path.join(run, "h", "trace.dat")).st_mode) == 0o600
    records = ("dest/deeper/run1/.records", "dest/deeper/run1/.records/hosts")
    for directory in ("dest", "dest/deeper", "dest/deeper/run1", "dest/deeper/run1/h") + records:
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(os.stat(os.path.join(run, ".manifest.lock")).st_mode) == 0o600
    for path, _dirs, files in os.walk(os.path.join(run, ".records")):
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(path, name)).st_mode) == 0o600, name


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


def _staging(tmp_path, content=b"x", name="stage"):
    """A staging directory holding one trace.dat, as the fetch leaves it."""
    staging = tmp_path / name
    staging.mkdir()
    (staging / "trace.dat").write_bytes(content)
    return staging


def _capture(run, host, tmp_path):
    staging = _staging(tmp_path, name="stage-" + _runs.host_dir_name(host))
    _runs.file_capture(run, host, str(staging), dict(name="trace"), "6.1.0")
    staging.rmdir()


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
    _runs.refresh_manifest(run)
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
    _runs.refresh_manifest(run)
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
        _runs.refresh_manifest(run)
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


# ---------------------------------------------------------------- records and manifest.json


def _records(run) -> list:
    return sorted(os.listdir(os.path.join(run, ".records", "hosts")))


def test_filing_a_host_touches_no_other_host_s_record(tmp_path):
    """What makes a host's cost independent of the run's size: file_capture reads and
    writes the host's own record and nothing else of the manifest."""
    run = _runs.run_dir(str(tmp_path), "run1")
    for host in ("web01", "web02"):
        _capture(run, host, tmp_path)
    _runs.refresh_manifest(run)
    other = os.path.join(run, ".records", "hosts", "web01.json")
    before = os.stat(other)
    opened = []
    real_open = os.open

    def spying(path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return real_open(path, *args, **kwargs)

    with unittest.mock.patch.object(os, "open", spying):
        _capture(run, "web03", tmp_path)
    assert "web01.json" not in opened and "manifest.json" not in opened
    assert os.stat(other).st_mtime_ns == before.st_mtime_ns
    assert sorted(_manifest(run)["hosts"]) == ["web01", "web02", "web03"]


def test_a_refresh_rewrites_manifest_json_only_when_a_record_changed(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    _capture(run, "web01", tmp_path)
    assert _runs.refresh_manifest(run) is True
    data = open(os.path.join(run, "manifest.json"), "rb").read()
    assert _runs.refresh_manifest(run) is False
    assert open(os.path.join(run, "manifest.json"), "rb").read() == data
    assert sorted(os.listdir(os.path.join(run, ".records"))) == ["hosts", "refresh.lock", "run.json"]
    # manifest.json as documented: the run's fields, one host per line in its maps.
    lines = data.decode().splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and '    "web01": {"captures": [' in data.decode()
    assert [line.split(":")[0] for line in lines if line.startswith('  "')] == [
        '  "created"',
        '  "format"',
        '  "hosts"',
        '  "run_id"',
        '  "updated"',
    ]


def test_a_writer_waits_at_most_for_the_rewrite_under_way(tmp_path):
    """A worker that finds another one rewriting manifest.json waits for it and
    rewrites it once more, with its own record; a worker that finds one waiting too
    leaves at once: the one waiting reads the records after it."""
    run = _runs.run_dir(str(tmp_path), "run1")
    _capture(run, "web01", tmp_path)
    _runs.refresh_manifest(run)
    records = os.path.join(run, ".records")
    rewriting = _runs._flock(os.path.join(records, "refresh.lock"), wait=False)
    waiting = _runs._flock(os.path.join(records, "refresh-next.lock"), wait=False)
    assert rewriting is not None and waiting is not None  # two other workers, in this process
    _capture(run, "web02", tmp_path)
    assert _runs.refresh_manifest(run) is False  # at once
    assert sorted(json.loads(open(os.path.join(run, "manifest.json")).read())["hosts"]) == ["web01"]
    # The readers see every record all the same.
    assert sorted(_run_dir.load_manifest(run)["hosts"]) == ["web01", "web02"]
    os.close(waiting)
    _capture(run, "web03", tmp_path)
    threading.Timer(0.3, os.close, (rewriting,)).start()  # the rewrite under way ends
    assert _runs.refresh_manifest(run) is True  # waited for it, then rewrote it
    assert sorted(json.loads(open(os.path.join(run, "manifest.json")).read())["hosts"]) == ["web01", "web02", "web03"]
    assert _runs.refresh_manifest(run) is False  # nothing changed since


def _file_many(args):
    run, hosts = args
    for host in hosts:
        _file_one((run, host))


def _fail_some(args):
    run, hosts = args
    for host in hosts:
        _runs.record_failures(run, {host: dict(DOWN, reason="%s: down" % host)})
        _runs.refresh_manifest(run)


def test_concurrent_writers_leave_a_manifest_with_every_host(tmp_path):
    """Forked workers (and other controllers: the same locks) filing and failing hosts
    at once: when the last of them is done, manifest.json holds every host, nothing is
    left to refresh, and no temporary or staging file remains."""
    run = _runs.run_dir(str(tmp_path), "run1")
    captured = ["cap%03d" % index for index in range(60)]
    failed = ["down%02d" % index for index in range(12)]
    jobs = [(run, captured[start::6]) for start in range(6)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        results = [pool.apply_async(_file_many, (job,)) for job in jobs]
        results += [pool.apply_async(_fail_some, ((run, failed[start::2]),)) for start in range(2)]
        for result in results:
            result.get(timeout=120)
    manifest = json.loads(open(os.path.join(run, "manifest.json")).read())
    assert sorted(manifest["hosts"]) == captured and sorted(manifest["failed"]) == failed
    assert all(manifest["hosts"][host]["captures"][0]["events"] == len(host) for host in captured)
    assert manifest == _runs.assemble(run)[0]
    assert open(os.path.join(run, "manifest.json"), "rb").read() == _runs._Assembled(run).text()
    left = set(os.listdir(os.path.join(run, ".records"))) - {"refresh-next.lock"}  # made when a worker waited
    assert sorted(left) == ["hosts", "refresh.lock", "run.json"]
    assert _records(run) == sorted(host + ".json" for host in captured + failed)
    assert [name for name in os.listdir(tmp_path) if name != "run1"] == []


def test_a_crash_between_the_record_and_manifest_json_leaves_a_readable_run(tmp_path):
    """A worker killed after its record (before or during the rewrite of manifest.json,
    or in the middle of writing a record): the readers see every record, and the next
    refresh catches manifest.json up."""
    run = _runs.run_dir(str(tmp_path), "run1")
    _capture(run, "web01", tmp_path)
    _runs.refresh_manifest(run)
    _capture(run, "web02", tmp_path)  # and killed before refresh_manifest
    # A rewrite killed half-way: the flag taken, the lock released by the kernel.
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        _runs._flock(os.path.join(run, ".records", "refresh.lock"), wait=True)
        os.replace(os.path.join(run, ".records", "stale"), os.path.join(run, ".records", "refreshing"))
        os._exit(0)
    os.waitpid(child, 0)
    # A record write killed half-way leaves _atomicfile's temporary file.
    open(os.path.join(run, ".records", "hosts", ".web03.json.x1y2z3"), "w").write('"web03"\n{"dir": ')
    assert sorted(json.loads(open(os.path.join(run, "manifest.json")).read())["hosts"]) == ["web01"]
    problems: list = []
    manifest = _run_dir.load_manifest(run, problems)
    assert sorted(manifest["hosts"]) == ["web01", "web02"] and problems == []
    assert _runs.refresh_manifest(run) is True
    assert sorted(json.loads(open(os.path.join(run, "manifest.json")).read())["hosts"]) == ["web01", "web02"]
    assert not os.path.exists(os.path.join(run, ".records", "refreshing"))
    # manifest.json removed by hand: made again from the records.
    os.unlink(os.path.join(run, "manifest.json"))
    assert sorted(_manifest(run)["hosts"]) == ["web01", "web02"]


@pytest.mark.parametrize(
    "name, text, why",
    [
        # A record under another host's name: it could take over that host's entry.
        ("web02.json", '"web01"\n{"dir": "web01"}\nnull\n"2026-12-06T10:00:00Z"\n', "it records host 'web01'"),
        ("web02.json", '"web02"\n{"dir": \nnull\n"2026-12-06T10:00:00Z"\n', "Expecting value"),
        ("web02.json", '"web02"\n["web02"]\nnull\n"2026-12-06T10:00:00Z"\n', "hosts map is list"),
        ("web02.json", '"web02"\nnull\n"down"\n"2026-12-06T10:00:00Z"\n', "failed map is str"),
        ("web02.json", '{"host": "web02"}\n', "not the four lines"),
        ("web02.json", "5\nnull\nnull\nnull\n", "its host is int"),
        ("web02.json", b'"web02"\n{"dir": "\xff"}\nnull\nnull\n', "utf-8"),
        ("../web02.json", '"web02"\nnull\nnull\nnull\n', "not the name of a host's record"),
        ("Web02.json", '"Web02"\nnull\nnull\nnull\n', "not the name of a host's record"),
    ],
)
def test_a_hostile_record_is_left_out_by_the_one_assembly(tmp_path, name, text, why):
    """The readers (run_report, perfetto_export: _run_dir.load_manifest) and
    manifest.json go through the same assembly, which leaves out a record that is not
    the record of the host it names, and says why; what a kept record holds is then
    checked by _run_dir.checked_manifest as host data."""
    run = _runs.run_dir(str(tmp_path), "run1")
    _capture(run, "web01", tmp_path)
    hosts = os.path.join(run, ".records", "hosts")
    target = os.path.join(hosts, os.path.basename(name)) if "/" not in name else os.path.join(hosts, "x.json")
    with open(target, "wb") as handle:
        handle.write(text if isinstance(text, bytes) else text.encode())
    if "/" in name:  # a name no record has: planted as a symlink
        os.unlink(target)
        os.symlink(os.path.join(run, "web01", "trace.dat"), os.path.join(hosts, "x.json"))
    problems: list = []
    manifest = _run_dir.load_manifest(run, problems)
    assert list(manifest["hosts"]) == ["web01"] and "failed" not in manifest
    assert len(problems) == 1 and problems[0].startswith("'.records/hosts/") and problems[0].endswith("; left out")
    if "/" not in name:
        assert why in problems[0], problems
    assert _manifest(run)["hosts"].keys() == {"web01"}
    # A writer refuses to build on a record it cannot read, rather than lose it.
    if name == "web02.json" and "records host 'web01'" not in why:
        with pytest.raises(_runs.RunError, match="cannot be read as a host's record"):
            _capture(run, "web02", tmp_path)


def test_hostile_host_names_in_records_are_checked_as_host_data(tmp_path):
    """A record the controller wrote for a hostile inventory name is the host's: the
    schema (_host_result.MANIFEST) and file_in_run still decide what the readers use."""
    run = _runs.run_dir(str(tmp_path), "run1")
    for host in ("../../etc", "web\x1b[2J01"):
        _capture(run, host, tmp_path)
    record = os.path.join(run, ".records", "hosts", _runs.host_dir_name("../../etc") + ".json")
    lines = open(record).read().splitlines()
    lines[1] = json.dumps(dict(json.loads(lines[1]), captures=[{"name": "x", "files": [{"path": "../../outside"}]}]))
    lines[2] = json.dumps({"reason": 5})
    open(record, "w").write("\n".join(lines) + "\n")
    manifest, problems = _run_dir.checked_manifest(_run_dir.load_manifest(run))
    assert sorted(manifest["hosts"]) == ["../../etc", "web\x1b[2J01"]
    (entry,) = manifest["hosts"]["../../etc"]["captures"][0]["files"]
    assert _run_dir.file_in_run(run, entry["path"]) is None
    assert "reason" not in manifest["failed"]["../../etc"]
    assert problems == [
        "manifest.json.failed['../../etc'].reason=5: a string is expected, not int (left out of the report)"
    ]


def test_records_that_lead_outside_the_run_are_refused(tmp_path):
    run = _runs.run_dir(str(tmp_path), "run1")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(run, ".records"))
    staging = _staging(tmp_path)
    with pytest.raises(_runs.RunError, match=".records leads outside the run directory"):
        _runs.file_capture(run, "web01", str(staging), dict(name="trace"), None)
    with pytest.raises(_runs.RunError, match=".records leads outside the run directory"):
        _runs.record_failures(run, {"web07": DOWN})
    assert os.listdir(tmp_path / "elsewhere") == []


def test_a_run_an_older_version_wrote_becomes_records(tmp_path):
    """manifest.json without records (an older tracefleet.ftrace): the first writer
    makes each host's record from it; nothing it held is lost."""
    run = _runs.run_dir(str(tmp_path), "run1")
    older = {
        "format": 1,
        "run_id": "run1",
        "created": "2026-11-27T03:15:00Z",
        "updated": "2026-11-27T03:16:00Z",
        "hosts": {"web01": {"dir": "web01", "kernel": "6.1.0", "captures": [{"name": "trace", "events": 3}]}},
        "failed": {"web07": dict(DOWN, time="2026-11-27T03:16:00Z")},
        "sample": {
            "method": "sha256-rank",
            "group": "web",
            "group_size": 2,
            "size": "1",
            "seed": "s",
            "hosts": ["web01"],
        },
    }
    open(os.path.join(run, "manifest.json"), "w").write(json.dumps(older))
    assert _run_dir.load_manifest(run) == older  # read as it is until then
    _capture(run, "web02", tmp_path)
    manifest = _manifest(run)
    assert manifest["hosts"]["web01"] == older["hosts"]["web01"] and sorted(manifest["hosts"]) == ["web01", "web02"]
    assert manifest["failed"] == older["failed"] and manifest["sample"] == older["sample"]
    assert manifest["created"] == older["created"] and manifest["updated"] > older["updated"]


def test_an_older_run_with_other_directory_names_is_refused(tmp_path):
    """An older version kept upper case in directory names: a host whose directory
    this version names otherwise could share one on a case-insensitive disk."""
    run = _runs.run_dir(str(tmp_path), "run1")
    older = {"format": 1, "hosts": {"Web01": {"dir": "Web01", "captures": []}}}
    open(os.path.join(run, "manifest.json"), "w").write(json.dumps(older))
    with pytest.raises(_runs.RunError, match="host 'Web01' has its files in 'Web01'.*use another run id"):
        _capture(run, "web01", tmp_path)
    assert sorted(os.listdir(run)) == [".manifest.lock", "manifest.json"]


def test_a_refresh_parses_only_the_entries_manifest_json_does_not_hold_yet(tmp_path, monkeypatch):
    """Rewriting manifest.json reads every record but parses again only the entries
    that changed; what it writes is what the full assembly (the readers') makes."""
    run = _runs.run_dir(str(tmp_path), "run1")
    for host in ("web01", "web02", "web03"):
        _capture(run, host, tmp_path)
    _runs.refresh_manifest(run)
    _capture(run, "web04", tmp_path)
    _runs.record_failures(run, {"web02": DOWN})
    parsed = []
    real_loads = json.loads

    def counting(text, *args, **kwargs):
        if len(text) > 60 and not text.startswith("{\n"):  # an entry: not a name, a time, null or run.json
            parsed.append(text)
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    assert _runs.refresh_manifest(run) is True
    monkeypatch.setattr(json, "loads", real_loads)
    assert len(parsed) == 2 and '"web04/trace.dat"' in parsed[0] + parsed[1] and "No route" in parsed[0] + parsed[1]
    assert open(os.path.join(run, "manifest.json"), "rb").read() == _runs._Assembled(run).text()
    assert sorted(_manifest(run)["failed"]) == ["web02"]
