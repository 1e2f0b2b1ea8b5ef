# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The `tracefleet.ftrace.linear` strategy: ansible.builtin.linear, except that the
controller sleeps while every fork is busy instead of spinning."""

from __future__ import annotations

DOCUMENTATION = r"""
name: linear
short_description: The linear strategy, without a busy wait when every fork is busy
version_added: 0.1.0
description:
  - Runs a play exactly like C(ansible.builtin.linear) - task by task, every host of the
    batch finishing a task before any starts the next - and differs in one place only, when
    a batch has more hosts than forks.
  - When every fork is busy, ansible-core's strategy looks for a free one again every
    0.1 ms until one is free (a loop in C(StrategyBase._queue_task) that no setting
    changes). For a batch larger than its forks, this spin costs the controller CPU for
    as long as each wave of forks takes, on every task (measured in docs/scaling.md in
    the collection).
  - This strategy waits for a fork to end instead, with the operating system's own
    wait on the worker processes (C(multiprocessing.connection.wait) on their sentinels),
    so the controller sleeps until a fork is free and then queues the next host at once.
  - The C(tracefleet.ftrace.rollout) playbook uses it. To use it in a playbook of your own,
    set the play keyword C(strategy) to V(tracefleet.ftrace.linear), or set C(strategy) under
    C([defaults]) in C(ansible.cfg) (or E(ANSIBLE_STRATEGY)) to it.
notes:
  - With no more hosts in a batch than forks it behaves, and costs, exactly like
    C(ansible.builtin.linear).
  - Task C(throttle) is honoured as by C(ansible.builtin.linear).
author:
  - tracefleet contributors (@tracefleet)
"""

from multiprocessing.connection import wait as _wait_for_any

from ansible.plugins.strategy.linear import StrategyModule as _LinearStrategy

# Longest sleep between two looks at the forks: a wait returns as soon as a worker
# ends; this only bounds it for a slot freed some other way (a worker never started).
_MAX_WAIT_S = 0.5


def busy_workers(workers, limit):
    """The busy workers among the first `limit` slots, or None when one of those slots
    is free (empty, or its worker has ended)."""
    busy = []
    for worker in workers[:limit]:
        if worker is None or not worker.is_alive():
            return None
        busy.append(worker)
    return busy


def wait_for_an_end(busy, timeout):
    """Sleep until one of the busy workers ends (or `timeout` passes). A worker's
    sentinel is ready once its process has closed its files, a moment before the
    kernel lets it be reaped; it is joined then, so that `is_alive` agrees at once
    rather than after a spin over that moment."""
    ready = set(_wait_for_any([worker.sentinel for worker in busy], timeout=timeout))
    for worker in busy:
        if worker.sentinel in ready:
            worker.join(timeout)


class StrategyModule(_LinearStrategy):
    def _queue_task(self, host, task, task_vars, play_context):
        self._wait_for_free_worker(task)
        super()._queue_task(host, task, task_vars, play_context)

    def _worker_limit(self, task):
        """How many worker slots the task may use: all, or its throttle (ignored with
        run_once, as ansible-core does). A throttle that is not a plain integer yet is
        left to ansible-core, which templates it and reports a bad one."""
        limit = len(self._workers)
        throttle = getattr(task, "throttle", 0)
        if isinstance(throttle, int) and 0 < throttle <= limit and not task.run_once:
            return throttle
        return limit

    def _wait_for_free_worker(self, task):
        limit = self._worker_limit(task)
        while not self._tqm._terminated:
            busy = busy_workers(self._workers, limit)
            if not busy:
                return
            wait_for_an_end(busy, _MAX_WAIT_S)
