# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of trace_capture: check the controller's options, run the capture
on the target in the task's temporary directory, check what the host returned, bring
the file home, decompress it, and file it under <dest>/<run_id>/<host dir>/ with the
host's record in the run's manifest.

The host is not trusted (see docs/security.md): its result goes through
_host_result's schema before anything uses it, the controller names every file it
writes from the task's own options, the transfer and the decompression stop at the
sizes the host declared, and a capture that fails any of it leaves the controller's
directory tree as it was."""

from __future__ import annotations

import base64
import binascii
import os
import posixpath
import shlex
import shutil
import tempfile

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture_spec, _compress
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result, _runs
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._host_result import HostResultError

CHUNK = 4 << 20
# The longest base64 text of one CHUNK (and a little for a trailing newline).
CHUNK_TEXT = 4 * -(-CHUNK // 3) + 16
# What the module returns that only the action plugin needs.
INTERNAL = ("file", "file_name", "sha256", "raw_bytes")


class ActionModule(ActionBase):
    # The capture's temporary directory is made (and removed) by run() itself, only
    # when a file is to be fetched from it.
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        # The task's options (the module's and dest, run_id, transfer, which are ours).
        _validation, args = self.validate_argument_spec(
            argument_spec=_capture_spec.ARGUMENT_SPEC, mutually_exclusive=_capture_spec.MUTUALLY_EXCLUSIVE
        )
        if self._task.check_mode:
            result.update(changed=False, skipped=True, msg="check mode: no window recorded, nothing fetched")
            return result
        host = task_vars.get("inventory_hostname", self._task.delegate_to or "localhost")
        problem = _capture_spec.problem(args, given=frozenset(self._task.args))
        if problem:
            result.update(failed=True, msg="trace_capture: %s" % problem)
            return result
        module_args = _capture_spec.module_args(args)
        inside = _inside(args)
        if args["compress"] == "auto" and not inside and not _compress.available("zstd"):
            module_args["compress"] = "gzip"  # the controller could not unpack zstd

        if args["state"] == "started":  # nothing to fetch yet
            started = self._execute_module(
                "tracefleet.ftrace.trace_capture", module_args=module_args, task_vars=task_vars
            )
            if started.get("failed") or started.get("skipped"):
                result.update(started)
                return result
            try:
                result.update(_host_result.check(_host_result.CAPTURE_STARTED, started))
            except HostResultError as exc:
                result.update(failed=True, msg=_refused(host, exc))
            return result

        # Everything about the controller's side is checked before the host is asked
        # to touch its buffer.
        dest = os.path.abspath(os.path.expanduser(args["dest"]))
        try:
            file_name = _runs.capture_file_name(args["name"], args["format"])
            _runs.check_dest(dest, args["run_id"])
        except (TracefleetError, OSError) as exc:
            result.update(failed=True, msg="trace_capture: %s; nothing was captured" % exc)
            return result

        staging = work_dir = None
        created: list = []
        kept = False
        try:
            work_dir = self._make_tmp_path()
            module_args["work_dir"] = work_dir
            captured = self._execute_module(
                "tracefleet.ftrace.trace_capture", module_args=module_args, task_vars=task_vars
            )
            if captured.get("failed") or captured.get("skipped"):
                result.update(captured)
                return result
            try:
                checked = self._check_result(captured, args, module_args, work_dir, file_name)
            except HostResultError as exc:
                result.update(failed=True, msg=_refused(host, exc))
                return result
            need = checked["bytes"] + (0 if inside else checked["raw_bytes"])
            free = _runs.free_bytes(dest)
            if need > free:
                raise _runs.RunError(
                    "the capture needs %d bytes on the controller (%d compressed, %d unpacked), %s has %d free"
                    % (need, checked["bytes"], checked["raw_bytes"], dest, free)
                )
            host_dir = _runs.host_dir_name(host)
            created, staging = _staging(dest, host_dir)
            packed = os.path.join(staging, file_name + ".packed")
            method = self._transfer(args["transfer"], checked, packed)
            if checked["sha256"] is not None:
                received = _compress.sha256(packed)
                if received != checked["sha256"]:
                    raise _runs.RunError(
                        "the capture arrived damaged: sha256 %s on the target, %s here" % (checked["sha256"], received)
                    )
            if inside:
                # A version 7 trace.dat is compressed inside: stored as it came.
                os.rename(packed, os.path.join(staging, file_name))
            else:
                _runs.unpack(checked["compress"], packed, os.path.join(staging, file_name), checked["raw_bytes"])
                os.unlink(packed)
            run_id = args["run_id"] or _runs.play_run_id(dest, self._play_key())
            run_dir = _runs.run_dir(dest, run_id)
            stored = _runs.file_capture(
                run_dir, host, staging, _manifest_entry(args, checked, method), kernel=checked["kernel"]
            )
            kept = True
            # manifest.json, with this host's record and any other written meanwhile (one
            # worker at a time rewrites it; none waits for more than two rewrites).
            _runs.refresh_manifest(run_dir)
        except (AnsibleError, OSError, TracefleetError) as exc:
            if kept:
                what = "the capture of %s is filed in %s, but %s was not rewritten" % (
                    host,
                    os.path.join(run_dir, host_dir),
                    _runs.MANIFEST,
                )
            else:
                what = "nothing was kept for %s" % host
            result.update(failed=True, msg="trace_capture: %s; %s" % (exc, what))
            return result
        finally:
            if staging is not None and os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)
            if not kept:
                _runs.remove_empty(created)
            if work_dir is not None:
                self._remove_tmp_path(work_dir, force=True)

        result.update({key: value for key, value in checked.items() if key not in INTERNAL})
        for stream in ("stdout", "stderr"):
            if stream in checked:
                result[stream + "_lines"] = checked[stream].splitlines()
        result.update(
            changed=True,
            run_id=run_id,
            path=os.path.join(run_dir, host_dir),
            files=[os.path.join(run_dir, item["path"]) for item in stored],
            manifest=os.path.join(run_dir, _runs.MANIFEST),
            stored_bytes=sum(item["bytes"] for item in stored),
            transfer=method,
        )
        return result

    def _check_result(self, captured: dict, args: dict, module_args: dict, work_dir: str, file_name: str) -> dict:
        """The module's result, checked (_host_result): the file the host says it wrote
        must be the one the controller asked for, in the task's temporary directory,
        and everything else of the expected type, range and form."""
        requested = module_args["compress"]
        inside = _inside(args)
        if inside:
            # The compression inside a version 7 trace.dat; the file keeps its name.
            compress = {"auto": ("zstd", "zlib"), "gzip": ("zlib",)}.get(requested, (requested,))
            remote: tuple = (posixpath.join(work_dir, file_name),)
        else:
            compress = {"auto": ("zstd", "gzip"), "zlib": ("gzip",)}.get(requested, (requested,))
            remote = tuple(posixpath.join(work_dir, file_name + _compress.SUFFIX[method]) for method in compress)
        schema = _host_result.capture_collected(
            remote,
            file_name,
            compress,
            args["format"],
            args["instance"],
            args["command"],
            args["file_version"] if args["format"] == "dat" else None,
        )
        checked = _host_result.check(schema, captured)
        suffix = "" if inside else _compress.SUFFIX[checked["compress"]]
        if checked["file"] != posixpath.join(work_dir, file_name + suffix):
            raise HostResultError("file", checked["file"], "not the file of compress=%s" % checked["compress"])
        if inside or checked["compress"] == "none":
            if checked.get("sha256") is None:
                raise HostResultError("sha256", None, "a capture stored as it travels comes with its sha256")
            if checked["bytes"] != checked["raw_bytes"]:
                raise HostResultError(
                    "raw_bytes",
                    checked["raw_bytes"],
                    "not bytes=%d (a file stored as it travels)" % checked["bytes"],
                )
        per_cpu = checked.get("events_per_cpu")
        if per_cpu is not None and sum(per_cpu.values()) != checked["events"]:
            raise HostResultError("events", checked["events"], "events_per_cpu adds up to %d" % sum(per_cpu.values()))
        checked.setdefault("sha256", None)
        return checked

    def _play_key(self) -> str:
        """Same for every host and batch of one play in one ansible-playbook run: the
        workers are forked from the one controller process."""
        play = self._task.get_play()
        return "%d-%s" % (os.getppid(), getattr(play, "_uuid", "") or id(play))

    def _transfer(self, how: str, captured: dict, local: str) -> str:
        """Bring the file to `local`: exactly captured["bytes"] bytes, or an error."""
        remote, size = captured["file"], captured["bytes"]
        if how in ("auto", "fetch"):
            try:
                self._connection.fetch_file(remote, local)
                fetched = os.path.getsize(local)
                if fetched == size:
                    return "fetch"
                if fetched > size:
                    raise _runs.RunError(
                        "the file is bigger than the host reported: %d bytes arrived, bytes=%d" % (fetched, size)
                    )
                problem = "fetched %d bytes of %d" % (fetched, size)
            except (AnsibleError, OSError) as exc:
                problem = str(exc)
            if how == "fetch":
                raise AnsibleError("fetching %s failed: %s" % (remote, problem))
            self._display.vvv("trace_capture: fetch failed (%s); streaming in chunks" % problem)
        self._stream(remote, size, local)
        return "chunks"

    def _stream(self, remote: str, size: int, local: str) -> None:
        """Read the remote file in CHUNK pieces through the shell (with become, as the
        module ran), one piece in memory at a time, and never more than `size` bytes."""
        with open(local, "wb") as out:
            index = 0
            while out.tell() < size:
                cmd = "dd if=%s bs=%d skip=%d count=1 status=none | base64 -w0" % (shlex.quote(remote), CHUNK, index)
                res = self._low_level_execute_command(cmd, sudoable=True)
                if res["rc"] != 0:
                    raise AnsibleError(
                        "streaming %s failed at byte %d: %s"
                        % (remote, out.tell(), _host_result.show(str(res.get("stderr", "")).strip()))
                    )
                text = res["stdout"]
                if not isinstance(text, str) or len(text) > CHUNK_TEXT:
                    raise _runs.RunError(
                        "streaming %s: the host sent a piece of %s characters, more than one %d-byte chunk"
                        % (remote, len(text) if isinstance(text, str) else "?", CHUNK)
                    )
                try:
                    data = base64.b64decode(text.strip(), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise _runs.RunError("streaming %s: the host sent a piece that is not base64 (%s)" % (remote, exc))
                if not data:
                    raise AnsibleError("streaming %s stopped at byte %d of %d" % (remote, out.tell(), size))
                if len(data) > size - out.tell():
                    raise _runs.RunError("the file is bigger than the host reported: more than bytes=%d arrive" % size)
                out.write(data)
                index += 1


def _inside(args: dict) -> bool:
    """Whether the capture is a version 7 trace.dat: compressed inside, fetched and
    stored as it is."""
    return args["format"] == "dat" and args["file_version"] == 7


def _refused(host: str, exc: HostResultError) -> str:
    return "trace_capture: the result %s returned was refused: %s; nothing was written on the controller" % (host, exc)


def _staging(dest: str, host_dir: str) -> tuple:
    """A private directory in dest for the files on their way (same file system as
    the run directory, so they move there by rename). Returns (the directories made
    for it, the directory). Another host's worker may remove an empty dest it made
    between the two steps: then try again."""
    for attempt in range(3):
        created = _runs.make_dirs(dest)
        try:
            return created, tempfile.mkdtemp(prefix=".%s.partial-" % host_dir, dir=dest)
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _manifest_entry(args: dict, checked: dict, method: str) -> dict:
    """The capture as the manifest records it: the task's options and the checked result."""
    entry = dict(
        name=args["name"],
        format=args["format"],
        instance=args["instance"],
        trace_clock=checked.get("trace_clock"),
        started=checked.get("started"),
        clock_anchor=checked.get("clock_anchor"),
        seconds=checked.get("seconds"),
        events=checked.get("events"),
        events_per_cpu=checked.get("events_per_cpu"),
        lost_events=checked.get("lost_events"),
        enabled_events=checked.get("enabled_events"),
        compress=checked["compress"],
        transferred_bytes=checked["bytes"],
        transfer=method,
        timings=checked.get("timings"),
    )
    for key in (
        "cpus_offline",
        "closed_by",
        "budget_reached",
        "file_version",
        "excluded_pids",
        "start_at",
        "late",
        "start_delay",
    ):
        if key in checked:
            entry[key] = checked[key]
    if "rc" in checked:
        entry["command"] = dict(cmd=checked["cmd"], rc=checked["rc"])
    return entry
