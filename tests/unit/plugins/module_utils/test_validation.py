"""The shared validators for octal modes and group ids (tracefs module and audit)."""

from __future__ import annotations

import grp
import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._validation import (
    ValidationError,
    parse_gid,
    parse_octal_mode,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("0750", 0o750),
        ("750", 0o750),
        (" 0750 ", 0o750),
        ("4755", 0o4755),
        ("07777", 0o7777),
        (0o640, 0o640),
        (0, 0),
        (0o7777, 0o7777),
    ],
)
def test_octal_mode(value, expected):
    assert parse_octal_mode(value) == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("abc", "mode='abc' is not an octal mode like '0750'"),
        ("0799", "mode='0799' is not an octal mode"),
        ("17777", "mode='17777' is not an octal mode"),
        ("75", "mode='75' is not an octal mode"),
        ("", "mode='' is not an octal mode"),
        (True, "mode=True is not an octal mode"),
        (70000, "mode=70000 is out of range (0 to 07777)"),
        (-1, "mode=-1 is out of range"),
    ],
)
def test_bad_octal_mode(value, message):
    with pytest.raises(ValidationError) as error:
        parse_octal_mode(value)
    assert message in str(error.value)
    assert isinstance(error.value, TracefleetError)


def test_option_name_in_message():
    with pytest.raises(ValidationError, match="^tracefs_mode='x'"):
        parse_octal_mode("x", "tracefs_mode")


@pytest.mark.parametrize("value, expected", [(None, None), (0, 0), ("100", 100), (" 42 ", 42), (7, 7)])
def test_gid(value, expected):
    assert parse_gid(value) == expected
    assert parse_gid(value, resolve_names=False) == expected


def test_gid_by_name():
    group = grp.getgrgid(os.getgid())
    assert parse_gid(group.gr_name) == group.gr_gid


@pytest.mark.parametrize(
    "value, resolve, message",
    [
        ("no-such-group-tf", True, "gid='no-such-group-tf': no such group on this host"),
        ("", True, "gid='' is neither a group name nor a number"),
        (True, True, "gid=True is neither a group name nor a number"),
        ("\u00b2", True, "no such group"),  # a digit for str.isdigit(), not for int()
        ("tracing", False, "gid='tracing' is not a numeric group id"),
        (-1, False, "gid=-1 is not a numeric group id"),
        (True, False, "gid=True is not a numeric group id"),
    ],
)
def test_bad_gid(value, resolve, message):
    with pytest.raises(ValidationError, match=message):
        parse_gid(value, resolve_names=resolve)
