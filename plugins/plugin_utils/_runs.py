# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs on the controller: <dest>/<run_id>/<host>/ directories and the run's manifest.json.

Hosts of one play are captured by parallel worker processes, so everything that
more than one of them touches (the run id of a play, the manifest) is read and
written under an exclusive lock, and replaced atomically (`_atomicfile.replace`).
Host names come from the inventory and are only ever used as one path component,
through `host_dir_name`, whose mapping is collision-free by construction (see there),
and `_paths.inside` checks. Everything written here is private to the user running
ansible-playbook: directories tracefleet creates are 0700, files 0600 (DIR_MODE,
FILE_MODE), whatever the umask, since a trace.dat carries the host's kallsyms.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import typing
import zlib

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile
from ansible_collections.tracefleet.ftrace.plugins.module_utils._compress import sha256
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._paths import PathEscapeError, inside

MANIFEST = "manifest.json"
REPORT = "report.html"  # run_report
PERFETTO = "perfetto.tar"  # perfetto_export
AUDIT_DIR = "audit"  # where run_report looks for audit_report's files
AUDIT_FILES = {
    "json": "compliance.json",
    "junit": "compliance-junit.xml",
    "markdown": "compliance.md",
    "html": "compliance.html",
}
FORMAT = 1
RUN_IDS = ".run-ids.json"
KEEP_RUN_IDS = 200
DIR_MODE = 0o700
FILE_MODE = 0o600
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# A host directory named as the inventory name: lower case, so that no two of them
# fold onto one directory on a case-insensitive disk.
_KEPT = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
# The run directory's own names, and names some file systems treat as devices.
RESERVED = frozenset(
    [MANIFEST, REPORT, PERFETTO, AUDIT_DIR]
    + list(AUDIT_FILES.values())
    + ["con", "prn", "aux", "nul"]
    + ["com%d" % number for number in range(10)]
    + ["lpt%d" % number for number in range(10)]
)


class RunError(TracefleetError):
    """A run id, run directory or manifest that cannot be used."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _SAFE.fullmatch(run_id) or len(run_id) > 200:
        raise RunError(
            "run_id=%r: use letters, digits, '.', '_' and '-', not starting with "
            "'.' (it names a directory under dest)" % (run_id,)
        )
    return run_id


def capture_file_name(name: str, fmt: str) -> str:
    """The controller's name for a capture's file: the task's `name` and the format's
    suffix, never a name a host returned."""
    if not isinstance(name, str) or not _SAFE.fullmatch(name) or len(name) > 200:
        raise RunError("name=%r: use letters, digits, '.', '_' and '-', not starting with '.' (it names a file)" % name)
    return name + {"dat": ".dat", "text": ".txt"}[fmt]


def host_dir_name(host: str) -> str:
    """The directory of an inventory name in a run: one path component, and a
    different one for every name, on case-insensitive disks too.

    A name of lower-case letters, digits, '.', '_' and '-' (starting with a letter or
    digit, at most 100 characters, not ending with '.') that is none of the run's own
    names (RESERVED: manifest.json, report.html, perfetto.tar, audit, the audit's files, and device
    names such as nul) is the directory's name as it is. Any other name (upper case,
    other characters, reserved, hidden, too long) becomes its lower-cased, sanitised
    stem, '+', and 12 hex digits of the name's sha256: `Web01` -> `web01+3f0c...`.
    Kept names hold no '+' and encoded names one, so the two kinds never meet; all of
    them are lower case, so none folds onto another; and file_capture refuses the
    (2^-48) case of two encoded names that still meet."""
    if (
        isinstance(host, str)
        and _KEPT.fullmatch(host)
        and not host.endswith(".")
        and host not in RESERVED
        and host.split(".")[0] not in RESERVED
    ):
        return host
    text = str(host)
    stem = re.sub(r"[^a-z0-9._-]", "_", text.lower()).lstrip("._-")[:64].rstrip(".") or "host"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return "%s+%s" % (stem, digest)


def make_dirs(path: str) -> list:
    """Create `path` and any missing parents with DIR_MODE (existing directories keep
    theirs). Returns the directories it created, the deepest last."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    created = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        os.chmod(directory, DIR_MODE)
        created.append(directory)
    return created


def remove_empty(directories: list) -> None:
    """Remove the directories `make_dirs` created, deepest first, as long as they
    are empty (another host's worker may have put something there meanwhile)."""
    for directory in reversed(directories):
        try:
            os.rmdir(directory)
        except OSError:
            return


