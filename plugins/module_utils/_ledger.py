# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ledger: what tracefleet changed on this host, so `teardown` can undo exactly that.

A JSON file (default /var/lib/tracefleet/ledger.json) written atomically (temp file,
fsync, rename) under an exclusive lock on a sibling lock file (opened without
following a symlink, and only when it is a regular file). An entry is recorded
*before* the change it describes, so a play killed between the two leaves an entry
whose undo is harmless; a play killed after leaves an entry teardown still finds.
A batch of changes is recorded with one save (`record_many`) before its writes.

Every entry is checked when the ledger is read (its kind known, its fields there
with the right types): a damaged ledger is a `LedgerError` naming the file and the
entry, never a traceback half-way through a teardown.

Entry kinds and their keys (one entry per key; the first original value wins):
  instance      name                        created by tracefleet: rmdir on teardown
  knob          instance, file              original value of a knob
  list_add      instance, file, value       an entry appended to a shared list
  list_remove   instance, file, value       an entry removed from a shared list
  event         instance, event             original enable state (0/1)
  filter        instance, event             original filter ("none" = no filter)
  trigger_add   instance, event, value      a trigger added
  trigger_remove instance, event, value     a trigger removed
  probe         group, event                a dynamic event defined by tracefleet
  mount         path, fstype                a mount made by tracefleet
  capture       instance                    a capture window opened by trace_capture
                                            (state=started); its tracing_on change is
                                            a knob entry of its own
  persist       name                        a boot-time tracing setup of trace_persist;
                                            what it owns is in its state file

Each kind is recorded and undone by the code that owns it: that code describes its
kinds with a `LedgerKind` (what teardown says and does) in a `LEDGER_KINDS` dict, and
`_teardown.KINDS` gathers those dicts (instance: `_instance`; knob, list_add,
list_remove: `_knob_changes`; event, filter, trigger_*: `_events`; probe: `_probes`;
mount: `_mountpolicy`; capture: `_capture_window`; persist: `_persist_apply`).
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from typing import Callable

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

DEFAULT_PATH = "/var/lib/tracefleet/ledger.json"
FORMAT = 1
# The `ledger_path` option of every module that keeps or reads the ledger (documented
# by the tracefleet.ftrace.tracing doc fragments).
LEDGER_PATH_ARG = dict(type="path", default=DEFAULT_PATH)

KEY_FIELDS = {
    "instance": ("name",),
    "knob": ("instance", "file"),
    "list_add": ("instance", "file", "value"),
    "list_remove": ("instance", "file", "value"),
    "event": ("instance", "event"),
    "filter": ("instance", "event"),
    "trigger_add": ("instance", "event", "value"),
    "trigger_remove": ("instance", "event", "value"),
    "probe": ("group", "event"),
    "mount": ("path", "fstype"),
    "capture": ("instance",),
    "persist": ("name",),
}
# Fields an entry needs besides its key fields, for the code that undoes it.
EXTRA_FIELDS = {
    "knob": ("original",),
    "event": ("original",),
    "filter": ("original",),
    "persist": ("backend", "state_file"),
}
# Fields that may be None (the top level); every other field is a string.
OPTIONAL_FIELDS = ("instance",)
# Entries that cancel each other: adding back what we removed, or removing what we added.
OPPOSITES = {
    "list_add": "list_remove",
    "list_remove": "list_add",
    "trigger_add": "trigger_remove",
    "trigger_remove": "trigger_add",
}


class LedgerError(TracefleetError):
    """The ledger cannot be read, or holds something tracefleet does not know."""


class LedgerKind:
    """How teardown handles one kind of entry; supplied by the code that records it.

    `describe(entry)` says what undoing it does; `undo(tracing, ledger, entry)` does it
    (`tracing` is the top level of tracefs) and returns a note when there was nothing
    left to undo. `needs_tracefs` False: undone without tracefs (mounts, capture
    windows); otherwise teardown opens tracefs first, and an entry about an instance
    that is gone becomes a note without calling `undo`. `needs_reboot` True: undoing
    it changes what the next boot does, not the running kernel (boot-time setups).
    """

    def __init__(
        self,
        describe: Callable[[dict], str],
        undo: Callable[..., str | None],
        needs_tracefs: bool = True,
        needs_reboot: bool = False,
    ) -> None:
        self.describe = describe
        self.undo = undo
        self.needs_tracefs = needs_tracefs
        self.needs_reboot = needs_reboot


def place(entry: dict) -> str:
    """Where an entry's change was made, as teardown's messages say it."""
    return "instance %s" % entry["instance"] if entry.get("instance") else "top level"


def entry_key(entry: dict) -> tuple:
    kind = entry["kind"]
    if kind not in KEY_FIELDS:
        raise LedgerError("unknown ledger entry kind %r" % kind)
    return (kind,) + tuple(entry.get(field) for field in KEY_FIELDS[kind])


def entry_problem(entry: object) -> str | None:
    """What is wrong with a ledger entry read from disk, or None."""
    if not isinstance(entry, dict):
        return "is not an object"
    kind = entry.get("kind")
    if kind not in KEY_FIELDS:
        return "has an unknown kind %r" % (kind,)
    for field in ("session",) + KEY_FIELDS[kind] + EXTRA_FIELDS.get(kind, ()):
        if field not in entry:
            return "has no %r" % field
        value = entry[field]
        if value is None and field in OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            return "has %s=%r, not a string" % (field, value)
    return None


