# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils._clock_anchor import (
    FROM_DATE,
    FROM_NS,
    FROM_SECONDS,
    Anchor,
    choose,
    describe_uncertainty,
    from_manifest,
    placeable,
    seconds_to_ns,
)


@pytest.mark.parametrize(
    "clock_anchor,expected",
    [
        # The integers win over the floats, with their uncertainty.
        (
            {
                "wall_ns": 1_796_210_731_297_735_512,
                "trace_ns": 424_169_736_123,
                "uncertainty_ns": 950,
                "wall": 5.0,
                "trace": 1.0,
            },
            Anchor(1_796_210_731_297_735_512, 424_169_736_123, 950, FROM_NS),
        ),
        ({"wall_ns": 10**18, "trace_ns": -5}, Anchor(10**18, -5, None, FROM_NS)),
        ({"wall_ns": 10**18, "trace_ns": 7, "uncertainty_ns": -1}, Anchor(10**18, 7, None, FROM_NS)),
        # Floats in seconds, converted without the float product's rounding.
        (
            {"wall": 1796210731.25, "trace": 424.5},
            Anchor(1_796_210_731_250_000_000, 424_500_000_000, None, FROM_SECONDS),
        ),
        # Half an integer pair falls back to the floats; nothing usable gives None.
        (
            {"wall_ns": 10**18, "wall": 1796210731.25, "trace": 0},
            Anchor(1_796_210_731_250_000_000, 0, None, FROM_SECONDS),
        ),
        ({"wall_ns": True, "trace_ns": 1}, None),
        ({"wall": None, "trace": 424.5}, None),
        ({"wall": 0.0, "trace": 424.5}, None),
        ({"wall": float("nan"), "trace": 1.0}, None),
        ({}, None),
        (None, None),
        ("1.0", None),
    ],
)
def test_from_manifest(clock_anchor, expected):
    assert from_manifest(clock_anchor) == expected


def test_the_date_option_is_the_fallback():
    assert choose({}, "0x3e8", at_trace_ns=5) == Anchor(1_000_005, 5, None, FROM_DATE)
    assert choose({"wall": 2.0, "trace": 1.0}, "0x3e8").source == FROM_SECONDS
    assert choose({}, None) is None
    anchor = Anchor(2_000, 500, None, FROM_DATE)
    assert anchor.offset_ns == 1_500 and anchor.wall(600) == 2_100


@pytest.mark.parametrize(
    "uncertainty,text",
    [(850, "850 ns"), (8_400, "8.4 \u00b5s"), (2_500_000, "2.5 ms"), (None, "unknown (test)")],
)
def test_uncertainty_in_words(uncertainty, text):
    assert describe_uncertainty(Anchor(1, 0, uncertainty, "test")) == text
    assert describe_uncertainty(None) == "no clock anchor"


@pytest.mark.parametrize(
    "clock,ok", [("local", True), ("mono", True), ("boot", True), ("x86-tsc", False), ("counter", False), (None, False)]
)
def test_placeable(clock, ok):
    assert placeable(clock) is ok


@pytest.mark.parametrize(
    "seconds,ns", [(1796210731.25, 1_796_210_731_250_000_000), (0.000000001, 1), (-0.5, -500_000_000)]
)
def test_seconds_to_ns(seconds, ns):
    assert seconds_to_ns(seconds) == ns