def check_dest(dest: str, run_id: str | None) -> None:
    """Before anything is captured: can <dest>[/<run_id>] be made and written into by
    this user? Looks only (the deepest part that exists must be a writable directory
    on a writable file system); creates nothing."""
    if run_id is not None:
        check_run_id(run_id)
    target = os.path.join(dest, run_id) if run_id else dest
    probe = target
    while True:
        try:
            info = os.stat(probe)
            break
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(probe)
            if parent == probe:
                raise RunError("dest=%r: no part of %s exists" % (dest, target)) from None
            probe = parent
        except OSError as exc:
            raise RunError("dest=%r: %s cannot be used: %s" % (dest, probe, exc.strerror or exc)) from None
    if not stat.S_ISDIR(info.st_mode):
        raise RunError("dest=%r: %s is not a directory" % (dest, probe))
    if os.statvfs(probe).f_flag & os.ST_RDONLY:
        raise RunError("dest=%r: %s is on a read-only file system" % (dest, probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunError("dest=%r: %s is not writable by this user (uid %d)" % (dest, probe, os.geteuid()))
    if run_id and probe == target:
        try:
            inside(dest, run_id)
        except PathEscapeError:
            raise RunError("run_id=%r: %s leads outside dest=%r" % (run_id, target, dest)) from None
    if not run_id:
        _load(os.path.join(dest, RUN_IDS), {})


def free_bytes(path: str) -> int:
    """Bytes an unprivileged user may still write on the file system of `path` (or of
    the deepest part of it that exists)."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


@contextlib.contextmanager
def _locked(path: str):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load(path: str, default):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise RunError("%s is not valid JSON (%s); move it away" % (path, exc))


def new_file_mode() -> int:
    """The mode of every file written into a run (traces, manifest, reports), whatever
    mode an older copy had and whatever the umask."""
    return FILE_MODE


def _save(path: str, data) -> None:
    _atomicfile.replace(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode=FILE_MODE)


def play_run_id(dest: str, key: str) -> str:
    """The run id of the play identified by `key`: made by the first host that asks,
    found by the others."""
    make_dirs(dest)
    with _locked(os.path.join(dest, ".run-ids.lock")):
        path = os.path.join(dest, RUN_IDS)
        known = _load(path, {})
        if key not in known:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            known[key] = "%s-%s" % (stamp, secrets.token_hex(4))
            if len(known) > KEEP_RUN_IDS:
                for old in sorted(known, key=known.get)[: len(known) - KEEP_RUN_IDS]:
                    del known[old]
            _save(path, known)
        return known[key]


def run_dir(dest: str, run_id: str) -> str:
    path = os.path.join(dest, check_run_id(run_id))
    make_dirs(path)
    try:
        inside(dest, run_id)
    except PathEscapeError:
        raise RunError("run_id=%r: %s leads outside dest=%r" % (run_id, path, dest)) from None
    return path


CHUNK = 1 << 20


def unpack(method: str, source: str, target: str, expected: int) -> None:
    """Decompress `source` (as `method` says: zstd, gzip or none) into the new file
    `target` (FILE_MODE), which must come to exactly `expected` bytes, what the host
    said it unpacks to: a file that would unpack to more is cut off there and refused
    (a small file from a hostile host cannot fill the controller's disk), one that
    unpacks to less is refused too. Raises RunError; `target` is the caller's to
    remove."""
    process = None
    reader: typing.Any
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(os.fdopen(fd, "wb"))
        if method == "none":
            reader = stack.enter_context(open(source, "rb"))
        elif method == "gzip":
            reader = stack.enter_context(gzip.open(source, "rb"))
        elif method == "zstd":
            program = shutil.which("zstd")
            if program is None:
                raise RunError("the capture is zstd-compressed and there is no zstd program on the controller")
            process = subprocess.Popen(
                [program, "-q", "-d", "-c", "--", source], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            stack.callback(_reap, process)
            reader = process.stdout
        else:
            raise RunError("compress=%r: not a compression the controller knows" % (method,))
        written = 0
        try:
            while True:
                block = reader.read(min(CHUNK, expected - written + 1))
                if not block:
                    break
                written += len(block)
                if written > expected:
                    raise RunError(
                        "the capture unpacks to more than the %d bytes the host reported (raw_bytes); "
                        "stopped there" % expected
                    )
                out.write(block)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise RunError("the capture arrived damaged (%s: %s)" % (method, exc)) from None
        if process is not None:
            problem = process.stderr.read(4096).decode(errors="replace").strip() if process.stderr else ""
            if process.wait() != 0:
                raise RunError("the capture arrived damaged (zstd: %s)" % (problem or "rc %d" % process.returncode))
    if written != expected:
        raise RunError("the capture unpacks to %d bytes, the host reported %d (raw_bytes)" % (written, expected))


def _reap(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _host_records(manifest, path: str) -> dict:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("hosts"), dict):
        raise RunError("%s is not a tracefleet manifest (no hosts); move it away" % path)
    return manifest["hosts"]


def file_capture(run: str, host: str, host_dir: str, staging: str, entry: dict, kernel: str | None) -> list:
    """Move the files of one capture from `staging` into the host's directory and add
    the capture to the manifest (which records host -> directory). Returns the
    manifest's file entries. Refuses a directory another host of the run has."""
    target = os.path.join(run, host_dir)
    try:
        inside(run, host_dir)
    except PathEscapeError:
        raise RunError("host %r would land outside %s" % (host, run)) from None
    if host_dir.casefold() in RESERVED or host_dir.startswith("."):
        raise RunError("host %r: %r is one of the run's own names" % (host, host_dir))
    files = []
    for name in sorted(os.listdir(staging)):
        path = os.path.join(staging, name)
        os.chmod(path, FILE_MODE)
        files.append(dict(path="%s/%s" % (host_dir, name), bytes=os.path.getsize(path), sha256=sha256(path)))
    with _locked(os.path.join(run, ".manifest.lock")):
        path = os.path.join(run, MANIFEST)
        manifest = _load(path, None) or dict(format=FORMAT, run_id=os.path.basename(run), created=_now(), hosts={})
        hosts = _host_records(manifest, path)
        for other, record in hosts.items():
            known = record.get("dir") if isinstance(record, dict) else None
            if other != host and isinstance(known, str) and known.casefold() == host_dir.casefold():
                raise RunError(
                    "host %r: its directory %r belongs to host %r in this run (case-insensitively)"
                    % (host, host_dir, other)
                )
        make_dirs(target)
        for name in sorted(os.listdir(staging)):
            # A rename (the staging directory is in dest); a copy across file systems.
            shutil.move(os.path.join(staging, name), os.path.join(target, name))
        record = hosts.setdefault(host, dict(dir=host_dir, captures=[]))
        if not isinstance(record, dict) or not isinstance(record.get("captures"), list):
            record = hosts[host] = dict(dir=host_dir, captures=[])
        record["dir"] = host_dir
        if kernel:
            record["kernel"] = kernel
        record["captures"] = [
            old for old in record["captures"] if not isinstance(old, dict) or old.get("name") != entry["name"]
        ]
        record["captures"].append(dict(entry, files=files))
        # A host recorded as failed in this run (record_failures) that is captured now
        # (the run id used again for another try) is no longer one.
        failed = manifest.get("failed")
        if isinstance(failed, dict):
            failed.pop(host, None)
        manifest["updated"] = _now()
        _save(path, manifest)
    return files


def record_sample(run: str, sample: dict) -> bool:
    """Keep the run's host sample (what `_sample.record` returns) in its manifest, the
    `sample` field, under the manifest's lock. The record is checked against the schema
    the readers use (_host_result.MANIFEST_SAMPLE) before anything is written. Every
    host of a sampled rollout records the same sample: the first writes it, the others
    find it there (returns False). A run whose manifest holds another sample (a run id
    used again with another seed or size) is refused: one run, one sample."""
    checked = _host_result.check(_host_result.MANIFEST_SAMPLE, sample, "sample")
    if checked is None:
        raise RunError("sample: a sample record is expected")
    with _locked(os.path.join(run, ".manifest.lock")):
        path = os.path.join(run, MANIFEST)
        manifest = _load(path, None)
        if manifest is None:
            raise RunError("%s: no manifest yet (a sample is recorded after a capture of the run)" % path)
        _host_records(manifest, path)
        known = manifest.get("sample")
        if known == checked:
            return False
        if known is not None:
            fields = known if isinstance(known, dict) else {}
            raise RunError(
                "%s already records another sample (seed=%s, size=%s); a run holds one sample: "
                "use another run id (session_run_id) for another sample"
                % (path, _host_result.show(fields.get("seed")), _host_result.show(fields.get("size")))
            )
        manifest["sample"] = checked
        manifest["updated"] = _now()
        _save(path, manifest)
    return True


def record_failures(run: str, failures: dict, dry_run: bool = False) -> tuple[dict, list]:
    """Keep the hosts of the run that failed or were unreachable in its manifest, the
    `failed` map (host -> reason, unreachable, task, time), under the manifest's lock.
    `failures` (host -> reason, unreachable, task) is host data, checked against
    _host_result.FAILURES first: a reason is kept as one line of harmless text of at
    most MAX_REASON characters, a value of the wrong type refuses the whole record.
    A host already recorded with the same reason, reachability and task keeps its
    record and its time; a host's captures stay as they are (a host may fail after its
    capture, at the teardown). A run with no manifest yet (every host failed before a
    capture) gets one, with no hosts. Returns (the records of `failures` as the
    manifest holds them, or would with dry_run, the hosts whose record is new or
    changed); with dry_run nothing is written."""
    checked = _host_result.check(_host_result.FAILURES, failures, "failures")
    if not checked:
        return {}, []
    path = os.path.join(run, MANIFEST)
    with _locked(os.path.join(run, ".manifest.lock")) if not dry_run else contextlib.nullcontext():
        manifest = _load(path, None)
        if manifest is None:
            manifest = dict(format=FORMAT, run_id=os.path.basename(run), created=_now(), hosts={})
        _host_records(manifest, path)
        failed = manifest.setdefault("failed", {})
        if not isinstance(failed, dict):
            raise RunError("%s: its `failed` field is not a map of hosts; move the manifest away" % path)
        now = _now()
        records, changed = {}, []
        for host, failure in sorted(checked.items()):
            record = dict(reason=failure["reason"], unreachable=failure.get("unreachable", False))
            record["task"] = failure.get("task") or None
            known = failed.get(host)
            if isinstance(known, dict) and {key: known.get(key) for key in record} == record:
                records[host] = dict(record, time=known.get("time"))
                continue
            record["time"] = now
            failed[host] = records[host] = record
            changed.append(host)
        if changed and not dry_run:
            manifest["updated"] = now
            _save(path, manifest)
    return records, changed
