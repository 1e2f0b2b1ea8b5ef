"""The lab's guest clock measurement: the tightest bracket, and the SSH session's protocol."""

from __future__ import annotations

import pytest

from tracelab_lib import clock
from tracelab_lib.errors import LabError


def test_tightest_bracket_wins():
    samples = [(1_000, 5_600, 2_000), (10_000, 14_550, 10_100), (20_000, 30_000, 29_000)]
    found = clock.tightest(samples)
    assert found == clock.Offset(offset_ns=4_500, uncertainty_ns=50)
    assert found.describe() == "+0.004 ms (+/- 0.000 ms)"


def test_tightest_refuses_nothing_and_a_backwards_host_clock():
    with pytest.raises(LabError, match="no clock samples"):
        clock.tightest([])
    with pytest.raises(LabError, match="went backwards"):
        clock.tightest([(2_000, 1_500, 1_000)])


@pytest.fixture
def fake_ssh(tmp_path):
    """An `ssh` that ignores its options and runs the remote command here."""
    script = tmp_path / "ssh"
    script.write_text('#!/bin/sh\nfor arg; do last=$arg; done\nexec sh -c "$last"\n')
    script.chmod(0o755)
    return [str(script), "-o", "LogLevel=ERROR", "root@127.0.0.1"]


def test_measure_a_guest_that_is_this_machine(fake_ssh):
    found = clock.measure(fake_ssh, samples=5)
    # The "guest" is this host: the offset is within the bracket, which is short.
    assert abs(found.offset_ns) <= found.uncertainty_ns + 1_000_000
    assert 0 <= found.uncertainty_ns < 500_000_000


def test_a_guest_without_the_reader_fails_clearly(tmp_path):
    script = tmp_path / "ssh"
    script.write_text("#!/bin/sh\necho 'python3: not found' >&2\nexit 127\n")
    script.chmod(0o755)
    with pytest.raises(LabError, match="clock reader ended: python3: not found"):
        clock.measure([str(script)], samples=2)


def test_a_guest_that_answers_nonsense_is_refused(tmp_path):
    """A guest whose reader answers something that is not a time (a lying or broken
    guest) is a clear error, not a traceback and not a clock step."""
    script = tmp_path / "ssh"
    script.write_text("#!/bin/sh\nwhile read line; do echo '12:00 tomorrow'; done\n")
    script.chmod(0o755)
    with pytest.raises(LabError, match="answered '12:00 tomorrow'"):
        clock.sync([str(script)], samples=2)
