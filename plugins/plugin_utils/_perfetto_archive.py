# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A run as one Perfetto archive: `<run_dir>/perfetto.tar`, on the controller.

Perfetto (v58.2 and later) opens a TAR holding several traces and a
`perfetto_manifest.json` as one timeline with a machine per host. The archive holds
one .pftrace per `format=dat` capture of the run (written by _perfetto, one capture
and one page at a time), named after the host (`web01.pftrace`; `web01.<capture>.pftrace`
when a host has several captures), and the manifest (Perfetto's documented format,
version 1): each file's machine named after its inventory host, each file related to
the first one through REALTIME (each .pftrace carries its capture's clock anchor as a
BOOTTIME/REALTIME clock snapshot), REALTIME as the merged timeline's clock, and
attributes: the run id, and per file where its anchor came from and how uncertain it
is.

Captures that cannot be placed on the wall clock (a trace clock that does not count
nanoseconds, no clock anchor and no DATE option), text captures, and files that are
missing or differ from the manifest are left out and named among the problems.

The TAR is written as a stream: each member's 512-byte header is written after its
content, once the size is known (a seek back), so no member is held in memory or on
disk twice. Member names are plain ASCII of at most 99 bytes (what Perfetto's TAR
reader takes), mode 0600, owner 0, the run's creation time as mtime: the same run
gives the same bytes, and an archive that would not change is left alone. The file is
written to a temporary file in the run directory and renamed into place
(_atomicfile.replacing), mode 0600.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import tarfile
import time
from typing import BinaryIO, NamedTuple

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _clock_anchor, _perfetto, _run_dir, _runs
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._paths import PathEscapeError, inside
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._perfetto import PerfettoError, Task
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._tracedat_reader import TraceDat, TraceDatError

ARCHIVE = _runs.PERFETTO
MANIFEST_MEMBER = "perfetto_manifest.json"
MANIFEST_VERSION = 1
MAX_MEMBER_NAME = 99
# A ustar size field holds 11 octal digits: members up to 8 GiB - 1.
MAX_MEMBER_SIZE = (1 << 33) - 1
BLOCK = 512
RECORD = 20 * BLOCK


class _Capture(NamedTuple):
    host: str
    host_dir: str
    name: str
    label: str
    dat_path: str
    trace_clock: str | None
    clock_anchor: dict | None


def _member_stem(host_dir: str, capture: str, several: bool) -> str:
    stem = "%s.%s" % (host_dir, capture) if several else host_dir
    return re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip(".") or "host"


def member_names(captures: list[tuple[str, str, str]]) -> list[str]:
    """The archive's file name for each (host, host directory, capture name): the
    host directory (`web01.pftrace`), with the capture's name when the host has more
    than one (`web01.boot.pftrace`); shortened with a hash where it would be longer
    than MAX_MEMBER_NAME or meet another name."""
    per_host: dict[str, int] = {}
    for host, _host_dir, _capture in captures:
        per_host[host] = per_host.get(host, 0) + 1
    names: list[str] = []
    taken = {MANIFEST_MEMBER}
    for host, host_dir, capture in captures:
        name = _member_stem(host_dir, capture, per_host[host] > 1) + ".pftrace"
        if len(name) > MAX_MEMBER_NAME or name in taken:
            digest = hashlib.sha256(("%s\0%s" % (host, capture)).encode("utf-8", "surrogatepass")).hexdigest()
            stem = _member_stem(host_dir, capture, per_host[host] > 1)[: MAX_MEMBER_NAME - 30]
            name = "%s+%s.pftrace" % (stem, digest[:12])
        taken.add(name)
        names.append(name)
    return names


