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
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import time

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture
from ansible_collections.tracefleet.ftrace.plugins.module_utils._capture import CaptureError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger, LedgerKind, place
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir


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
            if record_capture:
                ledger.record(
                    self.session,
                    kind="capture",
                    instance=buffer.instance,
                    was_on=was_on,
                    recorded_knob=facts["recorded_knob"],
                )
        if self.clear:
            _capture.clear(buffer)
        facts["before"] = _capture.stats(buffer, self.captured)
        facts["wall"] = time.time()
        first = next(iter(facts["before"].values()), None)
        facts["trace_now"] = first.get("now ts") if first else None
        if not was_on:
            _capture.set_tracing_on(buffer, True)
        return facts

    def remember_start(self, facts: dict) -> None:
        """Keep the window's start facts in its capture entry, for state=collected."""
        with Ledger(self.ledger_path) as ledger:
            entry = ledger.find(kind="capture", instance=self.buffer.instance)
            if entry is not None:
                ledger.update(
                    entry,
                    wall=facts["wall"],
                    trace_now=facts["trace_now"],
                    before={str(cpu): stats for cpu, stats in facts["before"].items()},
                    anchor=facts.get("anchor"),
                )

    def started_facts(self) -> dict:
        """The facts of the window a `state=started` task opened on this buffer."""
        with Ledger(self.ledger_path, dry_run=True) as ledger:
            entry = ledger.find(kind="capture", instance=self.buffer.instance)
        if entry is None:
            raise CaptureError("no capture window is open in %s: start one with state=started" % self.where())
        if entry.get("session") != self.session:
            raise CaptureError(
                "the capture window open in %s was started by session %r, not %r: collect it in that "
                "session; nothing was changed" % (self.where(), entry.get("session"), self.session)
            )
        return dict(
            was_on=entry["was_on"],
            recorded_knob=entry.get("recorded_knob"),
            wall=entry.get("wall"),
            trace_now=entry.get("trace_now"),
            before={int(cpu): stats for cpu, stats in entry.get("before", {}).items()},
            anchor=_anchor_samples(entry.get("anchor")),
        )

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


def _when(stamp) -> str:
    if not isinstance(stamp, (int, float)):
        return "an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


# The ledger kind this code records (`capture`, an open window). Undoing it touches
# nothing in tracefs: the window's tracing_on change is a `knob` entry of its own,
# which the knob code puts back.
LEDGER_KINDS = {
    "capture": LedgerKind(
        lambda entry: "end the capture window opened in %s" % place(entry), lambda *_args: None, False
    ),
}
