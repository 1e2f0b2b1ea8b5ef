"""trace_capture's options as the module judges them before touching the host
(`_capture_spec.problem`): every bad combination and value, one table."""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _capture_spec


def validated(**args) -> dict:
    """The module's parameters as AnsibleModule leaves them (types converted, defaults in)."""
    result = ArgumentSpecValidator(
        _capture_spec.MODULE_SPEC, mutually_exclusive=_capture_spec.MUTUALLY_EXCLUSIVE
    ).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


@pytest.mark.parametrize(
    "args, message",
    [
        ({"duration": "nan"}, r"^duration=nan: must be a finite number of seconds, more than 0$"),
        ({"duration": "inf"}, r"^duration=inf: must be a finite"),
        ({"duration": -1}, r"^duration=-1: must be a finite"),
        ({"duration": 0}, r"^duration=0: must be a finite"),
        ({"duration": 1e9}, r"^duration=1000000000: more than max_duration=3600 seconds; raise max_duration"),
        ({"duration": 7200, "max_duration": 3600}, r"^duration=7200: more than max_duration=3600"),
        ({"duration": 5, "max_duration": "nan"}, r"^max_duration=nan: must be a finite"),
        ({"duration": 5, "max_duration": 0}, r"^max_duration=0: must be a finite"),
        ({"command": "true", "timeout": 0}, r"^timeout=0: must be a finite"),
        ({"command": "true", "timeout": -5}, r"^timeout=-5: must be a finite"),
        ({"command": "true", "timeout": "inf"}, r"^timeout=inf: must be a finite"),
        ({"command": "true", "timeout": 7200}, r"^timeout=7200: more than max_duration=3600"),
        ({}, r"^state=captured needs duration \(seconds\) or command \(a workload\)"),
        ({"command": ""}, r"^command='': give a command line"),
        ({"command": "echo a\0b"}, r"^command='echo a\\x00b': give a command line .* without NUL"),
        ({"duration": 1, "max_bytes": 0}, r"^max_bytes=0: a capture needs a budget of at least 1048576 bytes"),
        ({"duration": 1, "max_bytes": "100K"}, r"^max_bytes=102400: a capture needs a budget"),
        ({"duration": 1, "name": "trace\n"}, r"^name='trace\\n': use letters"),
        ({"duration": 1, "name": ".hidden"}, r"^name='.hidden': use letters"),
        ({"duration": 1, "name": "../x"}, r"^name='../x': use letters"),
        ({"state": "collected", "duration": 1}, r"^duration is for state=captured or started"),
        ({"state": "collected", "command": ""}, r"^command is for state=captured; with state=collected"),
        ({"state": "started", "command": "true"}, r"^command is for state=captured; with state=started"),
        ({"state": "captured", "duration": 1, "start_at": 1}, r"^start_at is for state=started"),
        ({"state": "started", "start_at": True}, r"^start_at=True: give a time of day"),
        ({"state": "started", "start_at": "2026-12-06 03:15"}, r"^start_at='2026-12-06 03:15': give"),
        ({"state": "started", "start_at": "nan"}, r"^start_at='nan': give"),
        (
            {"state": "started", "start_at": 4102444800, "max_duration": 60},
            r"^start_at=4102444800 is \d+ seconds ahead",
        ),
    ],
)
def test_bad_options_are_refused(args, message):
    problem = _capture_spec.problem(validated(**args))
    assert problem is not None
    assert __import__("re").search(message, problem), problem


@pytest.mark.parametrize(
    "args",
    [
        {"duration": 5},
        {"duration": 3600},
        {"duration": 7200, "max_duration": 7200},
        {"command": "sleep 1", "timeout": 60},
        {"command": "true"},  # the default timeout (600) is within the default max_duration
        {"duration": 1, "max_bytes": "1G"},
        {"state": "started"},
        {"state": "collected", "timeout": 9999},  # timeout only counts with a command
    ],
)
def test_good_options_pass(args):
    assert _capture_spec.problem(validated(**args)) is None


def test_max_bytes_takes_sizes():
    assert validated(duration=1)["max_bytes"] == 512 << 20
    assert validated(duration=1, max_bytes="2G")["max_bytes"] == 2 << 30


@pytest.mark.parametrize(
    "args, given, message",
    [
        # What the task set itself (the action passes its task's arguments): a default is no choice.
        ({"duration": 1, "format": "text", "file_version": 6}, {"format", "file_version"}, r"^file_version=6 is for"),
        ({"duration": 1, "format": "text", "file_version": 7}, {"file_version"}, r"^file_version=7 is for format=dat"),
        ({"duration": 1, "format": "text"}, {"format"}, None),
        ({"duration": 1, "file_version": 6}, {"file_version"}, None),
        ({"duration": 1, "session": "s\n"}, (), r"^session='s\\n': it holds the non-printable character '\\n' at"),
        ({"state": "started", "session": "s\x1b[2J"}, (), r"^session='s\\x1b\[2J': it holds the non-printable"),
        ({"state": "started", "session": "s\tt"}, (), None),  # a tab is printable enough
    ],
)
def test_options_the_task_set(args, given, message):
    problem = _capture_spec.problem(validated(**args), given=given)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and __import__("re").search(message, problem), problem
