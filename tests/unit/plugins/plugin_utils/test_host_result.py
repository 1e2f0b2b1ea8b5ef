# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's one check of what hosts return: the schema types, strict and
lenient, and how a bad value is shown."""

from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _host_result as hr


@pytest.mark.parametrize(
    "spec, value, message",
    [
        (hr.Int(0, 10), 11, "x=11: out of range 0..10"),
        (hr.Int(0, 10), 1.0, "x=1.0: an integer is expected, not float"),
        (hr.Int(0, 10), False, "x=False: an integer is expected, not bool"),
        (hr.Float(0, 10), float("nan"), "x=nan: not a finite number"),
        (hr.Float(0, 10), 10**200, "x=an integer of 665 bits: out of range 0..10"),
        (hr.Float(0, 10), "1", "x='1': a number is expected, not str"),
        (hr.Bool(), "true", "x='true': true or false is expected, not str"),
        (hr.Str(max_len=3), "abcd", "x='abcd': longer than 3 characters"),
        (hr.Str(pattern="[a-z]+", describe="a word"), "ab\n", "x='ab\\n': not a word"),
        (hr.Str(choices=("a", "b")), "c", "x='c': not one of a, b"),
        (hr.Str(), "\ud800", "x='\\ud800': not valid Unicode (a lone surrogate)"),
        (hr.Str(printable=True), "s\n", "x='s\\n': it holds the non-printable character '\\n' at position 1"),
        (
            hr.Str(text=True, printable=True),
            "a\x1b[2J",
            "x='a\\x1b[2J': it holds the non-printable character '\\x1b' at position 1",
        ),
        (
            hr.Str(printable=True),
            "a\u2028b",
            "x='a\\u2028b': it holds the non-printable character '\\u2028' at position 1",
        ),
        (hr.Str(), None, "x=None: a value is required"),
        (hr.List(hr.Int(), max_items=2), [1, 2, 3], "x=[1, 2, 3]: more than 2 items"),
        (hr.Map(hr.Str(max_len=1), hr.Int()), {"ab": 1}, "x key='ab': longer than 1 characters"),
        (hr.Record({"a": hr.Int()}), {"b": 1}, "x.b=1: a key this result never has"),
        (hr.Record({"a": hr.Int()}, required=("a",)), {}, "x.a=None: missing"),
        (hr.Equal("trace.dat"), "../x", "x='../x': expected 'trace.dat'"),
    ],
)
def test_strict_check_names_the_field_and_the_value(spec, value, message):
    with pytest.raises(hr.HostResultError) as caught:
        hr.check(spec, value, "x")
    assert str(caught.value) == message


def test_values_come_back_as_plain_types():
    class Tagged(str):
        pass

    assert type(hr.check(hr.Str(), Tagged("x"))) is str  # pylint: disable=unidiomatic-typecheck
    assert hr.check(hr.Float(), 3) == 3.0
    assert type(hr.check(hr.Float(), 3)) is float  # pylint: disable=unidiomatic-typecheck
    assert hr.check(hr.Str(text=True), "a\udcffb") == "a\\udcffb"
    assert hr.check(hr.Record({"a": hr.Int()}, drop=("invocation",)), {"a": 1, "invocation": {}}) == {"a": 1}


def test_lenient_sanitize_leaves_out_what_is_bad():
    problems: list = []
    schema = hr.Record({"a": hr.Int(), "b": hr.List(hr.Int()), "c": hr.Map(hr.Str(), hr.Int())}, extra="ignore")
    out = hr.sanitize(schema, {"a": "x", "b": [1, "2", 3], "c": {"k": 1, "l": 1e300}, "z": 0}, "m", problems)
    assert out == {"b": [1, 3], "c": {"k": 1}}
    assert problems == [
        "m.a='x': an integer is expected, not str",
        "m.b[1]='2': an integer is expected, not str",
        "m.c['l']=1e+300: an integer is expected, not float",
    ]


@pytest.mark.parametrize(
    "value, shown",
    [
        ("x" * 100, "'%s'... (100 characters)" % ("x" * 60)),
        (list(range(100)), "a list of 100 item(s)"),
        ({"a": 1}, "{'a': 1}"),
        (object(), "a object"),
        (2**200, "an integer of 201 bits"),
    ],
)
def test_show_is_short(value, shown):
    assert hr.show(value) == shown


def test_equal_compares_by_the_plain_type_of_what_was_asked():
    class TaggedStr(str):  # what ansible-core makes of a templated option
        pass

    assert hr.check(hr.Equal(TaggedStr("tf-capture")), "tf-capture") == "tf-capture"
    for lie in ("tf-other", b"tf-capture", 1):
        with pytest.raises(hr.HostResultError, match="expected 'tf-capture'"):
            hr.check(hr.Equal(TaggedStr("tf-capture")), lie)
    with pytest.raises(hr.HostResultError, match="expected 1"):
        hr.check(hr.Equal(1), True)


def test_printable_allows_a_tab_and_text_without_control_characters():
    assert hr.check(hr.Str(printable=True), "incident 1234\tweb") == "incident 1234\tweb"
    # A lone surrogate of free text becomes a visible escape first: printable then.
    assert hr.check(hr.Str(text=True, printable=True), "a\udcffb") == "a\\udcffb"


@pytest.mark.parametrize(
    "capture, left_out",
    [
        ({"clock_anchor": {"wall_ns": -1}}, "m.hosts['web01'].captures[0].clock_anchor.wall_ns=-1: out of range"),
        ({"clock_anchor": {"trace_ns": "1"}}, "clock_anchor.trace_ns='1': an integer is expected, not str"),
        ({"clock_anchor": {"uncertainty_ns": 10**11}}, "clock_anchor.uncertainty_ns=100000000000: out of range"),
        ({"excluded_pids": [0, 42]}, "excluded_pids[0]=0: out of range 1..4194304"),
        ({"excluded_pids": ["../1"]}, "excluded_pids[0]='../1': an integer is expected, not str"),
        ({"file_version": 8}, "file_version=8: out of range 6..7"),
        ({"file_version": "7"}, "file_version='7': an integer is expected, not str"),
        ({"files": [{"path": "trace.dat", "bytes": -1}]}, "files[0].bytes=-1: out of range"),
        (
            {"files": [{"path": "trace.dat", "bytes": 1, "sha256": 5}]},
            "files[0].sha256=5: a string is expected, not int",
        ),
    ],
)
def test_a_manifest_read_back_leaves_out_lying_capture_fields(capture, left_out):
    """A manifest someone edited (or an older host's lie that got in): the run report and
    the Perfetto export read it through MANIFEST, which leaves the bad field out."""
    problems: list = []
    manifest = {"format": 1, "hosts": {"web01": {"captures": [dict({"name": "trace"}, **capture)]}}}
    out = hr.sanitize(hr.MANIFEST, manifest, "m", problems)
    assert len(problems) == 1 and left_out in problems[0], problems
    (kept,) = out["hosts"]["web01"]["captures"]
    assert kept["name"] == "trace"
