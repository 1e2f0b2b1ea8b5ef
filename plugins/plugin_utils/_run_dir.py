# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a run directory back on the controller: its manifest (assembled from the
run's records by _runs, or its manifest.json), checked as host data, and the files it
names, which must stay inside the run directory and match their
recorded size and sha256. Shared by the run report and the Perfetto export; the
writing side is _runs.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result, _paths, _runs

MANIFEST = _runs.MANIFEST
MANIFEST_FORMAT = 1


class RunDirError(TracefleetError):
    """The run directory or its manifest cannot be read; nothing was written."""


def load_manifest(run_dir: str, problems: list[str] | None = None) -> dict:
    """The run's manifest, not yet checked (see `checked_manifest`): as the run's
    records make it (_runs.assemble; every host recorded so far, even when
    manifest.json is behind them), with the records left out, and why, added to
    `problems`; or, for a run without records (an older tracefleet.ftrace wrote it, or
    it was copied without its hidden files), its manifest.json as JSON."""
    if _runs.has_records(run_dir):
        try:
            manifest, left_out = _runs.assemble(run_dir)
        except (_runs.RunError, OSError) as exc:
            raise RunDirError("run_dir=%r: the run's records cannot be read: %s" % (run_dir, exc)) from None
        if problems is not None:
            problems.extend(left_out)
        return manifest
    path = os.path.join(run_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise RunDirError(
            "run_dir=%r: no %s there (is it a <dest>/<run_id>/ directory written by "
            "tracefleet.ftrace.trace_capture?)" % (run_dir, MANIFEST)
        ) from None
    except (OSError, ValueError) as exc:
        raise RunDirError("%s: cannot read it as JSON: %s" % (path, exc)) from None
    if not isinstance(manifest, dict):
        raise RunDirError("%s: a JSON object was expected, found %s" % (path, type(manifest).__name__))
    return manifest


def checked_manifest(manifest: dict) -> tuple[dict, list[str]]:
    """The manifest as _host_result's schema lets it through, and what it left out."""
    problems = []
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.append(
            "manifest format %s, not %d: shown as far as it matches format %d"
            % (_host_result.show(manifest.get("format")), MANIFEST_FORMAT, MANIFEST_FORMAT)
        )
    left_out: list = []
    manifest = _host_result.sanitize(_host_result.MANIFEST, manifest, MANIFEST, left_out)
    problems += ["%s (left out of the report)" % problem for problem in left_out]
    return manifest, problems


def file_in_run(run_dir: str, relative) -> str | None:
    """The file `relative` names under run_dir, or None if it is not a relative path
    that stays inside run_dir (symlinks included)."""
    if not isinstance(relative, str) or not relative or "\0" in relative or os.path.isabs(relative):
        return None
    if any(part == ".." for part in relative.replace("\\", "/").split("/")):
        return None
    try:
        return _paths.inside(run_dir, relative)
    except _paths.PathEscapeError:
        return None


def check_file(path: str | None, size, digest) -> tuple[str, str]:
    """(css class, words) for a manifest file entry checked against the disk."""
    if path is None:
        return "bad", "not inside the run directory: not opened"
    if not os.path.isfile(path):
        return "bad", "missing"
    actual_size = os.path.getsize(path)
    if isinstance(size, int) and not isinstance(size, bool) and actual_size != size:
        return "bad", "size differs: %d bytes on disk" % actual_size
    if not isinstance(digest, str) or not digest:
        return "warn", "no sha256 in the manifest"
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    if sha.hexdigest() != digest.lower():
        return "bad", "sha256 differs"
    return "ok", "sha256 verified"


def relative_message(run_dir: str, exc: Exception) -> str:
    """An error's text without the run directory's own path in front of file names."""
    message = str(exc)
    for prefix in (os.path.realpath(run_dir), os.path.abspath(run_dir)):
        message = message.replace(prefix.rstrip("/") + "/", "")
    return message
