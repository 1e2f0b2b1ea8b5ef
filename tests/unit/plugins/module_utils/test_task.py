"""What every state-changing task shares: opening tracefs, failing, the ownership
rule, and writing with rollback."""

from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _instance, _locate, _task
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger


@pytest.fixture
def host(fake_host, monkeypatch):
    real = _locate.Host
    monkeypatch.setattr(_locate, "Host", lambda: real(str(fake_host.root)))
    return fake_host


def test_open_tracefs_from_the_mount_table(host):
    with pytest.raises(_task.TracingUnavailable, match="tracefs is not mounted"):
        _task.open_tracefs(None)
    host.mount_tracefs()
    tracing = _task.open_tracefs(None)
    assert tracing.directory == str(host.tracing) and tracing.instance is None


def test_open_tracefs_mounted_but_unusable(host):
    host.mount_tracefs({"current_tracer": "nop\n"})  # no `trace` file
    host.write("sys/kernel/security/lockdown", "[none] integrity confidentiality\n")
    with pytest.raises(_task.TracingUnavailable, match="is not readable"):
        _task.open_tracefs(None)
    host.write("sys/kernel/security/lockdown", "none integrity [confidentiality]\n")
    with pytest.raises(_task.TracingUnavailable, match="kernel lockdown"):
        _task.open_tracefs(None)


def test_open_tracefs_given_path(host, tmp_path):
    with pytest.raises(_task.TracingUnavailable, match="holds no usable tracing files"):
        _task.open_tracefs(str(tmp_path))


def test_open_instance_checks_name_and_existence(host):
    host.mount_tracefs()
    with pytest.raises(_instance.InstanceError, match="not a valid instance name"):
        _instance.open_instance(str(host.tracing), "../x")
    with pytest.raises(_instance.InstanceError, match="instance='ghost' does not exist"):
        _instance.open_instance(str(host.tracing), "ghost")
    (host.tracing / "instances" / "tf").mkdir()
    assert _instance.open_instance(str(host.tracing), "tf").directory == str(host.tracing / "instances" / "tf")


def test_failure_carries_the_result_fields():
    assert _task.failure(_task.TaskError("no", owned=False, msg_detail=1)) == {
        "msg": "no",
        "owned": False,
        "msg_detail": 1,
    }
    assert _task.failure(TracefleetError("plain")) == {"msg": "plain"}


def test_ownership_rule():
    _task.require_owner(True, False, "unused")
    _task.require_owner(False, True, "unused")
    with pytest.raises(_task.TaskError, match="set force=true") as refused:
        _task.require_owner(False, False, "not ours; set force=true", owned=False)
    assert refused.value.result == {"owned": False}


def test_apply_with_rollback_puts_everything_back(host, tmp_path):
    host.mount_tracefs()
    tracing = host.tracing_dir()
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        ledger.record("s", kind="knob", instance=None, file="tracing_on", original="1")

        def apply(transaction):
            ledger.record("s", kind="knob", instance=None, file="current_tracer", original="nop")
            transaction.write("current_tracer", "function", "nop")
            transaction.write("no_such_file", "1", "0")

        with pytest.raises(_task.TaskError) as failed:
            _task.apply_with_rollback(
                tracing, ledger, False, apply, lambda exc, transaction: ("it failed: %s" % exc.errno, {"n": 1})
            )
        assert [entry["file"] for entry in ledger.entries] == ["tracing_on"]
    assert str(failed.value) == "it failed: 2; the changes this task had made were put back"
    assert failed.value.result == {"n": 1}
    assert (host.tracing / "current_tracer").read_text() == "nop\n"


def test_apply_with_rollback_names_what_it_could_not_put_back(host, tmp_path):
    host.mount_tracefs()
    tracing = host.tracing_dir()

    def apply(transaction):
        transaction.write("current_tracer", "function", "nop")
        (host.tracing / "current_tracer").unlink()
        raise ControlError("x", "y", 22, [])

    with Ledger(str(tmp_path / "ledger.json")) as ledger, pytest.raises(_task.TaskError) as failed:
        _task.apply_with_rollback(tracing, ledger, False, apply, lambda exc, transaction: ("failed", {}))
    assert "were put back, except: writing 'nop' to" in str(failed.value)


def test_apply_with_rollback_dry_run_writes_nothing(host, tmp_path):
    host.mount_tracefs()
    with Ledger(str(tmp_path / "ledger.json"), dry_run=True) as ledger:
        done = _task.apply_with_rollback(
            host.tracing_dir(),
            ledger,
            True,
            lambda transaction: transaction.write("current_tracer", "function", "nop"),
            lambda exc, transaction: ("", {}),
        )
    assert done.done == ["current_tracer <- function"]
    assert (host.tracing / "current_tracer").read_text() == "nop\n"


@pytest.mark.parametrize(
    "params, option",
    [
        ({"name": "demo\n"}, "name='demo\\n'"),
        ({"session": "s\x1b[2J"}, "session="),
        ({"events": [{"name": "sched", "filter": "a == 1\nb"}]}, "events[0].filter="),
        ({"options": {"sym-offset\n": True}}, "options['sym-offset\\n']="),
        ({"events": [{"name\n": "x"}]}, "events[0]['name\\n']="),
        ({"fetchargs": ["ok", "x=%di\x00"]}, "fetchargs[1]="),
        ({"ledger_path": "/tmp/x\n"}, "ledger_path="),
    ],
)
def test_control_characters_in_any_option_are_refused(params, option):
    with pytest.raises(_task.TaskError) as failure:
        _task.refuse_control_characters(dict(params, other="fine\twith a tab", number=3, none=None))
    assert str(failure.value).startswith(option) and str(failure.value).endswith("nothing was changed")


def test_a_ledger_that_cannot_be_written_rolls_the_task_back(tmp_path, fake_host, monkeypatch):
    fake_host.mount_tracefs({"error_log": "", "tracing_on": "1\n", "current_tracer": "nop\n"})
    tracing = fake_host.tracing_dir()
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _ledger

    with Ledger(str(tmp_path / "ledger.json")) as ledger:

        def apply(transaction):
            ledger.record("s", kind="knob", instance=None, file="tracing_on", original="1")
            transaction.write("tracing_on", "0", "1")
            monkeypatch.setattr(_ledger._atomicfile, "replace", fail)
            ledger.record("s", kind="knob", instance=None, file="current_tracer", original="nop")
            transaction.write("current_tracer", "function", "nop")

        def fail(*_args, **_kwargs):
            raise OSError(28, "No space left on device")

        with pytest.raises(_task.TaskError) as failure:
            _task.apply_with_rollback(tracing, ledger, False, apply, lambda exc, t: ("never", {}))
    assert "cannot write the ledger" in str(failure.value) and "No space left on device" in str(failure.value)
    assert (fake_host.tracing / "tracing_on").read_text() == "1\n"
    assert (fake_host.tracing / "current_tracer").read_text() == "nop\n"
