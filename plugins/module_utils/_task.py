# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every state-changing tracing task shares.

- `COMMON_ARGS`: the session, ledger_path and tracefs_path options (documented by the
  tracefleet.ftrace.tracing doc fragment).
- `open_tracefs`: the usable tracefs of the host, as a `TracingDir`.
- `TaskError` and `failure`: how a task fails - a message, and the result fields that
  go beside it into `fail_json`.
- `require_owner`: the one ownership/force rule.
- `apply_with_rollback`: the one way a task writes a planned change: ledger checkpoint,
  transaction, and on a refusal by the kernel everything put back.
- `refuse_control_characters`: no option value of a task holds a newline, NUL, ESC or
  another control character (each would be a second command, or a forged line, in a
  kernel file, the ledger or a report).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

from typing import Any, Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import (
    ControlError,
    Transaction,
    control_character,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import LEDGER_PATH_ARG, Ledger, LedgerError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._locate import read_host, usable
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

COMMON_ARGS = dict(
    session=dict(type="str", default="default"),
    ledger_path=LEDGER_PATH_ARG,
    tracefs_path=dict(type="path"),
)


class TracingUnavailable(TracefleetError):
    """No usable tracefs on this host (not mounted, locked down, not readable)."""


class TaskError(TracefleetError):
    """A task's expected failure: the message, and result fields returned beside it
    (such as `error_log`, or the state the task found)."""

    def __init__(self, msg: str, /, **result) -> None:
        super().__init__(msg)
        self.result = result


def failure(exc: TracefleetError) -> dict:
    """The arguments of `fail_json` for an expected failure."""
    result = dict(exc.result) if isinstance(exc, TaskError) else {}
    result["msg"] = str(exc)
    return result


def refuse_control_characters(params: dict) -> None:
    """Fail, naming the option and the value, when any string in the task's options
    (nested lists and dicts included) holds a control character. Checked before the
    first change, so nothing on the host is touched."""

    def walk(option: str, value: Any) -> None:
        if isinstance(value, str):
            problem = control_character(value)
            if problem is not None:
                raise TaskError("%s=%r: %s; nothing was changed" % (option, value, problem))
        elif isinstance(value, dict):
            for key, item in value.items():
                name = (
                    "%s.%s" % (option, key) if isinstance(key, str) and key.isidentifier() else "%s[%r]" % (option, key)
                )
                walk(name, key)
                walk(name, item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk("%s[%d]" % (option, index), item)

    for name, value in params.items():
        walk(name, value)


def open_tracefs(tracefs_path: str | None) -> TracingDir:
    """The top level of the usable tracefs: the one given, or the one the mount table names."""
    if tracefs_path is None:
        host = read_host("mount table")
        state = host.tracefs()
        if not state["mounted"]:
            raise TracingUnavailable(
                "tracefs is not mounted on this host; mount it first with tracefleet.ftrace.tracefs"
            )
        tracefs_path = state["path"]
        if not usable(tracefs_path):
            if host.lockdown in ("confidentiality", "unknown"):
                raise TracingUnavailable(
                    "tracefs is mounted at %s but its files are missing: kernel lockdown (%s) "
                    "restricts tracefs on this host" % (tracefs_path, host.lockdown)
                )
            raise TracingUnavailable("tracefs at %s is not readable (use become)" % tracefs_path)
    elif not usable(tracefs_path):
        raise TracingUnavailable("tracefs_path=%s holds no usable tracing files" % tracefs_path)
    return TracingDir(tracefs_path)


def place(tracing: TracingDir) -> str:
    """The tracing directory as messages name it."""
    return "instance %s" % tracing.instance if tracing.instance else "the top level"


def require_owner(is_owned: bool, force: bool, refusal: str, /, **result) -> None:
    """The ownership rule of every module that creates things (instances, probes):
    tracefleet changes or removes what its ledger says it created; anything else only
    with force=true. `refusal` is the message when neither holds."""
    if not is_owned and not force:
        raise TaskError(refusal, **result)


def apply_with_rollback(
    tracing: TracingDir,
    ledger: Ledger,
    dry_run: bool,
    apply: Callable[[Transaction], None],
    explain: Callable[[Any, Transaction], tuple[str, dict]],
    errors: tuple[type[Exception], ...] = (ControlError,),
) -> Transaction:
    """Run `apply` with a transaction on `tracing`'s tracefs. When it raises one of
    `errors` (the kernel refused a write), the writes already made are undone newest
    first, the ledger goes back to where it was, and a TaskError says what failed
    (`explain` gives that text and the result fields) and what could not be put back.
    A ledger that cannot be written (a full disk) is handled the same way: the writes
    its records describe are not left on the host unrecorded."""
    transaction = Transaction(tracing.control, dry_run=dry_run)
    checkpoint = ledger.checkpoint()
    caught: tuple[type[Exception], ...] = (*errors, LedgerError)
    try:
        apply(transaction)
    except caught as exc:
        problems = transaction.rollback()
        try:
            ledger.restore(checkpoint)
        except LedgerError as ledger_failure:
            problems.append(str(ledger_failure))
        if isinstance(exc, LedgerError):
            what, result = str(exc), {"changes": transaction.done}
        else:
            what, result = explain(exc, transaction)
        msg = "%s; the changes this task had made were put back" % what
        if problems:
            msg += ", except: " + "; ".join(problems)
        raise TaskError(msg, **result) from None
    return transaction
