# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a capture's trace clock sits on its host's wall clock: the one reading of a
clock anchor, shared by the run report and the Perfetto export.

A capture records, when its window opens, the host's CLOCK_REALTIME and its trace
clock read together (`clock_anchor` in the run's manifest, checked by _host_result
first). In order of preference:

1. `wall_ns` and `trace_ns`, integers, with `uncertainty_ns`: the tightest bracket
   of a CLOCK_REALTIME read, a trace_marker write, a CLOCK_REALTIME read, so the
   relation is known to within that many nanoseconds;
2. `wall` and `trace`, floats in seconds (older manifests): the same relation,
   rounded to what a double holds (about a quarter of a microsecond for today's
   epoch), its uncertainty unknown;
3. the trace.dat's own DATE option (`trace-cmd record --date`): wall-clock minus
   trace time in microseconds, its uncertainty unknown.

Only trace clocks counting nanoseconds (NS_CLOCKS) can be placed this way.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._tracedat_reader import NS_CLOCKS, parse_date

NS_PER_S = 1_000_000_000

FROM_NS = "the capture's clock anchor"
FROM_SECONDS = "the capture's clock anchor (in seconds)"
FROM_DATE = "the trace.dat's DATE option"


class Anchor(NamedTuple):
    """At one instant the host's wall clock read `wall_ns` and its trace clock `trace_ns`."""

    wall_ns: int
    trace_ns: int
    uncertainty_ns: int | None
    source: str

    @property
    def offset_ns(self) -> int:
        """Wall-clock nanoseconds minus trace-clock nanoseconds."""
        return self.wall_ns - self.trace_ns

    def wall(self, trace_ns: int) -> int:
        """The wall-clock time (epoch ns) of a trace-clock timestamp."""
        return trace_ns + self.offset_ns


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def from_manifest(clock_anchor) -> Anchor | None:
    """The anchor a manifest capture's (checked) `clock_anchor` gives, or None."""
    if not isinstance(clock_anchor, dict):
        return None
    wall_ns, trace_ns = _int(clock_anchor.get("wall_ns")), _int(clock_anchor.get("trace_ns"))
    if wall_ns is not None and trace_ns is not None and wall_ns > 0:
        uncertainty = _int(clock_anchor.get("uncertainty_ns"))
        return Anchor(wall_ns, trace_ns, uncertainty if uncertainty is not None and uncertainty >= 0 else None, FROM_NS)
    wall, trace = _seconds(clock_anchor.get("wall")), _seconds(clock_anchor.get("trace"))
    if wall is None or trace is None or wall <= 0:
        return None
    return Anchor(seconds_to_ns(wall), seconds_to_ns(trace), None, FROM_SECONDS)


def from_date_option(date: str | None, at_trace_ns: int) -> Anchor | None:
    """The anchor a trace.dat's DATE option gives, placed at `at_trace_ns`."""
    offset = parse_date(date)
    if offset is None:
        return None
    return Anchor(at_trace_ns + offset, at_trace_ns, None, FROM_DATE)


def choose(clock_anchor, date: str | None = None, at_trace_ns: int = 0) -> Anchor | None:
    """The best anchor there is for a capture: the manifest's, else the DATE option's."""
    return from_manifest(clock_anchor) or from_date_option(date, at_trace_ns)


def placeable(trace_clock: str | None) -> bool:
    """Whether timestamps of this trace clock are nanoseconds, which an anchor places."""
    return isinstance(trace_clock, str) and trace_clock in NS_CLOCKS


def describe_uncertainty(anchor: Anchor | None) -> str:
    """`12.5 µs`, `850 ns`, `1.2 ms`, or why there is no number."""
    if anchor is None:
        return "no clock anchor"
    if anchor.uncertainty_ns is None:
        return "unknown (%s)" % anchor.source
    if anchor.uncertainty_ns >= 1_000_000:
        return "%.1f ms" % (anchor.uncertainty_ns / 1e6)
    if anchor.uncertainty_ns >= 1_000:
        return "%.1f \u00b5s" % (anchor.uncertainty_ns / 1e3)
    return "%d ns" % anchor.uncertainty_ns


def seconds_to_ns(seconds: float) -> int:
    """Epoch (or trace-clock) seconds as integer nanoseconds, without the rounding
    error of multiplying a large float by 1e9: the whole seconds and the fraction
    (which a double subtracts exactly) are converted apart."""
    whole = math.floor(seconds)
    return int(whole) * NS_PER_S + int(round((seconds - whole) * NS_PER_S))
