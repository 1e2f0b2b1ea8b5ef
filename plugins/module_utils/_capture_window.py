# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A capture window on one tracing buffer, and what the ledger knows of it.

Opening a window empties the buffer (unless told not to), notes `tracing_on` and
turns it on; closing it turns recording off for the read-out, and restoring puts
`tracing_on` back as it was. The original `tracing_on` is recorded in the ledger
(a `knob` entry) before it is switched, so teardown restores it if the play dies
with the window open. A window that spans tasks (`state=started`) also gets a
`capture` entry holding the facts `state=collected` needs: the original
`tracing_on`, the wall clock and trace clock at the start, each CPU's stats, and
the anchor's samples (the CPU its markers are on, and each marker's bracket).

An armed window (`state=started` with `start_at` or `duration`) is opened and closed
by a keeper process (`_capture_keeper`) at the times asked for: arming records the
window, turns recording off and empties the buffer; the keeper notes in the capture
entry when it really opened the window (and closed it); `state=collected` waits for
the keeper before it reads the window out.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import os
import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture, _capture_anchor, _capture_keeper
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import CaptureError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerKind, place
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

# How often state=collected looks whether an armed window's keeper is done.
POLL = 0.1


class Window:
    """Opening and closing a capture window on one buffer, with tracing_on put back."""

    def __init__(self, buffer: TracingDir, ledger_path: str, session: str, clear: bool) -> None:
        self.buffer = buffer
        self.ledger_path = ledger_path
        self.session = session
        self.clear = clear
        self.cpus = _capture.cpus(buffer)  # every slot, 0..n-1
        self.captured, self.offline = _capture.capturable(self.cpus)

    def where(self) -> str:
        return _capture.where(self.buffer)

    def open(self, record_capture: bool) -> dict:
        """Empty the buffer if asked, note tracing_on, turn it on. Returns the facts the
        close needs (kept in the ledger for a window that spans tasks)."""
        buffer = self.buffer
        facts = self._record(dict(kind="capture") if record_capture else None)
        if self.clear:
            _capture.clear(buffer)
        facts["before"] = _capture.stats(buffer, self.captured)
        facts["wall"] = time.time()
        first = next(iter(facts["before"].values()), None)
        facts["trace_now"] = first.get("now ts") if first else None
        if not facts["was_on"]:
            _capture.set_tracing_on(buffer, True)
        return facts

    def _record(self, capture: dict | None) -> dict:
        """Refuse a second window on the buffer; record tracing_on's value (and, given
        `capture`, the window's capture entry with those fields) before it is switched."""
        buffer = self.buffer
        was_on = _capture.tracing_on(buffer)
        facts: dict = dict(instance=buffer.instance, was_on=was_on)
        with Ledger(self.ledger_path) as ledger:
            # One window per buffer: another would empty and consume the open one.
            entry = ledger.find(kind="capture", instance=buffer.instance)
            if entry is not None:
                raise CaptureError(
                    "%s already has a capture window open (state=started by session %r at %s): collect it "
                    "with state=collected in that session, or end it with tracefleet.ftrace.teardown; "
                    "nothing was changed" % (self.where(), entry.get("session"), _when(entry.get("time")))
                )
            # tracing_on is switched during the window (on while it is open, off while it
            # is read out): record its value so teardown restores it if we die here.
            facts["recorded_knob"] = ledger.record(
                self.session, kind="knob", instance=buffer.instance, file="tracing_on", original="1" if was_on else "0"
            )
            if capture is not None:
                ledger.record(
                    self.session,
                    instance=buffer.instance,
                    was_on=was_on,
                    recorded_knob=facts["recorded_knob"],
                    **capture,
                )
        return facts

    def arm(self, start_at: float | None, duration: float | None) -> dict:
        """Record an armed window (opening at `start_at`, or at once; closing after
        `duration`, or when collected), turn recording off until it opens, empty the
        buffer, and leave its keeper behind. Returns what the task reports: when the
        window opens, whether it was armed too late for that, and the keeper."""
        buffer = self.buffer
        armed = time.time()
        opens = armed if start_at is None else start_at
        self._record(dict(kind="capture", start_at=start_at, duration=duration, armed=armed))
        _capture.set_tracing_on(buffer, False)
        if self.clear:
            _capture.clear(buffer)
        before = _capture.stats(buffer, self.captured)
        first = next(iter(before.values()), None)
        keeper = _capture_keeper.detach(lambda: self._keep(opens, duration))
        # Late: the keeper started after the time the window was to open.
        late = start_at is not None and time.time() > start_at
        # One ledger write for the counters and the keeper (the keeper adds its own
        # fields to the same entry, under the ledger's lock, whichever comes first).
        self._update(
            before={str(cpu): stats for cpu, stats in before.items()},
            trace_now=first.get("now ts") if first else None,
            keeper=keeper,
            late=late,
        )
        return dict(start_at=start_at, late=late, keeper=keeper)

    def _keep(self, opens: float, duration: float | None) -> None:  # pragma: no cover - runs in the keeper
        """The keeper's work: open the window at `opens`, close it `duration` later.
        Between waking up and the write that opens the window it only reads the
        clock (tracing_on is opened beforehand); what follows runs at the lowest
        priority, so that other windows opening at the same instant on this host (lab
        aliases, several sessions) do not wait for its bookkeeping."""
        switch = os.open(self.buffer.path("tracing_on"), os.O_WRONLY)
        try:
            _capture_keeper.sleep_until(opens)
            wall = time.time()
            os.write(switch, b"1")
        finally:
            os.close(switch)
        os.nice(19)
        anchor, problem = _capture_anchor.take_samples(self.buffer, self.captured)
        self._update(wall=wall, anchor=anchor, anchor_problem=problem)
        with contextlib.suppress(OSError):
            os.nice(-19)  # back, for closing on time (root may; others stay at 19)
        if duration is None:
            return
        _capture_keeper.sleep_until(wall + duration)
        _capture.set_tracing_on(self.buffer, False)
        self._update(closed=time.time())

    def _update(self, **fields) -> None:
        """Add facts to the buffer's capture entry, if it is still there."""
        with Ledger(self.ledger_path) as ledger:
            entry = ledger.find(kind="capture", instance=self.buffer.instance)
            if entry is not None:
                ledger.update(entry, **fields)

    def remember_start(self, facts: dict) -> None:
        """Keep the window's start facts in its capture entry, for state=collected."""
        self._update(
            wall=facts["wall"],
            trace_now=facts["trace_now"],
            before={str(cpu): stats for cpu, stats in facts["before"].items()},
            anchor=facts.get("anchor"),
        )

    def started_facts(self) -> dict:
        """The facts of the window a `state=started` task opened on this buffer."""
        entry = self._entry()
        if entry.get("session") != self.session:
            raise CaptureError(
                "the capture window open in %s was started by session %r, not %r: collect it in that "
                "session; nothing was changed" % (self.where(), entry.get("session"), self.session)
            )
        if "armed" in entry:
            entry = self._wait_for_keeper(entry)
        start_at = entry.get("start_at")
        return dict(
            was_on=entry["was_on"],
            recorded_knob=entry.get("recorded_knob"),
            wall=entry.get("wall"),
            trace_now=entry.get("trace_now"),
            before={int(cpu): stats for cpu, stats in entry.get("before", {}).items()},
            anchor=_anchor_samples(entry.get("anchor")),
            anchor_problem=entry.get("anchor_problem"),
            start_at=start_at,
            late=bool(entry.get("late")),
            closed=entry.get("closed"),
            keeper_gone=entry.get("keeper_gone"),
        )

    def _entry(self) -> dict:
        with Ledger(self.ledger_path, dry_run=True) as ledger:
            entry = ledger.find(kind="capture", instance=self.buffer.instance)
        if entry is None:
            raise CaptureError("no capture window is open in %s: start one with state=started" % self.where())
        return entry

    def _wait_for_keeper(self, entry: dict) -> dict:
        """An armed window: wait until its keeper has opened it and, with a duration,
        closed it. A keeper that is gone before that leaves a window that never opened
        (an error) or one that this task closes (noted as `keeper_gone`)."""
        duration = entry.get("duration")
        while True:
            if entry.get("closed" if duration is not None else "wall") is not None:
                _capture_keeper.stop(entry.get("keeper"))
                return entry
            if not _capture_keeper.alive(entry.get("keeper")):
                entry = self._entry()  # it may have finished between the two reads
                if entry.get("wall") is None:
                    raise CaptureError(
                        "the capture window armed in %s to open at %s never opened: its keeper process "
                        "(pid %s) is gone (the host rebooted, or it was killed); nothing was read. End it "
                        "with tracefleet.ftrace.teardown" % (self.where(), _when(entry.get("start_at")), _pid(entry))
                    )
                if duration is None or entry.get("closed") is not None:
                    return entry
                return dict(entry, keeper_gone=_pid(entry))
            time.sleep(POLL)
            entry = self._entry()

    def stop(self) -> None:
        """Recording off, for the read-out: our own reads are not traced."""
        _capture.set_tracing_on(self.buffer, False)

    def restore(self, facts: dict, forget_capture: bool) -> None:
        """tracing_on as it was, and the ledger entries of this window forgotten."""
        buffer = self.buffer
        _capture.set_tracing_on(buffer, facts["was_on"])
        with Ledger(self.ledger_path) as ledger:
            if facts.get("recorded_knob"):
                entry = ledger.find(kind="knob", instance=buffer.instance, file="tracing_on")
                if entry is not None:
                    ledger.forget(entry)
            if forget_capture:
                entry = ledger.find(kind="capture", instance=buffer.instance)
                if entry is not None:
                    ledger.forget(entry)


def _anchor_samples(value) -> dict | None:
    """The anchor samples kept in a capture entry, if they are well-formed."""
    if not isinstance(value, dict) or not isinstance(value.get("cpu"), int):
        return None
    samples = value.get("samples")
    if not isinstance(samples, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(number, int) for number in pair)
        for pair in samples
    ):
        return None
    return dict(cpu=value["cpu"], samples=samples)


def _pid(entry: dict):
    keeper = entry.get("keeper")
    return keeper.get("pid") if isinstance(keeper, dict) else None


def _when(stamp) -> str:
    if not isinstance(stamp, (int, float)):
        return "an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _end_keeper(_tracing, _ledger, entry: dict) -> str | None:
    """Teardown of a capture entry: an armed window's keeper must not switch recording
    after its knob is put back, so it is ended first."""
    _capture_keeper.stop(entry.get("keeper"))
    return None


# The ledger kind this code records (`capture`, an open window). Undoing it touches
# nothing in tracefs: the window's tracing_on change is a `knob` entry of its own,
# which the knob code puts back.
LEDGER_KINDS = {
    "capture": LedgerKind(lambda entry: "end the capture window opened in %s" % place(entry), _end_keeper, False),
}