class Ledger:
    """Open with `with Ledger(path) as ledger:` - the lock is held until the block ends."""

    def __init__(self, path: str = DEFAULT_PATH, dry_run: bool = False) -> None:
        self.path = path
        self.dry_run = dry_run
        self.data: dict = {"format": FORMAT, "entries": []}
        self._lock_fd: int | None = None

    def __enter__(self) -> Ledger:
        if not self.dry_run:
            self._lock()
        try:
            self._load()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._unlock()

    def _lock(self) -> None:
        directory = os.path.dirname(self.path) or "."
        lock_path = self.path + ".lock"
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LedgerError("the ledger's lock file %s is a symlink; refusing to follow it" % lock_path) from None
            raise LedgerError("cannot open the ledger %s: %s" % (self.path, _reason(exc))) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LedgerError("the ledger's lock file %s is not a regular file; refusing to use it" % lock_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            raise LedgerError("cannot lock the ledger %s: %s" % (self.path, _reason(exc))) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _unlock(self) -> None:
        """Never raises: closing the descriptor releases the lock anyway, and an error
        here must not hide the one that ended the `with` block."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def _load(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LedgerError("the ledger %s is a symlink; refusing to follow it" % self.path) from None
            raise LedgerError("cannot read the ledger %s: %s" % (self.path, _reason(exc))) from None
        try:
            with os.fdopen(fd, encoding="utf-8") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise LedgerError("the ledger %s is not a regular file" % self.path)
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise LedgerError("cannot read the ledger %s: %s" % (self.path, exc)) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LedgerError(
                "%s is not a tracefleet ledger (format %r)"
                % (self.path, data.get("format") if isinstance(data, dict) else None)
            )
        entries = data.get("entries")
        if not isinstance(entries, list):
            raise LedgerError("the ledger %s is damaged: 'entries' is not a list" % self.path)
        for index, entry in enumerate(entries):
            problem = entry_problem(entry)
            if problem is not None:
                raise LedgerError(
                    "the ledger %s is damaged: entry %d %s: %s; fix or remove that entry"
                    % (self.path, index, problem, json.dumps(entry, sort_keys=True)[:500])
                )
        self.data = data

    def _save(self) -> None:
        if self.dry_run:
            return
        text = json.dumps(self.data, indent=1, sort_keys=True) + "\n"
        try:
            _atomicfile.replace(self.path, text.encode("utf-8"), mode=0o600)
        except OSError as exc:
            raise LedgerError(
                "cannot write the ledger %s: %s; the change it was to record was not made" % (self.path, _reason(exc))
            ) from None

    @property
    def entries(self) -> list[dict]:
        return self.data["entries"]

    def find(self, **fields) -> dict | None:
        key = entry_key(fields)
        for entry in self.entries:
            if entry_key(entry) == key:
                return entry
        return None

    def owns(self, **key) -> bool:
        """Whether tracefleet made the thing `key` names (kind and key fields)."""
        return self.find(**key) is not None

    def owns_instance(self, name: str) -> bool:
        return self.owns(kind="instance", name=name)

    def forget_if_present(self, **key) -> None:
        entry = self.find(**key)
        if entry is not None:
            self.forget(entry)

    def record(self, session: str, **fields) -> bool:
        """Record a change about to be made; False when an entry already covers it.

        A list entry added after we removed it (or the reverse) cancels the earlier
        entry instead: the host is back where tracefleet found it.
        """
        return self.record_many(session, [fields])[0]

    def record_many(self, session: str, changes: list[dict]) -> list[bool]:
        """`record` for a batch of changes about to be made, with one save (enabling
        every event of a system is hundreds of entries). Per change: whether it
        changed the ledger."""
        results = []
        now = int(time.time())
        index = {entry_key(entry): entry for entry in self.entries}
        for fields in changes:
            key = entry_key(fields)
            opposite = OPPOSITES.get(fields["kind"])
            earlier = index.get((opposite,) + key[1:]) if opposite else None
            if earlier is not None:
                self.entries.remove(earlier)
                del index[entry_key(earlier)]
                results.append(True)
            elif key in index:
                results.append(False)
            else:
                entry = dict(fields, session=session, time=now)
                self.entries.append(entry)
                index[key] = entry
                results.append(True)
        if any(results):
            self._save()
        return results

    def checkpoint(self) -> list[dict]:
        return [dict(entry) for entry in self.entries]

    def restore(self, checkpoint: list[dict]) -> None:
        """Back to a checkpoint: used when a task rolled back its own changes."""
        if checkpoint != self.entries:
            self.data["entries"] = checkpoint
            self._save()

    def update(self, entry: dict, **fields) -> None:
        """Add details to an entry (not its key fields)."""
        entry.update(fields)
        self._save()

    def forget(self, entry: dict) -> None:
        self.entries.remove(entry)
        self._save()

    def forget_instance_contents(self, name: str) -> None:
        """Entries about things inside an instance go away with the instance."""
        kept = [entry for entry in self.entries if entry["kind"] == "instance" or entry.get("instance") != name]
        if len(kept) != len(self.entries):
            self.data["entries"] = kept
            self._save()

    def session_entries(self, session: str | None) -> list[dict]:
        return [entry for entry in self.entries if session is None or entry["session"] == session]


def _reason(exc: OSError) -> str:
    return "[Errno %d] %s" % (exc.errno, exc.strerror) if exc.errno else str(exc)
