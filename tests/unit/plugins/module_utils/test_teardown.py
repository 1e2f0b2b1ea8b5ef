from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _mountpolicy, _teardown
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import KEY_FIELDS, Ledger
from ansible_collections.tracefleet.ftrace.plugins.module_utils._task import TaskError
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir


@pytest.fixture
def tree(fake_host):
    fake_host.mount_tracefs(
        {
            "current_tracer": "function\n",
            "set_ftrace_filter": "vfs_read\n",
            "set_event_pid": "5\n7\n",
            "error_log": "",
            "set_event": "",
            "dynamic_events": "p:tracefleet/open do_sys_openat2\n",
        }
    )
    root = fake_host.tracing
    event = root / "events" / "sched" / "sched_switch"
    event.mkdir(parents=True)
    (event / "enable").write_text("1\n")
    (event / "filter").write_text("prev_pid != 0\n")
    (event / "trigger").write_text("traceoff:unlimited\n")
    (root / "instances" / "mine").mkdir(parents=True)
    # (tracefs removes an instance with its files; a plain directory must be empty)
    return root


@pytest.fixture
def ledger(tmp_path):
    with Ledger(str(tmp_path / "ledger.json")) as opened:
        yield opened


def test_undo_newest_first_and_forget(tree, ledger):
    ledger.record("s", kind="instance", name="mine")
    ledger.record("s", kind="knob", instance=None, file="current_tracer", original="nop")
    ledger.record("s", kind="list_add", instance=None, file="set_ftrace_filter", value="vfs_read")
    ledger.record("s", kind="list_add", instance=None, file="set_event_pid", value="7")
    ledger.record("s", kind="event", instance=None, event="sched/sched_switch", original="0")
    ledger.record("s", kind="filter", instance=None, event="sched/sched_switch", original="none")
    ledger.record("s", kind="trigger_add", instance=None, event="sched/sched_switch", value="traceoff")
    ledger.record("s", kind="probe", group="tracefleet", event="open")
    ledger.record("other", kind="knob", instance=None, file="tracing_on", original="1")
    undone, notes, failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", False, False)
    assert failures == [] and notes == []
    assert undone[0] == "remove probe tracefleet/open"
    assert undone[-1] == "remove instance mine"
    assert (tree / "current_tracer").read_text() == "nop\n"
    assert (tree / "set_ftrace_filter").read_text() == "vfs_read\n!vfs_read\n"  # appended
    assert (tree / "set_event_pid").read_text() == "5\n"  # rewritten without ours
    assert (tree / "events/sched/sched_switch/enable").read_text() == "0\n"
    assert (tree / "events/sched/sched_switch/filter").read_text() == "0\n"
    assert (tree / "events/sched/sched_switch/trigger").read_text().endswith("!traceoff\n")
    assert (tree / "dynamic_events").read_text().endswith("-:tracefleet/open\n")
    assert not (tree / "instances" / "mine").exists()
    assert [e["session"] for e in ledger.entries] == ["other"]


def test_dry_run_lists_without_undoing(tree, ledger):
    ledger.record("s", kind="knob", instance=None, file="current_tracer", original="nop")
    undone, _notes, _failures = _teardown.teardown(TracingDir(str(tree)), ledger, None, False, True)
    assert undone == ["restore current_tracer of top level to 'nop'"]
    assert (tree / "current_tracer").read_text() == "function\n"


def test_gone_things_become_notes(tree, ledger):
    ledger.record("s", kind="instance", name="vanished")
    ledger.record("s", kind="knob", instance="vanished", file="tracing_on", original="1")
    ledger.record("s", kind="event", instance=None, event="nosys/noevent", original="0")
    undone, notes, failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", False, False)
    assert undone == [] and failures == []
    assert len(notes) == 3
    assert ledger.entries == []


def test_failures_keep_their_entry_for_a_rerun(tree, ledger):
    ledger.record("s", kind="knob", instance=None, file="no_such_knob", original="1")
    undone, _notes, failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", False, False)
    assert undone == [] and len(failures) == 1
    assert "no_such_knob" in failures[0]
    assert len(ledger.entries) == 1


def test_keep_mounts(tree, ledger):
    ledger.record("s", kind="mount", path="/sys/kernel/tracing", fstype="tracefs")
    undone, _notes, _failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", True, False)
    assert undone == [] and len(ledger.entries) == 1


def test_every_ledger_kind_has_an_owner_that_undoes_it():
    assert set(_teardown.KINDS) == set(KEY_FIELDS)


