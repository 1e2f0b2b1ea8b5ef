# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tracefleet.ftrace.linear strategy: it waits on the workers' sentinels for a free
fork, where ansible-core looks again every 0.1 ms."""

from __future__ import annotations

import importlib
import multiprocessing
import time
import types

import pytest
from ansible.module_utils import _internal

linear = None  # the plugin, imported by the fixture below


@pytest.fixture(autouse=True)
def strategy_module(monkeypatch):
    """Importing the plugin imports ansible's controller code, which sets its
    process-wide `is_controller` flag (a module's warnings then go to the display, and
    the module tests that look for them in results fail): imported here, with the flag
    put back after each test, as the action plugins' tests do."""
    global linear
    monkeypatch.setattr(_internal, "is_controller", getattr(_internal, "is_controller", False))
    linear = importlib.import_module("ansible_collections.tracefleet.ftrace.plugins.strategy.linear")
    yield linear


class CountingProcess:
    """A real process whose is_alive calls are counted (how often the strategy looked)."""

    def __init__(self, seconds):
        self.process = multiprocessing.get_context("fork").Process(target=time.sleep, args=(seconds,))
        self.process.start()
        self.looks = 0

    def is_alive(self):
        self.looks += 1
        return self.process.is_alive()

    @property
    def sentinel(self):
        return self.process.sentinel

    def join(self, timeout=None):
        self.process.join(timeout)


class Ended:
    sentinel = -1

    def is_alive(self):
        return False


def strategy(workers):
    """A StrategyModule with only what the wait uses (no TaskQueueManager behind it)."""
    module = linear.StrategyModule.__new__(linear.StrategyModule)
    module._workers = workers
    module._tqm = types.SimpleNamespace(_terminated=False)
    return module


def task(throttle=0, run_once=False):
    return types.SimpleNamespace(throttle=throttle, run_once=run_once)


def test_busy_workers_none_when_a_slot_is_free():
    busy = CountingProcess(5)
    try:
        assert linear.busy_workers([busy, None], 2) is None
        assert linear.busy_workers([busy, Ended()], 2) is None
        assert linear.busy_workers([busy, Ended()], 1) == [busy]
        assert linear.busy_workers([], 0) == []
    finally:
        busy.process.kill()
        busy.join()


def test_waits_for_a_worker_to_end_without_spinning():
    workers = [CountingProcess(0.6), CountingProcess(30)]
    try:
        started = time.monotonic()
        strategy(workers)._wait_for_free_worker(task())
        waited = time.monotonic() - started
        # Returned because the short worker ended, not because of a timeout...
        assert not workers[0].process.is_alive()
        assert workers[1].process.is_alive()
        assert 0.4 < waited < 5
        # ...having looked at the forks a handful of times: a 0.1 ms spin would have
        # looked thousands of times in 0.6 s.
        assert workers[0].looks <= 4
    finally:
        for worker in workers:
            worker.process.kill()
            worker.join()


def test_returns_at_once_with_a_free_slot():
    busy = CountingProcess(30)
    try:
        started = time.monotonic()
        strategy([busy, None])._wait_for_free_worker(task())
        assert time.monotonic() - started < 0.2
    finally:
        busy.process.kill()
        busy.join()


@pytest.mark.parametrize(
    "throttle, run_once, limit",
    [(0, False, 4), (2, False, 2), (2, True, 4), (9, False, 4), ("{{ n }}", False, 4)],
)
def test_worker_limit_follows_throttle(throttle, run_once, limit):
    assert strategy([None] * 4)._worker_limit(task(throttle, run_once)) == limit


def test_throttle_limits_which_slots_count():
    # Slot 2 is free but a throttle of 1 only lets the task use slot 1: still waiting,
    # until that worker ends.
    workers = [CountingProcess(0.5), None]
    try:
        started = time.monotonic()
        strategy(workers)._wait_for_free_worker(task(throttle=1))
        assert time.monotonic() - started > 0.3
        assert not workers[0].process.is_alive()
    finally:
        workers[0].process.kill()
        workers[0].join()


def test_stops_waiting_when_the_run_is_terminated():
    busy = CountingProcess(30)
    module = strategy([busy])
    module._tqm._terminated = True
    try:
        started = time.monotonic()
        module._wait_for_free_worker(task())
        assert time.monotonic() - started < 0.2
    finally:
        busy.process.kill()
        busy.join()
