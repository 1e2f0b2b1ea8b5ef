"""Instances: names, creation and removal with their ledger entries."""

from __future__ import annotations

import errno
import re

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _instance
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import ControlError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger


@pytest.fixture
def ledger(tmp_path):
    with Ledger(str(tmp_path / "ledger.json")) as opened:
        yield opened


@pytest.mark.parametrize("name", ["a", "tracefleet", "A_1.x-y", "_x", "x" * 64])
def test_valid_names(name):
    assert _instance.validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "-x", "a/b", "x" * 65, "a b", "demo\n", "demo\nx", "\ndemo"]
)
def test_invalid_names(name):
    with pytest.raises(_instance.InstanceError, match=re.escape("name=%r is not a valid instance name" % name)):
        _instance.validate_name(name, "name")


def test_create_and_remove_keep_the_ledger(fake_host, ledger):
    fake_host.mount_tracefs()
    tracing = fake_host.tracing_dir("tf")
    _instance.create(tracing, ledger, "s")
    assert tracing.exists() and ledger.owns_instance("tf")
    ledger.record("s", kind="knob", instance="tf", file="tracing_on", original="1")
    (fake_host.tracing / "instances" / "tf" / "set_event").write_text("sched:sched_switch\n")
    written = []
    tracing.control.write = lambda relative, value, append=None: written.append((relative, value))
    (fake_host.tracing / "instances" / "tf" / "set_event").unlink()
    _instance.remove(tracing, ledger)
    assert written == []  # set_event was gone: nothing to disable
    assert not tracing.exists() and ledger.entries == []


def test_remove_disables_events_first(fake_host, ledger):
    fake_host.mount_tracefs()
    tracing = fake_host.tracing_dir("tf")
    calls = []
    tracing.control.write = lambda relative, value, append=None: calls.append(("write", relative, value))
    tracing.control.rmdir = lambda relative: calls.append(("rmdir", relative))
    (fake_host.tracing / "instances" / "tf").mkdir()
    (fake_host.tracing / "instances" / "tf" / "set_event").write_text("sched:sched_switch\nirq:irq_handler_entry\n")
    _instance.remove(tracing, ledger)
    assert calls == [
        ("write", "instances/tf/set_event", "!sched:sched_switch"),
        ("write", "instances/tf/set_event", "!irq:irq_handler_entry"),
        ("rmdir", "instances/tf"),
    ]


def test_busy_instance_is_explained(fake_host, ledger):
    fake_host.mount_tracefs()
    tracing = fake_host.tracing_dir("tf")

    def busy(relative):
        raise ControlError(relative, "rmdir", errno.EBUSY, [])

    tracing.control.rmdir = busy
    with pytest.raises(_instance.InstanceError, match="instance 'tf' is busy"):
        _instance.remove(tracing, ledger)

    def gone(relative):
        raise ControlError(relative, "rmdir", errno.ENOENT, [])

    tracing.control.rmdir = gone
    with pytest.raises(_instance.InstanceError, match="instance 'tf' could not be removed: .*Errno 2"):
        _instance.remove(tracing, ledger)


def test_a_busy_instance_gets_its_events_back(fake_host, ledger):
    fake_host.mount_tracefs()
    tracing = fake_host.tracing_dir("tf")
    (fake_host.tracing / "instances" / "tf").mkdir()
    (fake_host.tracing / "instances" / "tf" / "set_event").write_text("sched:sched_switch\nirq:irq_handler_entry\n")
    ledger.record("s", kind="instance", name="tf")
    calls = []
    tracing.control.write = lambda relative, value, append=None: calls.append(value)

    def busy(relative):
        raise ControlError(relative, "rmdir", errno.EBUSY, [])

    tracing.control.rmdir = busy
    with pytest.raises(_instance.InstanceError, match="is busy: .*; its events were enabled again"):
        _instance.remove(tracing, ledger)
    assert calls == ["!sched:sched_switch", "!irq:irq_handler_entry", "sched:sched_switch", "irq:irq_handler_entry"]
    assert ledger.owns_instance("tf")


def test_the_top_level_is_no_instance(fake_host, ledger):
    fake_host.mount_tracefs()
    with pytest.raises(_instance.InstanceError, match="not an instance"):
        _instance.remove(fake_host.tracing_dir(), ledger)


def test_enabled_events_skips_blank_lines(fake_host):
    fake_host.mount_tracefs({"set_event": "sched:sched_switch\n\n"})
    assert _instance.enabled_events(fake_host.tracing_dir()) == ["sched:sched_switch"]
