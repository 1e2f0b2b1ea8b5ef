# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs on the controller: <dest>/<run_id>/<host>/ directories and the run's manifest.json.

Hosts of one play are captured by parallel worker processes, so everything that
more than one of them touches (the run id of a play, the manifest) is read and
written under an exclusive lock, and replaced atomically (`_atomicfile.replace`).
Host names come from the inventory and are only ever used as one path component,
with anything that could leave the directory replaced (and `_paths.inside` checks).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import secrets

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile
from ansible_collections.tracefleet.ftrace.plugins.module_utils._compress import sha256
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._paths import PathEscapeError, inside

MANIFEST = "manifest.json"
FORMAT = 1
RUN_IDS = ".run-ids.json"
KEEP_RUN_IDS = 200
_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


class RunError(TracefleetError):
    """A run id, run directory or manifest that cannot be used."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_run_id(run_id: str) -> str:
    if not _SAFE.match(run_id) or len(run_id) > 200:
        raise RunError(
            "run_id=%r: use letters, digits, '.', '_' and '-', not starting with "
            "'.' (it names a directory under dest)" % run_id
        )
    return run_id


def host_dir_name(host: str) -> str:
    """One safe path component for an inventory name. A name that had to be changed
    gets a short hash of the original, so two names never share a directory."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host).lstrip(".") or "_"
    if safe != host:
        safe = "%s-%s" % (safe, hashlib.sha256(host.encode()).hexdigest()[:8])
    return safe


@contextlib.contextmanager
def _locked(path: str):
    with open(path, "a+") as lock:
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
    """0666 less the umask: the mode of every file written into a run (manifest,
    reports), whatever mode an older copy had."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _save(path: str, data) -> None:
    _atomicfile.replace(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode=new_file_mode())


def play_run_id(dest: str, key: str) -> str:
    """The run id of the play identified by `key`: made by the first host that asks,
    found by the others."""
    os.makedirs(dest, exist_ok=True)
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
    os.makedirs(path, exist_ok=True)
    return path


def file_capture(run: str, host: str, host_dir: str, staging: str, entry: dict, kernel: str | None) -> list:
    """Move the files of one capture from `staging` into the host's directory and add
    the capture to the manifest. Returns the manifest's file entries."""
    target = os.path.join(run, host_dir)
    try:
        inside(run, host_dir, allow_base=True)
    except PathEscapeError:
        raise RunError("host %r would land outside %s" % (host, run)) from None
    files = []
    for name in sorted(os.listdir(staging)):
        path = os.path.join(staging, name)
        files.append(dict(path="%s/%s" % (host_dir, name), bytes=os.path.getsize(path), sha256=sha256(path)))
    with _locked(os.path.join(run, ".manifest.lock")):
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, name), os.path.join(target, name))
        path = os.path.join(run, MANIFEST)
        manifest = _load(path, None) or dict(format=FORMAT, run_id=os.path.basename(run), created=_now(), hosts={})
        record = manifest["hosts"].setdefault(host, dict(dir=host_dir, captures=[]))
        record["dir"] = host_dir
        if kernel:
            record["kernel"] = kernel
        record["captures"] = [old for old in record["captures"] if old.get("name") != entry["name"]]
        record["captures"].append(dict(entry, files=files))
        manifest["updated"] = _now()
        _save(path, manifest)
    return files
