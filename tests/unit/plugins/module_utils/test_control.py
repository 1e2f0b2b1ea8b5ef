from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import (
    Control,
    ControlError,
    Transaction,
    UnsafeValue,
)


@pytest.fixture
def tree(fake_host):
    fake_host.mount_tracefs({"error_log": "", "set_ftrace_filter": "a\n", "tracing_on": "1\n"})
    return fake_host.tracing


def test_knob_write_truncates(tree):
    Control(str(tree)).write("tracing_on", "0")
    assert (tree / "tracing_on").read_text() == "0\n"


def test_shared_list_write_appends(tree):
    Control(str(tree)).write("set_ftrace_filter", "b")
    assert (tree / "set_ftrace_filter").read_text() == "a\nb\n"


def test_trigger_files_are_appended(tree):
    # O_TRUNC on a trigger file unregisters the event's hist triggers.
    (tree / "trigger").write_text("hist:keys=pid\n")
    Control(str(tree)).write("trigger", "traceoff")
    assert (tree / "trigger").read_text() == "hist:keys=pid\ntraceoff\n"


def test_truncating_a_shared_list_is_refused(tree):
    with pytest.raises(ValueError, match="refusing a truncating write"):
        Control(str(tree)).write("set_ftrace_filter", "b", append=False)
    assert (tree / "set_ftrace_filter").read_text() == "a\n"


def test_missing_file_is_a_control_error(tree):
    with pytest.raises(ControlError) as failure:
        Control(str(tree)).write("nope", "1")
    assert failure.value.errno == errno.ENOENT
    assert "writing '1' to %s failed: [Errno 2]" % (tree / "nope") in str(failure.value)


@pytest.mark.parametrize(
    "before, after, new",
    [
        ([], ["e1", "  ^"], ["e1", "  ^"]),
        (["e1", "  ^"], ["e1", "  ^", "e2", "    ^"], ["e2", "    ^"]),
        # the log keeps a window of the last errors: older lines scroll out
        (["e1", "c1", "e2", "c2"], ["e2", "c2", "e3", "c3"], ["e3", "c3"]),
        (["e1"], ["e1"], []),
    ],
)
def test_new_error_log_lines(before, after, new):
    assert Control._new_lines({"error_log": before}, {"error_log": after}) == new


def test_error_log_lines_attached_to_failures(tree, monkeypatch):
    control = Control(str(tree))
    real_write = os.write

    def failing_write(fd, data):
        if data.startswith(b"bad"):
            (tree / "error_log").write_text(
                "[ 1.0] trace_kprobe: error: Invalid probed address or symbol\n  Command: bad\n              ^\n"
            )
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(ControlError) as failure:
        control.write("tracing_on", "bad")
    assert failure.value.error_log[0].endswith("Invalid probed address or symbol")
    assert "the kernel's error_log says" in str(failure.value)
    assert "  Command: bad" in str(failure.value)


def test_instance_writes_read_the_instance_error_log(tree):
    (tree / "instances" / "x").mkdir()
    (tree / "instances" / "x" / "error_log").write_text("")
    control = Control(str(tree))
    assert control._error_logs("instances/x/events/a/b/filter") == ["error_log", "instances/x/error_log"]
    assert control._error_logs("tracing_on") == ["error_log"]


def test_pid_list_replace_only_for_pid_files(tree):
    (tree / "set_event_pid").write_text("1\n2\n")
    control = Control(str(tree))
    control.replace_list("set_event_pid", "2")
    assert (tree / "set_event_pid").read_text() == "2\n"
    with pytest.raises(ValueError):
        control.replace_list("set_ftrace_filter", "x")


def test_transaction_rollback_newest_first(tree):
    control = Control(str(tree))
    transaction = Transaction(control)
    transaction.write("tracing_on", "0", undo_value="1")
    transaction.write("set_ftrace_filter", "b", undo_value="!b")
    assert transaction.rollback() == []
    assert (tree / "tracing_on").read_text() == "1\n"
    assert (tree / "set_ftrace_filter").read_text() == "a\nb\n!b\n"  # the kernel would drop b


def test_dry_run_writes_nothing(tree):
    transaction = Transaction(Control(str(tree)), dry_run=True)
    transaction.write("tracing_on", "0", undo_value="1")
    assert (tree / "tracing_on").read_text() == "1\n"
    assert transaction.done == ["tracing_on <- 0"] and transaction.undo == []


@pytest.mark.parametrize(
    "value",
    ["0\n1", "a\nb\n", "\n\n", "x\x00", "x\r", "\x1b[31m", "a\u2028b", "a\x85b", "x\x7f", "p:g/e sym\n-:other/x"],
)
def test_a_value_is_one_command(tree, value):
    for name in ("tracing_on", "set_ftrace_filter"):
        before = (tree / name).read_text()
        with pytest.raises(UnsafeValue, match="refusing to write .* more than one command") as failure:
            Control(str(tree)).write(name, value)
        assert failure.value.errno == errno.EINVAL and isinstance(failure.value, ControlError)
        assert (tree / name).read_text() == before


def test_one_trailing_newline_and_tabs_are_fine(tree):
    Control(str(tree)).write("tracing_on", "0\n")
    Control(str(tree)).write("set_ftrace_filter", "b\tc")
    assert (tree / "tracing_on").read_text() == "0\n"
    assert (tree / "set_ftrace_filter").read_text() == "a\nb\tc\n"


def test_pid_list_replacement_is_one_command_too(tree):
    (tree / "set_event_pid").write_text("1\n")
    with pytest.raises(UnsafeValue):
        Control(str(tree)).replace_list("set_event_pid", "2\n3")
    assert (tree / "set_event_pid").read_text() == "1\n"


def test_a_failing_close_does_not_hide_the_write_error(tree, monkeypatch):
    def failing_write(fd, data):
        raise OSError(errno.EINVAL, "Invalid argument")

    def failing_close(fd):
        real_close(fd)
        raise OSError(errno.EIO, "close")

    real_close = os.close
    monkeypatch.setattr(os, "write", failing_write)
    monkeypatch.setattr(os, "close", failing_close)
    with pytest.raises(ControlError) as failure:
        Control(str(tree)).write("tracing_on", "0")
    assert failure.value.errno == errno.EINVAL