def test_describe_each_kind():
    assert _teardown.describe({"kind": "list_remove", "instance": "a", "file": "f", "value": "v"}) == (
        "put 'v' back into f of instance a"
    )
    assert _teardown.describe({"kind": "event", "instance": None, "event": "s/e", "original": "1"}) == (
        "enable event s/e in top level"
    )
    assert _teardown.describe({"kind": "trigger_remove", "instance": None, "event": "s/e", "value": "t"}) == (
        "put trigger 't' of s/e in top level back"
    )
    assert _teardown.describe({"kind": "mount", "path": "/p", "fstype": "tracefs"}) == "unmount /p (tracefs)"
    assert _teardown.describe({"kind": "capture", "instance": "a"}) == "end the capture window opened in instance a"
    assert _teardown.describe({"kind": "bogus"}) == "unknown entry {'kind': 'bogus'}"


def test_trigger_remove_and_list_remove_are_put_back(tree, ledger):
    ledger.record("s", kind="trigger_remove", instance=None, event="sched/sched_switch", value="traceon")
    ledger.record("s", kind="list_remove", instance=None, file="set_ftrace_filter", value="vfs_write")
    undone, notes, failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", False, False)
    assert len(undone) == 2 and notes == [] and failures == []
    assert (tree / "set_ftrace_filter").read_text().endswith("vfs_write\n")
    assert (tree / "events/sched/sched_switch/trigger").read_text().endswith("traceon\n")


def test_probe_already_gone_is_a_note(tree, ledger):
    ledger.record("s", kind="probe", group="tracefleet", event="gone")
    undone, notes, _failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", False, False)
    assert undone == [] and notes == ["probe tracefleet/gone was already gone"]


def test_without_tracefs_tracing_entries_fail_and_stay(ledger):
    ledger.record("s", kind="knob", instance=None, file="current_tracer", original="nop")
    ledger.record("s", kind="capture", instance=None)
    undone, _notes, failures = _teardown.teardown(None, ledger, "s", False, False)
    assert undone == ["end the capture window opened in top level"]
    assert len(failures) == 1 and "(tracefs)" in failures[0]
    assert [entry["kind"] for entry in ledger.entries] == ["knob"]


def test_unknown_kind_is_a_failure(tree, ledger):
    ledger.entries.append({"kind": "bogus", "session": "s"})
    _undone, _notes, failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", False, False)
    assert failures == ["unknown entry {'kind': 'bogus', 'session': 's'}: unknown ledger entry kind 'bogus'"]


def test_mount_undo(tree, ledger, monkeypatch):
    class Mount:
        mount_point, fstype = "/sys/kernel/tracing", "tracefs"

    unmounted = []
    monkeypatch.setattr(_mountpolicy, "read_mountinfo", lambda _path: [Mount()])
    monkeypatch.setattr(_mountpolicy._mount_syscalls, "umount", unmounted.append)
    ledger.record("s", kind="mount", path="/sys/kernel/tracing", fstype="tracefs")
    ledger.record("s", kind="mount", path="/elsewhere", fstype="tracefs")
    undone, notes, failures = _teardown.teardown(None, ledger, "s", False, False)
    assert undone == ["unmount /sys/kernel/tracing (tracefs)"] and failures == []
    assert notes == ["/elsewhere was no longer mounted"]
    assert unmounted == ["/sys/kernel/tracing"]


def test_run_needs_tracefs_only_for_tracing_entries(tmp_path, fake_host):
    params = {"ledger_path": str(tmp_path / "ledger.json"), "session": None, "all_sessions": True, "keep_mounts": True}
    params["tracefs_path"] = str(tmp_path / "nowhere")
    with Ledger(params["ledger_path"]) as ledger:
        ledger.record("s", kind="mount", path="/sys/kernel/tracing", fstype="tracefs")
    assert _teardown.run(params, False) == dict(changed=False, undone=[], notes=[], remaining=1, reboot_required=False)
    with Ledger(params["ledger_path"]) as ledger:
        ledger.record("s", kind="knob", instance=None, file="no_such_knob", original="1")
    with pytest.raises(TaskError, match="cannot undo the tracing changes: tracefs_path=") as failed:
        _teardown.run(params, False)
    assert failed.value.result == {"remaining": 2}
    fake_host.mount_tracefs()
    params["tracefs_path"] = str(fake_host.tracing)
    with pytest.raises(TaskError, match="could not undo 1 change") as failed:
        _teardown.run(params, False)
    assert failed.value.result["remaining"] == 2 and failed.value.result["changed"] is False


def test_a_probe_is_found_by_its_exact_name_not_a_prefix(tree, ledger):
    # tracefleet/open is gone; tracefleet/open_ret and other/open are not it.
    (tree / "dynamic_events").write_text("r10:tracefleet/open_ret do_sys_openat2 ret=$retval\np:other/open vfs_read\n")
    ledger.record("s", kind="probe", group="tracefleet", event="open")
    undone, notes, failures = _teardown.teardown(TracingDir(str(tree)), ledger, "s", False, False)
    assert undone == [] and failures == [] and notes == ["probe tracefleet/open was already gone"]
    assert (tree / "dynamic_events").read_text() == (
        "r10:tracefleet/open_ret do_sys_openat2 ret=$retval\np:other/open vfs_read\n"
    )
