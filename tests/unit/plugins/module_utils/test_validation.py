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
        (" 0750 ", 0o750),  # spaces only are dropped
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
        # A full match, nothing stripped: `^...$` with re.match took "0750\n".
        ("0750\n", "mode='0750\\n' is not an octal mode"),
        ("\t0750", "is not an octal mode"),
        ("\n0750", "is not an octal mode"),
        ("0750\x00", "is not an octal mode"),
        ("\u0660\u0667\u0665\u0660", "is not an octal mode"),  # Arabic-Indic digits int() would take
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


@pytest.mark.parametrize(
    "value, expected", [(None, None), (0, 0), ("100", 100), (7, 7), (" 42 ", 42), ("4294967294", 4294967294)]
)
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
        (-1, False, "gid=-1 is out of range"),
        (-1, True, "gid=-1 is out of range"),
        ("4294967295", True, "gid=4294967295 is out of range"),  # (gid_t)-1: "no group"
        (2**40, False, "is out of range"),
        (True, False, "gid=True is not a numeric group id"),
        # A full match, nothing stripped: `^...$` with re.match took "42\n".
        ("42\n", False, "gid='42\\\\n' is not a numeric group id"),
        ("42\t", False, "is not a numeric group id"),
        ("42\n", True, "gid='42\\\\n' is neither a group name nor a number"),
        ("root\n", True, "gid='root\\\\n' is neither a group name nor a number"),
        ("ro ot", True, "is neither a group name nor a number"),
        ("root:x", True, "is neither a group name nor a number"),
        ("a\x00b", True, "is neither a group name nor a number"),
        ("\udcff", True, "no such group"),  # a lone surrogate: getgrnam raises UnicodeEncodeError
        ("\u00b2", False, "is not a numeric group id"),
    ],
)
def test_bad_gid(value, resolve, message):
    with pytest.raises(ValidationError, match=message):
        parse_gid(value, resolve_names=resolve)