class _TarStream:
    """A ustar archive written front to back; a member's header is written after it."""

    def __init__(self, stream: BinaryIO, mtime: int) -> None:
        self.stream, self.mtime = stream, mtime

    def _header(self, name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self.mtime, _runs.FILE_MODE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info.tobuf(tarfile.USTAR_FORMAT, "ascii", "strict")

    def begin(self) -> int:
        start = self.stream.tell()
        self.stream.write(bytes(BLOCK))
        return start

    def finish(self, start: int, name: str) -> int:
        """Complete the member begun at `start`; returns its size."""
        end = self.stream.tell()
        size = end - start - BLOCK
        if size > MAX_MEMBER_SIZE:
            raise PerfettoError("%s would be %d bytes; a TAR member holds up to 8 GiB" % (name, size))
        self.stream.write(bytes(-size % BLOCK))
        after = self.stream.tell()
        self.stream.seek(start)
        self.stream.write(self._header(name, size))
        self.stream.seek(after)
        return size

    def abandon(self, start: int) -> None:
        self.stream.seek(start)
        self.stream.truncate()

    def add(self, name: str, data: bytes) -> None:
        start = self.begin()
        self.stream.write(data)
        self.finish(start, name)

    def close(self) -> None:
        self.stream.write(bytes(2 * BLOCK))
        self.stream.write(bytes(-self.stream.tell() % RECORD))


def _mtime(created) -> int:
    """The run's creation time (the manifest's `created`), as epoch seconds."""
    if isinstance(created, str):
        try:
            return calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            pass
    return 0


def _sha256(path: str) -> str | None:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    except FileNotFoundError:
        return None
    return sha.hexdigest()


def _str(value, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _captures(run_dir: str, manifest: dict, problems: list[str]) -> list[_Capture]:
    """The run's trace.dat captures that can be read, in host order."""
    found = []
    for host, record in sorted(_dict(manifest.get("hosts")).items(), key=lambda item: str(item[0])):
        record = _dict(record)
        host_dir = _str(record.get("dir"), _runs.host_dir_name(host))
        for capture in record.get("captures") or []:
            capture = _dict(capture)
            name = _str(capture.get("name"), "trace")
            label = "%s / %s" % (host, name)
            if capture.get("format") != "dat":
                problems.append(
                    "%s: a %s capture has no trace.dat: not in the archive" % (label, capture.get("format"))
                )
                continue
            entries = [entry for entry in capture.get("files") or [] if str(entry.get("path", "")).endswith(".dat")]
            if not entries:
                problems.append("%s: no .dat file in the manifest's file list: not in the archive" % label)
                continue
            entry = entries[0]
            path = _run_dir.file_in_run(run_dir, entry.get("path"))
            status, words = _run_dir.check_file(path, entry.get("bytes"), entry.get("sha256"))
            if status == "bad" or path is None:
                problems.append("%s: %s: %s: not in the archive" % (label, entry.get("path"), words))
                continue
            found.append(
                _Capture(host, host_dir, name, label, path, capture.get("trace_clock"), capture.get("clock_anchor"))
            )
    return found


def _place(capture: _Capture, dat: TraceDat, problems: list[str]) -> _clock_anchor.Anchor | None:
    """The capture's anchor on its host's wall clock, or None (and why, in problems)."""
    clock = dat.trace_clock or capture.trace_clock
    if not _clock_anchor.placeable(clock):
        problems.append(
            "%s: trace clock %s does not count nanoseconds, so it cannot be placed on the wall clock: not in "
            "the archive (trace with a clock such as mono or boot)" % (capture.label, clock)
        )
        return None
    anchor = _clock_anchor.from_manifest(capture.clock_anchor)
    if anchor is None and dat.date:
        first, _last = dat.time_range()
        anchor = _clock_anchor.from_date_option(dat.date, first or 0)
    if anchor is None:
        problems.append(
            "%s: no clock anchor in the manifest and no DATE option in the trace.dat: it cannot be placed "
            "on the wall clock: not in the archive" % capture.label
        )
    return anchor


def _manifest(run_id: str, files: list[dict]) -> bytes:
    """perfetto_manifest.json: machines, REALTIME relations, attributes."""
    first = files[0]["path"]
    entries = []
    attributes: dict[str, str | int] = {"tracefleet.run_id": run_id, "tracefleet.files": len(files)}
    for item in files:
        entry: dict = {"path": item["path"], "machine": {"name": item["host"]}}
        if item["path"] != first:
            entry["clocks"] = {"clock": "REALTIME", "sync_to": {"file": first, "clock": "REALTIME"}, "offset_ns": 0}
        entries.append(entry)
        attributes["tracefleet.anchor.%s" % item["path"]] = "%s; uncertainty %s" % (
            item["anchor"],
            "%d ns" % item["uncertainty_ns"] if item["uncertainty_ns"] is not None else "unknown",
        )
    document = {
        "perfetto_manifest": {
            "version": MANIFEST_VERSION,
            "trace_time": {"clock": "REALTIME", "file": first},
            "files": entries,
            "attributes": attributes,
        }
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def export(run_dir: str, tasks: dict[str, list[Task]] | None = None, dry_run: bool = False) -> dict:
    """Write (unless dry_run) <run_dir>/perfetto.tar. Returns what the action reports:
    path, changed, run_id, files, hosts, events, bytes, problems."""
    if not os.path.isdir(run_dir):
        raise _run_dir.RunDirError("run_dir=%r is not a directory" % run_dir)
    left_out: list[str] = []
    manifest, problems = _run_dir.checked_manifest(_run_dir.load_manifest(run_dir, left_out))
    problems[:0] = left_out
    run_id = _str(manifest.get("run_id"), os.path.basename(run_dir))
    try:
        target = inside(run_dir, ARCHIVE)
    except PathEscapeError:
        raise PerfettoError("%s is a link leading outside the run directory: not written through" % ARCHIVE) from None
    if os.path.lexists(target) and not os.path.isfile(target):
        raise PerfettoError("%s in %s is not a regular file: not replaced" % (ARCHIVE, run_dir))
    captures = _captures(run_dir, manifest, problems)
    names = member_names([(capture.host, capture.host_dir, capture.name) for capture in captures])
    result = dict(path=target, changed=False, run_id=run_id, files=[], hosts=0, events=0, bytes=0, problems=problems)
    if not captures:
        problems.append("no trace.dat capture in the run: nothing to export")
        return result
    _perfetto.protos()
    files: list[dict] = []
    with _atomicfile.replacing(target, mode=_runs.FILE_MODE) as pending:
        tar = _TarStream(pending.stream, _mtime(manifest.get("created")))
        for capture, name in zip(captures, names):
            start = None
            try:
                with TraceDat(capture.dat_path) as dat:
                    anchor = _place(capture, dat, problems)
                    if anchor is None:
                        continue
                    start = tar.begin()
                    stats = _perfetto.write_host(
                        pending.stream, dat, capture.host, anchor, (tasks or {}).get(capture.host)
                    )
                    size = tar.finish(start, name)
            except (TraceDatError, PerfettoError, OSError) as exc:
                # A trace that cannot be read is left out; the archive itself failing
                # to be written (a full disk) fails the export.
                if isinstance(exc, OSError) and start is not None:
                    raise
                if start is not None:
                    tar.abandon(start)
                problems.append("%s: not exported: %s" % (capture.label, _run_dir.relative_message(run_dir, exc)))
                continue
            files.append(
                dict(
                    path=name,
                    host=capture.host,
                    capture=capture.name,
                    bytes=size,
                    events=stats.events,
                    events_by_name=dict(sorted(stats.events_by_name.items(), key=lambda item: (-item[1], item[0]))),
                    pages_lost_events=stats.lost_pages,
                    tasks=stats.tasks,
                    anchor=anchor.source,
                    uncertainty_ns=anchor.uncertainty_ns,
                )
            )
        if not files:
            pending.cancel()
            problems.append("no capture could be exported")
            return result
        tar.add(MANIFEST_MEMBER, _manifest(run_id, files))
        tar.close()
        pending.stream.flush()
        result.update(
            changed=_sha256(pending.temporary) != _sha256(target),
            files=files,
            hosts=len({item["host"] for item in files}),
            events=sum(item["events"] for item in files),
            bytes=pending.stream.tell(),
        )
        if dry_run or not result["changed"]:
            pending.cancel()
    return result
