"""A lab guest's wall clock next to the host's: measured, and set.

A guest reads its wall clock once at boot from qemu's RTC, which has whole seconds:
every VM starts up to a second behind the host, each by a different amount, and two
guests' traces then disagree on wall-clock time by as much. `up` therefore sets the
guest's CLOCK_REALTIME from the host's right after SSH answers, and `tracelab clock`
measures how far it is off later.

Measured the way tracefleet takes its own anchors: one SSH session runs a small
Python loop in the guest that answers each line with its CLOCK_REALTIME; the host
reads its own clock before sending and after the answer, and the tightest of several
brackets gives the offset (guest minus the host's bracket midpoint) and its
uncertainty (half the bracket). Setting it moves the guest clock by the measured
offset in that same guest process, and measures again.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass

from .errors import LabError

# The guest side: a line "t" is answered with time.time_ns(); "set N" steps the clock
# back by N ns (clock_settime) and answers "ok"; end of input ends it.
_GUEST = (
    "import sys, time\n"
    "for line in sys.stdin:\n"
    "    if line.startswith('set '):\n"
    "        time.clock_settime_ns(time.CLOCK_REALTIME, time.time_ns() - int(line[4:]))\n"
    "        print('ok', flush=True)\n"
    "    else:\n"
    "        print(time.time_ns(), flush=True)\n"
)
SAMPLES = 12


@dataclass(frozen=True)
class Offset:
    """The guest's CLOCK_REALTIME minus the host's, in ns, give or take uncertainty_ns."""

    offset_ns: int
    uncertainty_ns: int

    def describe(self) -> str:
        return "%+.3f ms (+/- %.3f ms)" % (self.offset_ns / 1e6, self.uncertainty_ns / 1e6)


def tightest(samples: list[tuple[int, int, int]]) -> Offset:
    """From (host before, guest, host after) samples, the one with the narrowest bracket."""
    if not samples:
        raise LabError("no clock samples")
    before, guest, after = min(samples, key=lambda sample: sample[2] - sample[0])
    if after < before:
        raise LabError("the host clock went backwards while measuring")
    half = (after - before) // 2
    return Offset(guest - (before + half), half)


class _Session:
    def __init__(self, ssh_command: list[str]) -> None:
        self.process = subprocess.Popen(
            # ssh hands the remote shell one string: the program is quoted for it.
            ssh_command[:1] + ["-T"] + ssh_command[1:] + ["python3 -u -c " + shlex.quote(_GUEST)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def ask(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if not answer:
            error = self.process.stderr.read() if self.process.stderr else ""
            raise LabError("the guest's clock reader ended: %s" % (error.strip() or "no output"))
        return answer.strip()

    def measure(self, samples: int) -> Offset:
        found = []
        for _attempt in range(samples):
            before = time.time_ns()
            answer = self.ask("t")
            after = time.time_ns()
            try:
                found.append((before, int(answer), after))
            except ValueError:
                raise LabError("the guest's clock reader answered %r" % answer) from None
        return tightest(found)

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(ssh_command: list[str], samples: int = SAMPLES) -> Offset:
    session = _Session(ssh_command)
    try:
        return session.measure(samples)
    finally:
        session.close()


def sync(ssh_command: list[str], samples: int = SAMPLES) -> tuple[Offset, Offset]:
    """Step the guest's clock to the host's; the offsets before and after."""
    session = _Session(ssh_command)
    try:
        before = session.measure(samples)
        if session.ask("set %d" % before.offset_ns) != "ok":
            raise LabError("the guest did not set its clock")
        return before, session.measure(samples)
    finally:
        session.close()
