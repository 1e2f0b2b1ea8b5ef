# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs on the controller: <dest>/<run_id>/<host>/ directories and the run's manifest.json.

Hosts of one play are captured by parallel worker processes, so everything that
more than one of them touches (the run id of a play, the manifest) is read and
written under an exclusive lock, and replaced atomically (`_atomicfile.replace`).
The manifest is kept as one record per host under <run>/.records/ (and one for the
run's own fields), so that filing a host costs the same whatever the run already
holds; manifest.json is made of the records (`_Assembled`, the one place that puts
them together, for the readers too: `assemble`), rewritten by one process at a time
for all the records written before it (`refresh_manifest`).
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


# ---------------------------------------------------------------- the records and the manifest
#
# <run>/.records/run.json          the run's own fields: format, run_id, created, updated, sample
# <run>/.records/hosts/<dir>.json  one record per host, named as its directory (host_dir_name)
# <run>/manifest.json              made of them (refresh_manifest), for people and tools
#
# A host's record is four lines, each one JSON value: the host's inventory name, its
# entry in the manifest's `hosts` map (or null), its entry in the `failed` map (or
# null), and when the record was written. manifest.json is made of those lines as they
# are, so rewriting it serialises nothing again, and parses only the entries that are
# not in manifest.json already (those were checked when it was written).

RECORDS = ".records"
RUN_RECORD = "run.json"
HOST_RECORDS = "hosts"
# A record changed since manifest.json was last written.
_STALE = "stale"
# manifest.json is being rewritten (left behind by a process killed meanwhile: the next
# refresh starts again).
_REFRESHING = "refreshing"
_REFRESH_LOCK = "refresh.lock"
_NEXT_LOCK = "refresh-next.lock"
_RECORD_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]{0,119}\.json")
# The manifest's fields that the hosts' records make; the others are the run's own.
_FROM_RECORDS = ("hosts", "failed", "updated")


class _Record(typing.NamedTuple):
    host: str
    captured: dict | None  # the host's entry in the manifest's hosts map
    failed: dict | None  # its entry in the failed map
    updated: str | None
    lines: tuple  # the text of the host's name and of its two entries, as stored


# An entry found, as it is, in manifest.json: known to be a map, not parsed again.
_IN_MANIFEST: dict = {}


def _record_text(host: str, captured: dict | None, failed: dict | None) -> bytes:
    values = (host, captured, failed, _now())
    return "".join(json.dumps(value, sort_keys=True) + "\n" for value in values).encode("ascii")


def _parse_record(name: str, data: bytes, known: frozenset = frozenset()) -> _Record:
    """The record stored as `name`; raises ValueError saying why it is not one. An
    entry whose line of manifest.json is in `known` is not parsed again (it is
    _IN_MANIFEST)."""
    if not _RECORD_NAME.fullmatch(name):
        raise ValueError("not the name of a host's record")
    lines = data.decode("utf-8").split("\n")
    if len(lines) != 5 or lines[4]:
        raise ValueError("not the four lines of a host's record")
    host, updated = json.loads(lines[0]), json.loads(lines[3])
    captured, failed = (
        None
        if line == "null"
        else _IN_MANIFEST
        if "    %s: %s" % (lines[0], line) in known or "    %s: %s," % (lines[0], line) in known
        else json.loads(line)
        for line in lines[1:3]
    )
    if not isinstance(host, str):
        raise ValueError("its host is %s, not a name" % type(host).__name__)
    if host_dir_name(host) + ".json" != name:
        raise ValueError("it records host %s, whose record is %s.json" % (_host_result.show(host), host_dir_name(host)))
    for field, value in (("hosts", captured), ("failed", failed)):
        if value is not None and not isinstance(value, dict):
            raise ValueError("its entry in the %s map is %s, not a map" % (field, type(value).__name__))
    return _Record(host, captured, failed, updated if isinstance(updated, str) else None, tuple(lines[:3]))


def _records_path(run: str, *parts: str) -> str:
    try:
        return inside(run, RECORDS, *parts)
    except PathEscapeError:
        raise RunError("%s: %s leads outside the run directory" % (run, RECORDS)) from None


def has_records(run: str) -> bool:
    """Whether the run keeps its manifest as records (a run an older tracefleet.ftrace
    wrote, or one copied without its hidden files, has only manifest.json)."""
    return os.path.isfile(os.path.join(run, RECORDS, RUN_RECORD))


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _run_fields(run: str) -> dict:
    path = _records_path(run, RUN_RECORD)
    fields = _load(path, None)
    if not isinstance(fields, dict):
        raise RunError("%s is not the record of a tracefleet run; move the run away" % path)
    return fields


