# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A repeatable random sample of hosts, on the controller (the `sample` filter, the
rollout playbook's `rollout_sample`, the `sample` record of a run's manifest).

Every host gets a rank, the sha256 of the seed and its name; the sample is the hosts
of the lowest ranks. That is a seeded shuffle of the sorted names whose result depends
only on the seed and the set of names: not on their order, not on the Python or
ansible-core version (Python's `random.Random(seed).shuffle`, which Jinja's and
ansible's `shuffle(seed=...)` use, promises no sequence across Python versions; the
seed 42 and the seed "42" shuffle differently; ansible's filter shuffles at random,
unrepeatably, when the seed is falsy such as 0, and returns the list unshuffled when
the seed is refused). A larger sample with the
same seed holds the smaller one, and a host that joins the group moves no other host
out of the ranking.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import fractions
import hashlib
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import control_character
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

# The name of the ranking, recorded with every sample, so that a sample read back
# later says how to draw it again.
METHOD = "sha256-rank-1"
MAX_SEED = 256
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d{1,6})?)%")
_COUNT = re.compile(r"\d{1,9}")


class SampleError(TracefleetError):
    """A sample size or seed that cannot be used."""


def seed_text(seed) -> str:
    """The seed as the ranking uses it: a string or an integer, as text (so that
    `-e rollout_sample_seed=42` and `rollout_sample_seed: 42` draw the same hosts)."""
    if isinstance(seed, bool) or not isinstance(seed, (str, int)):
        raise SampleError("seed=%r: use a string or an integer" % (seed,))
    text = str.__str__(seed) if isinstance(seed, str) else str(int(seed))
    if not text or len(text) > MAX_SEED:
        raise SampleError("seed=%r: use 1 to %d characters" % (seed, MAX_SEED))
    # The seed is recorded in the run's manifest and printed to be given again with -e.
    problem = control_character(text)
    if problem:
        raise SampleError("seed=%r: %s" % (seed, problem))
    return text


def size_text(size) -> str:
    """The size as asked, checked: a count (`5`, `"5"`) or a percentage (`"10%"`)."""
    if isinstance(size, bool) or not isinstance(size, (str, int)):
        raise SampleError('size=%r: use a count of hosts (5) or a percentage ("10%%")' % (size,))
    text = (str.__str__(size) if isinstance(size, str) else str(int(size))).strip()
    percent = _PERCENT.fullmatch(text)
    if percent:
        value = fractions.Fraction(percent.group(1))
        if not 0 < value <= 100:
            raise SampleError("size=%r: a percentage above 0 and at most 100%% is expected" % (size,))
        return text
    if not _COUNT.fullmatch(text):
        raise SampleError('size=%r: use a count of hosts (5) or a percentage ("10%%")' % (size,))
    if int(text) < 1:
        raise SampleError("size=%r: a sample of no hosts traces nothing; use 1 or more" % (size,))
    return str(int(text))


def count(size, population: int) -> int:
    """How many of `population` hosts a size asks for: a count (at most all of them),
    or a percentage rounded down, at least one host of a group that has any (the way
    Ansible counts a percentage in `serial`)."""
    text = size_text(size)
    if population <= 0:
        return 0
    if text.endswith("%"):
        share = fractions.Fraction(text[:-1]) * population / 100
        return max(1, int(share))
    return min(int(text), population)


def rank(seed: str, host: str) -> bytes:
    return hashlib.sha256(
        seed.encode("utf-8", "surrogatepass") + b"\0" + host.encode("utf-8", "surrogatepass")
    ).digest()


def draw(hosts, size, seed) -> list[str]:
    """The sample of `hosts` (names; duplicates count once), in the order of `hosts`."""
    if isinstance(hosts, (str, bytes, dict)) or not hasattr(hosts, "__iter__"):
        # By the plain type: ansible-core 2.19 hands a templated string over as its own subclass.
        kind = next((plain for plain in (str, bytes, dict) if isinstance(hosts, plain)), type(hosts))
        raise SampleError("the hosts to sample from must be a list of names, not %s" % kind.__name__)
    names: list[str] = []
    for host in hosts:
        if not isinstance(host, str):
            raise SampleError("host %r: a host name (a string) is expected" % (host,))
        name = str.__str__(host)
        if name not in names:
            names.append(name)
    text = seed_text(seed)
    wanted = count(size, len(names))
    chosen = set(sorted(names, key=lambda name: (rank(text, name), name))[:wanted])
    return [name for name in names if name in chosen]


def record(group: str, hosts, size, seed) -> dict:
    """The sample of `hosts`, the group `group` names, as a run's manifest keeps it
    (its `sample` field): drawn here, so that the record always matches its method."""
    chosen = draw(hosts, size, seed)
    if not isinstance(group, str) or not group:
        raise SampleError("group=%r: the host pattern the sample was drawn from is expected" % (group,))
    problem = control_character(group)
    if problem:
        raise SampleError("group=%r: %s" % (group, problem))
    return dict(
        method=METHOD,
        group=str.__str__(group),
        group_size=len(set(hosts)),
        size=size_text(size),
        seed=seed_text(seed),
        hosts=sorted(chosen),
    )
