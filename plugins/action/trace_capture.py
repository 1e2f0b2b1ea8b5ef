# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of trace_capture: run the capture on the target in the task's
temporary directory, bring the file home, decompress it, and file it under
<dest>/<run_id>/<host>/ with the run's manifest."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import tempfile

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture_spec, _compress
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _runs

CHUNK = 4 << 20
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
        module_args = _capture_spec.module_args(args)
        if args["compress"] == "auto" and not _compress.available("zstd"):
            module_args["compress"] = "gzip"  # the controller could not unpack zstd

        if args["state"] == "started":  # nothing to fetch yet
            result.update(
                self._execute_module("tracefleet.ftrace.trace_capture", module_args=module_args, task_vars=task_vars)
            )
            return result

        dest = os.path.abspath(os.path.expanduser(args["dest"]))
        try:
            if args["run_id"]:
                run_id = _runs.check_run_id(args["run_id"])
            else:
                run_id = _runs.play_run_id(dest, self._play_key())
        except (TracefleetError, OSError) as exc:
            result.update(failed=True, msg="trace_capture: %s" % exc)
            return result

        staging = work_dir = None
        try:
            work_dir = self._make_tmp_path()
            module_args["_work_dir"] = work_dir
            captured = self._execute_module(
                "tracefleet.ftrace.trace_capture", module_args=module_args, task_vars=task_vars
            )
            if captured.get("failed") or captured.get("skipped"):
                result.update(captured)
                return result
            run_dir = _runs.run_dir(dest, run_id)
            host_dir = _runs.host_dir_name(host)
            staging = tempfile.mkdtemp(prefix=".%s.partial-" % host_dir, dir=run_dir)
            packed = os.path.join(staging, os.path.basename(captured["file"]))
            method = self._transfer(args["transfer"], captured, packed)
            received = _compress.sha256(packed) if captured.get("sha256") else None
            if received != captured.get("sha256"):
                raise AnsibleError(
                    "the capture arrived damaged: sha256 %s on the target, %s here" % (captured["sha256"], received)
                )
            plain = os.path.join(staging, captured["file_name"])
            if packed != plain:
                _compress.decompress(captured["compress"], packed, plain)
                os.unlink(packed)
            entry = dict(
                name=args["name"],
                format=args["format"],
                instance=args["instance"],
                trace_clock=captured.get("trace_clock"),
                started=captured.get("started"),
                clock_anchor=captured.get("clock_anchor"),
                seconds=captured.get("seconds"),
                events=captured.get("events"),
                events_per_cpu=captured.get("events_per_cpu"),
                lost_events=captured.get("lost_events"),
                enabled_events=captured.get("enabled_events"),
                compress=captured.get("compress"),
                transferred_bytes=captured.get("bytes"),
                transfer=method,
                timings=captured.get("timings"),
            )
            if "rc" in captured:
                entry["command"] = dict(cmd=captured.get("cmd"), rc=captured.get("rc"))
            stored = _runs.file_capture(run_dir, host, host_dir, staging, entry, kernel=captured.get("kernel"))
        except (AnsibleError, OSError, TracefleetError) as exc:
            result.update(failed=True, msg="trace_capture: %s; nothing was kept for %s" % (exc, host))
            return result
        finally:
            if staging is not None and os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)
            if work_dir is not None:
                self._remove_tmp_path(work_dir, force=True)

        result.update({key: value for key, value in captured.items() if key not in INTERNAL})
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

    def _play_key(self) -> str:
        """Same for every host and batch of one play in one ansible-playbook run: the
        workers are forked from the one controller process."""
        play = self._task.get_play()
        return "%d-%s" % (os.getppid(), getattr(play, "_uuid", "") or id(play))

    def _transfer(self, how: str, captured: dict, local: str) -> str:
        remote = captured["file"]
        if how in ("auto", "fetch"):
            try:
                self._connection.fetch_file(remote, local)
                if os.path.getsize(local) == captured["bytes"]:
                    return "fetch"
                problem = "fetched %d bytes of %d" % (os.path.getsize(local), captured["bytes"])
            except (AnsibleError, OSError) as exc:
                problem = str(exc)
            if how == "fetch":
                raise AnsibleError("fetching %s failed: %s" % (remote, problem))
            self._display.vvv("trace_capture: fetch failed (%s); streaming in chunks" % problem)
        self._stream(remote, captured["bytes"], local)
        return "chunks"

    def _stream(self, remote: str, size: int, local: str) -> None:
        """Read the remote file in CHUNK pieces through the shell (with become, as the
        module ran), one piece in memory at a time."""
        with open(local, "wb") as out:
            index = 0
            while out.tell() < size:
                cmd = "dd if=%s bs=%d skip=%d count=1 status=none | base64 -w0" % (shlex.quote(remote), CHUNK, index)
                res = self._low_level_execute_command(cmd, sudoable=True)
                if res["rc"] != 0:
                    raise AnsibleError(
                        "streaming %s failed at byte %d: %s" % (remote, out.tell(), res.get("stderr", "").strip())
                    )
                data = base64.b64decode(res["stdout"])
                if not data:
                    raise AnsibleError("streaming %s stopped at byte %d of %d" % (remote, out.tell(), size))
                out.write(data)
                index += 1