def _host_record(run: str, host: str) -> _Record | None:
    """The host's record (None: it has none yet), for a writer: a record that cannot be
    read, or that belongs to another host whose name meets this one's, is refused."""
    name = host_dir_name(host) + ".json"
    path = _records_path(run, HOST_RECORDS, name)
    try:
        record = _parse_record(name, _read(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunError("%s cannot be read as a host's record (%s); move it away" % (path, exc)) from None
    if record.host != host:
        raise RunError(
            "host %r: its directory %r belongs to host %r in this run" % (host, host_dir_name(host), record.host)
        )
    return record


def _write_record(run: str, host: str, captured: dict | None, failed: dict | None) -> None:
    path = _records_path(run, HOST_RECORDS, host_dir_name(host) + ".json")
    _atomicfile.replace(path, _record_text(host, captured, failed), mode=FILE_MODE)


def _mark_stale(run: str) -> None:
    fd = os.open(_records_path(run, _STALE), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    os.close(fd)


def _host_records(manifest, path: str) -> dict:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("hosts"), dict):
        raise RunError("%s is not a tracefleet manifest (no hosts); move it away" % path)
    return manifest["hosts"]


def _older_manifest(run: str):
    """(fields, hosts, failed) of the manifest.json of a run without records (an older
    tracefleet.ftrace wrote it), or None when there is none."""
    path = os.path.join(run, MANIFEST)
    manifest = _load(path, None)
    if manifest is None:
        return None
    hosts = _host_records(manifest, path)
    failed = manifest.get("failed", {})
    if not isinstance(failed, dict):
        raise RunError("%s: its `failed` field is not a map of hosts; move the manifest away" % path)
    for host, record in hosts.items():
        known = record.get("dir") if isinstance(record, dict) else None
        if known is not None and known != host_dir_name(host):
            raise RunError(
                "%s: host %r has its files in %r, which this version of tracefleet.ftrace names %r: "
                "use another run id" % (path, host, known, host_dir_name(host))
            )
    fields = {key: value for key, value in manifest.items() if key not in _FROM_RECORDS}
    return fields, hosts, failed


def _start_records(run: str) -> None:
    """Under the manifest's lock, before a record is written: the run's records, made
    when it has none yet - empty for a new run, else from the manifest.json an older
    tracefleet.ftrace wrote (each host's entries become its record). run.json comes
    last, so a run whose records were not all made has none."""
    if has_records(run):
        return
    older = _older_manifest(run)
    fields, hosts, failed = older or (dict(format=FORMAT, run_id=os.path.basename(run), created=_now()), {}, {})
    make_dirs(_records_path(run, HOST_RECORDS))
    names: dict = {}
    for host in sorted(set(hosts) | set(failed)):
        if names.setdefault(host_dir_name(host), host) != host:
            raise RunError(
                "%s: hosts %r and %r would share a directory; use another run id"
                % (os.path.join(run, MANIFEST), names[host_dir_name(host)], host)
            )
        captured, failure = hosts.get(host), failed.get(host)
        _write_record(
            run, host, captured if isinstance(captured, dict) else None, failure if isinstance(failure, dict) else None
        )
    fields.setdefault("updated", _now())
    _save(_records_path(run, RUN_RECORD), fields)
    _mark_stale(run)


class _Assembled:
    """A run's manifest as its records make it: the one place that puts them together,
    for the readers (`manifest`) and for manifest.json (`text`). A record that cannot be
    read, or that is not the record of the host it names, is left out, and `problems`
    says why. `known`: the lines of the manifest.json being replaced, whose entries are
    not parsed again (for `text` only)."""

    def __init__(self, run: str, known: frozenset = frozenset()) -> None:
        self.parsed = not known
        fields = _run_fields(run)
        self.fields = {key: value for key, value in fields.items() if key not in _FROM_RECORDS}
        self.records: list = []
        self.problems: list = []
        directory = _records_path(run, HOST_RECORDS)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):  # a record being written (_atomicfile's temporary file)
                continue
            try:
                self.records.append(_parse_record(entry.name, _read(entry.path), known))
            except (OSError, ValueError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                name = _host_result.show("%s/%s/%s" % (RECORDS, HOST_RECORDS, entry.name))
                self.problems.append("%s: %s; left out" % (name, why))
        self.records.sort(key=lambda record: record.host)
        times = [record.updated for record in self.records if record.updated]
        times += [value for value in (fields.get("created"), fields.get("updated")) if isinstance(value, str)]
        self.updated = max(times) if times else None

    def manifest(self) -> dict:
        if not self.parsed:
            raise AssertionError("an assembly that did not parse every entry has no manifest")
        manifest = dict(self.fields, hosts={}, updated=self.updated)
        failed = {}
        for record in self.records:
            if record.captured is not None:
                manifest["hosts"][record.host] = record.captured
            if record.failed is not None:
                failed[record.host] = record.failed
        if failed:
            manifest["failed"] = failed
        return manifest

    def text(self) -> bytes:
        """manifest.json: the manifest's fields in order, one host per line in its maps."""
        blocks = {key: json.dumps(value, sort_keys=True) for key, value in self.fields.items()}
        blocks["updated"] = json.dumps(self.updated)
        for key, index in (("hosts", 1), ("failed", 2)):
            lines = [
                "    %s: %s" % (record.lines[0], record.lines[index])
                for record in self.records
                if (record.captured, record.failed)[index - 1] is not None
            ]
            if lines:
                blocks[key] = "{\n%s\n  }" % ",\n".join(lines)
            elif key == "hosts":
                blocks[key] = "{}"
        body = ",\n".join("  %s: %s" % (json.dumps(key), blocks[key]) for key in sorted(blocks))
        return ("{\n%s\n}\n" % body).encode("utf-8")


def assemble(run: str) -> tuple[dict, list]:
    """The manifest of a run that has records (has_records), not yet checked (see
    _run_dir.checked_manifest), and the records left out, each with why."""
    assembled = _Assembled(run)
    return assembled.manifest(), assembled.problems


def _lines(path: str) -> frozenset:
    try:
        return frozenset(_read(path).decode("utf-8", "replace").split("\n"))
    except OSError:
        return frozenset()


def _flock(path: str, wait: bool) -> int | None:
    """An open descriptor of `path` holding an exclusive flock (closing it releases
    it), or None when wait=False and another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def refresh_manifest(run: str) -> bool:
    """Bring <run>/manifest.json up to date with the run's records, when a record
    changed since it was last written (or it is missing): rewritten whole, atomically,
    from all of them (entries it holds already are not parsed again). Every action
    that records something in a run calls it at its end. Returns whether this process
    rewrote it.

    One process at a time rewrites it (refresh.lock), and one more may wait for its
    turn (refresh-next.lock): a process that finds both taken leaves at once, since
    the one waiting reads the records only once it is its turn, this process's record
    among them. So no process waits for more than the rewrite under way and its own,
    and when the last writer of a run is done, manifest.json holds every record."""
    if not has_records(run):
        return False
    rewrite_lock = _records_path(run, _REFRESH_LOCK)
    fd = _flock(rewrite_lock, wait=False)
    if fd is None:
        waiting = _flock(_records_path(run, _NEXT_LOCK), wait=False)
        if waiting is None:
            return False
        try:
            fd = typing.cast(int, _flock(rewrite_lock, wait=True))  # waits: never None
        finally:
            os.close(waiting)  # the next one may queue up: the records are read after this
    try:
        stale, refreshing = _records_path(run, _STALE), _records_path(run, _REFRESHING)
        path = os.path.join(run, MANIFEST)
        if not (os.path.lexists(stale) or os.path.lexists(refreshing) or not os.path.lexists(path)):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.replace(stale, refreshing)
        _atomicfile.replace(path, _Assembled(run, _lines(path)).text(), mode=FILE_MODE)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(refreshing)
        return True
    finally:
        os.close(fd)


def file_capture(run: str, host: str, staging: str, entry: dict, kernel: str | None) -> list:
    """Move the files of one capture from `staging` into the host's directory
    (host_dir_name) and record the capture in the host's record. Returns the
    manifest's file entries. Costs the same however many hosts the run holds: nothing
    here reads or writes another host's record; manifest.json is the caller's to bring
    up to date (refresh_manifest). Refuses a directory another host of the run has."""
    host_dir = host_dir_name(host)
    target = os.path.join(run, host_dir)
    try:
        inside(run, host_dir)
    except PathEscapeError:
        raise RunError("host %r would land outside %s" % (host, run)) from None
    if host_dir.casefold() in RESERVED or host_dir.startswith(".") or not _RECORD_NAME.fullmatch(host_dir + ".json"):
        raise RunError("host %r: %r is one of the run's own names" % (host, host_dir))
    files = []
    for name in sorted(os.listdir(staging)):
        path = os.path.join(staging, name)
        os.chmod(path, FILE_MODE)
        files.append(dict(path="%s/%s" % (host_dir, name), bytes=os.path.getsize(path), sha256=sha256(path)))
    with _locked(os.path.join(run, ".manifest.lock")):
        _start_records(run)
        known = _host_record(run, host)
        # Marked before the record is written too: a process killed between the two
        # leaves manifest.json to the next refresh.
        _mark_stale(run)
        make_dirs(target)
        for name in sorted(os.listdir(staging)):
            # A rename (the staging directory is in dest); a copy across file systems.
            shutil.move(os.path.join(staging, name), os.path.join(target, name))
        record = dict(known.captured) if known is not None and known.captured is not None else {}
        captures = record.get("captures")
        if not isinstance(captures, list):
            captures = []
        record["dir"] = host_dir
        if kernel:
            record["kernel"] = kernel
        record["captures"] = [old for old in captures if not isinstance(old, dict) or old.get("name") != entry["name"]]
        record["captures"].append(dict(entry, files=files))
        # A host recorded as failed in this run (record_failures) that is captured now
        # (the run id used again for another try) is no longer one.
        _write_record(run, host, record, None)
        _mark_stale(run)
    return files


def record_sample(run: str, sample: dict) -> bool:
    """Keep the run's host sample (what `_sample.record` returns) in its manifest, the
    `sample` field (in the run's record), under the manifest's lock. The record is
    checked against the schema the readers use (_host_result.MANIFEST_SAMPLE) before
    anything is written. Every host of a sampled rollout records the same sample: the
    first writes it, the others find it there (returns False). A run whose manifest
    holds another sample (a run id used again with another seed or size) is refused:
    one run, one sample. manifest.json is the caller's to bring up to date
    (refresh_manifest)."""
    checked = _host_result.check(_host_result.MANIFEST_SAMPLE, sample, "sample")
    if checked is None:
        raise RunError("sample: a sample record is expected")
    with _locked(os.path.join(run, ".manifest.lock")):
        path = os.path.join(run, MANIFEST)
        if not has_records(run) and not os.path.lexists(path):
            raise RunError("%s: no manifest yet (a sample is recorded after a capture of the run)" % path)
        _start_records(run)
        fields = _run_fields(run)
        known = fields.get("sample")
        if known == checked:
            return False
        if known is not None:
            shown = known if isinstance(known, dict) else {}
            raise RunError(
                "%s already records another sample (seed=%s, size=%s); a run holds one sample: "
                "use another run id (session_run_id) for another sample"
                % (path, _host_result.show(shown.get("seed")), _host_result.show(shown.get("size")))
            )
        fields["sample"] = checked
        fields["updated"] = _now()
        _mark_stale(run)
        _save(_records_path(run, RUN_RECORD), fields)
        _mark_stale(run)
    return True


def record_failures(run: str, failures: dict, dry_run: bool = False) -> tuple[dict, list]:
    """Keep the hosts of the run that failed or were unreachable in its manifest, the
    `failed` map (host -> reason, unreachable, task, time), in each host's record, under
    the manifest's lock. `failures` (host -> reason, unreachable, task) is host data,
    checked against _host_result.FAILURES first: a reason is kept as one line of
    harmless text of at most MAX_REASON characters, a value of the wrong type refuses
    the whole record. A host already recorded with the same reason, reachability and
    task keeps its record and its time; a host's captures stay as they are (a host may
    fail after its capture, at the teardown). A run with no manifest yet (every host
    failed before a capture) gets one, with no hosts. Returns (the records of
    `failures` as the manifest holds them, or would with dry_run, the hosts whose
    record is new or changed); with dry_run nothing is written. Reads and writes only
    the records of the hosts in `failures`; manifest.json is the caller's to bring up
    to date (refresh_manifest)."""
    checked = _host_result.check(_host_result.FAILURES, failures, "failures")
    if not checked:
        return {}, []
    with _locked(os.path.join(run, ".manifest.lock")) if not dry_run else contextlib.nullcontext():
        if not dry_run:
            _start_records(run)
        known: dict[str, _Record | None] = {}
        if has_records(run):
            known = {host: _host_record(run, host) for host in checked}
            failed = {host: record.failed for host, record in known.items() if record is not None}
        else:  # a dry run on a run an older tracefleet.ftrace wrote, or on no run yet
            _fields, _hosts, failed = _older_manifest(run) or ({}, {}, {})
        now = _now()
        records, changed = {}, []
        for host, failure in sorted(checked.items()):
            record = dict(reason=failure["reason"], unreachable=failure.get("unreachable", False))
            record["task"] = failure.get("task") or None
            previous = failed.get(host)
            if isinstance(previous, dict) and {key: previous.get(key) for key in record} == record:
                records[host] = dict(record, time=previous.get("time"))
                continue
            record["time"] = now
            records[host] = record
            changed.append(host)
        if changed and not dry_run:
            _mark_stale(run)
            for host in changed:
                own = known.get(host)
                _write_record(run, host, own.captured if own is not None else None, records[host])
            _mark_stale(run)
    return records, changed
