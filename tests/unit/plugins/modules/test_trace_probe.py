from __future__ import annotations

import errno
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _probes, _teardown
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import (
    Control,
    ControlError,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir
from ansible_collections.tracefleet.ftrace.plugins.modules import trace_probe


class FakeKernel(Control):
    """A tracefs tree whose dynamic_events behaves like the kernel's: definitions
    are added and removed, and a definition containing 'REJECT' (or any of `refuse`)
    is refused."""

    refuse = ("REJECT",)

    def write(self, relative, value, append=None):
        if relative != "dynamic_events":
            return super().write(relative, value, append)
        path = self.path(relative)
        lines = [line for line in open(path).read().splitlines() if line]
        if value.startswith("-:"):
            lines = [line for line in lines if not line.split()[0].endswith(":" + value[2:])]
        elif any(word in value for word in self.refuse):
            raise ControlError(path, value, errno.EINVAL, ["  Command: " + value, "  ^"])
        else:
            lines.append(value.replace("r:", "r10:", 1))
        with open(path, "w") as handle:
            handle.write("".join(line + "\n" for line in lines))
        return None


@pytest.fixture
def tree(fake_host, monkeypatch):
    files = dict.fromkeys(("dynamic_events", "error_log", "trace"), "")
    fake_host.mount_tracefs(dict(files, available_filter_functions="do_sys_openat2\nvfs_read\n"))
    root = fake_host.tracing
    kernel = FakeKernel(str(root))
    monkeypatch.setattr(_probes, "open_tracefs", lambda path: TracingDir(str(root), control=kernel))
    return root


@pytest.fixture
def run(capsys, tmp_path):
    def run_module(args) -> dict:
        args = dict({"ledger_path": str(tmp_path / "ledger.json"), "name": "open"}, **args)
        with patch_module_args(args), pytest.raises(SystemExit):
            trace_probe.main()
        return json.loads(capsys.readouterr().out)

    return run_module


def enable(tree, instance, value="1"):
    base = tree / "instances" / instance if instance else tree
    event = base / "events" / "tracefleet" / "open"
    event.mkdir(parents=True, exist_ok=True)
    (event / "enable").write_text(value + "\n")
    return event / "enable"


def test_create_is_idempotent_on_the_normalised_read_back(run, tree):
    first = run({"type": "kretprobe", "target": "do_sys_openat2", "fetchargs": ["ret=$retval"]})
    assert first["changed"] and first["definition"] == "r10:tracefleet/open do_sys_openat2 ret=$retval"
    again = run({"type": "kretprobe", "target": "do_sys_openat2", "fetchargs": ["ret=$retval"]})
    assert not again["changed"] and again["owned"]


def test_check_mode_writes_nothing(run, tree):
    result = run({"target": "do_sys_openat2", "_ansible_check_mode": True})
    assert result["changed"] and result["written"] == "p:tracefleet/open do_sys_openat2"
    assert (tree / "dynamic_events").read_text() == ""


def test_replacement_keeps_enabled_state(run, tree):
    run({"target": "do_sys_openat2"})
    enable_file = enable(tree, "tf")
    result = run({"target": "vfs_read"})
    assert result["changed"] and result["definition"] == "p:tracefleet/open vfs_read"
    assert enable_file.read_text() == "1\n"


def test_rejected_replacement_puts_the_old_probe_back(run, tree):
    run({"target": "do_sys_openat2"})
    enable_file = enable(tree, "tf")
    result = run({"target": "do_sys_openat2", "fetchargs": ["x=REJECT"]})
    assert result["failed"] and "keeps the previous definition" in result["msg"]
    assert (tree / "dynamic_events").read_text() == "p:tracefleet/open do_sys_openat2\n"
    assert enable_file.read_text() == "1\n"


def ledger_entries(tmp_path):
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        return [(entry["kind"], entry.get("group"), entry.get("event")) for entry in ledger.entries]


def test_rejected_replacement_of_our_probe_keeps_our_claim(run, tree, tmp_path):
    run({"target": "do_sys_openat2"})
    result = run({"target": "vfs_read", "fetchargs": ["x=REJECT"]})
    assert result["failed"] and "dynamic_events keeps the previous definition" in result["msg"]
    assert ledger_entries(tmp_path) == [("probe", "tracefleet", "open")]


def test_rejected_forced_replacement_of_a_foreign_probe_leaves_it_theirs(run, tree, tmp_path):
    (tree / "dynamic_events").write_text("p:tracefleet/open vfs_read\n")
    enable_file = enable(tree, "admin")
    result = run({"target": "do_sys_openat2", "fetchargs": ["x=REJECT"], "force": True})
    assert result["failed"]
    assert "dynamic_events keeps the previous definition, enabled again in admin" in result["msg"]
    assert (tree / "dynamic_events").read_text() == "p:tracefleet/open vfs_read\n"
    assert enable_file.read_text() == "1\n"
    assert ledger_entries(tmp_path) == []
    # so a later teardown of every session leaves the admin's probe alone
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        assert _teardown.teardown(TracingDir(str(tree)), ledger, None, False, False) == ([], [], [])
    assert (tree / "dynamic_events").read_text() == "p:tracefleet/open vfs_read\n"


@pytest.mark.parametrize("owned", [False, True])
def test_when_the_old_definition_cannot_be_put_back_the_message_and_ledger_say_so(
    run, tree, tmp_path, monkeypatch, owned
):
    if owned:
        run({"target": "vfs_read"})
    else:
        (tree / "dynamic_events").write_text("p:tracefleet/open vfs_read\n")
    monkeypatch.setattr(FakeKernel, "refuse", ("REJECT", "vfs_read"))
    result = run({"target": "do_sys_openat2", "fetchargs": ["x=REJECT"], "force": True})
    assert result["failed"]
    assert "keeps the previous definition" not in result["msg"]
    assert "the previous definition (p:tracefleet/open vfs_read) could not be put back" in result["msg"]
    assert "tracefleet/open is not defined now" in result["msg"]
    assert (tree / "dynamic_events").read_text() == ""
    assert ledger_entries(tmp_path) == []


def test_rejected_new_probe_leaves_no_ledger_entry(run, tree, tmp_path):
    result = run({"target": "do_sys_openat2", "fetchargs": ["x=REJECT"]})
    assert result["failed"] and "was not changed" in result["msg"]
    assert result["error_log"] == ["  Command: p:tracefleet/open do_sys_openat2 x=REJECT", "  ^"]
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        assert ledger.entries == []


def test_removal_needs_force_when_enabled_and_names_where(run, tree):
    run({"target": "do_sys_openat2"})
    enable(tree, None)
    enable(tree, "tf")
    refused = run({"state": "absent"})
    assert refused["failed"] and "enabled in top, tf" in refused["msg"]
    removed = run({"state": "absent", "force": True})
    assert removed["changed"] and removed["definition"] is None
    assert (tree / "dynamic_events").read_text() == ""


def test_others_probes_need_force(run, tree):
    (tree / "dynamic_events").write_text("p:tracefleet/open vfs_read\n")
    replaced = run({"target": "do_sys_openat2"})
    assert replaced["failed"] and "tracefleet did not create it" in replaced["msg"]
    removed = run({"state": "absent"})
    assert removed["failed"] and "not created by tracefleet" in removed["msg"]
    assert run({"state": "absent", "force": True})["changed"]


def test_same_definition_of_someone_else_is_left_alone(run, tree):
    (tree / "dynamic_events").write_text("p:tracefleet/open do_sys_openat2\n")
    result = run({"target": "do_sys_openat2"})
    assert not result["changed"] and result["owned"] is False


def test_bad_definition_message(run, tree):
    result = run({"target": "no_such_symbol"})
    assert result["failed"]
    assert "kernel symbol 'no_such_symbol' does not exist" in result["msg"]
    assert result["msg"].endswith("dynamic_events was not changed")


def test_parse_line_roundtrip():
    line = "p:tracefleet/open do_sys_openat2 filename=+0($arg2):string"
    assert _probes.parse_line(line).line() == line


def test_a_newline_in_any_option_changes_nothing(run, tree, tmp_path):
    for args in (
        {"name": "open\n", "target": "do_sys_openat2"},
        {"group": "g\n", "target": "do_sys_openat2"},
        {"target": "do_sys_openat2\n-:other/x"},
        {"target": "do_sys_openat2", "fetchargs": ["x=%di\n-:other/x"]},
        {"target": "do_sys_openat2", "session": "s\n"},
    ):
        result = run(args)
        assert result["failed"] and "nothing was changed" in result["msg"], args
        assert "\\n" in result["msg"]
    assert (tree / "dynamic_events").read_text() == ""
    assert not (tmp_path / "ledger.json").exists()
