from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _events
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Transaction
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger

TRIGGER_HELP = "# Available triggers:\n# traceon traceoff snapshot stacktrace enable_event\n"
EVENTS = {
    "sched": ["sched_switch", "sched_wakeup", "sched_process_exec"],
    "syscalls": ["sys_enter_openat", "sys_exit_openat"],
}


@pytest.fixture
def tree(fake_host):
    fake_host.mount_tracefs({"error_log": ""})
    events = fake_host.tracing / "events"
    for name in ("enable", "header_page", "header_event"):
        events.mkdir(exist_ok=True)
        (events / name).write_text("")
    for system, names in EVENTS.items():
        for name in names:
            directory = events / system / name
            directory.mkdir(parents=True)
            (directory / "enable").write_text("0\n")
            (directory / "filter").write_text("none\n")
            (directory / "trigger").write_text(TRIGGER_HELP)
    return fake_host.tracing


@pytest.fixture
def catalog(fake_host, tree):
    return _events.EventCatalog(fake_host.tracing_dir())


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("sched/sched_switch", ["sched/sched_switch"]),
        ("sched:sched_switch", ["sched/sched_switch"]),
        ("sched", ["sched/sched_process_exec", "sched/sched_switch", "sched/sched_wakeup"]),
        ("sched/sched_w*", ["sched/sched_wakeup"]),
        ("*/sys_*_openat", ["syscalls/sys_enter_openat", "syscalls/sys_exit_openat"]),
        (
            "s*",
            [
                "sched/sched_process_exec",
                "sched/sched_switch",
                "sched/sched_wakeup",
                "syscalls/sys_enter_openat",
                "syscalls/sys_exit_openat",
            ],
        ),
    ],
)
def test_resolve(catalog, spec, expected):
    assert catalog.resolve(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nosuch/event", "no such system 'nosuch'"),
        ("sched/nosuch", "has no event 'nosuch'"),
        ("zz*", "matches no event system"),
        ("sched/zz*", "matches no event here"),
        ("../etc", "is not an event name"),
        ("sched/../../x", "is not an event name"),
        ("", "is not an event name"),
        ("header_page", "no such system"),
        ("a b", "is not an event name"),
        ("sched/sched_switch\n", "is not an event name"),
        ("sched\n", "is not an event name"),
        (" sched", "is not an event name"),
    ],
)
def test_resolve_rejects(catalog, spec, message):
    with pytest.raises(_events.EventError, match=message.replace("(", r"\(").replace("*", r"\*")):
        catalog.resolve(spec)


@pytest.mark.parametrize(
    "wanted, current, match",
    [
        ("traceoff", "traceoff:unlimited", True),
        ("traceoff if prev_pid == 1", "traceoff:unlimited if prev_pid == 1", True),
        ("traceoff:5", "traceoff:count=5", True),
        ("traceon:3 if prev_pid == 1", "traceon:count=3 if prev_pid == 1", True),
        ("traceoff:5", "traceoff:count=4", False),
        ("hist:keys=common_pid", "hist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048 [active]", True),
        (
            "hist:keys=common_pid:size=4096",
            "hist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048 [active]",
            False,
        ),
        ("hist:keys=prev_pid", "hist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048 [active]", False),
        ("snapshot", "traceoff:unlimited", False),
    ],
)
def test_trigger_matches(wanted, current, match):
    assert _events.trigger_matches(wanted, current) is match


def test_removal_rank_orders_dependents_first():
    triggers = [
        "hist:keys=pid",
        "hist:keys=pid:onmatch(sched.sched_wakeup).trace(lat,$x)",
        "enable_hist:sched:sched_switch",
    ]
    assert sorted(triggers, key=_events.removal_rank) == [
        "enable_hist:sched:sched_switch",
        "hist:keys=pid:onmatch(sched.sched_wakeup).trace(lat,$x)",
        "hist:keys=pid",
    ]


def test_plan_filters_first_then_triggers_then_enables(catalog):
    changes, wanted, before = _events.plan_events(
        catalog,
        [
            {"name": "sched", "state": "enabled"},
            {"name": "sched/sched_wakeup", "state": "disabled"},
            {"name": "sched/sched_switch", "filter": "prev_pid != 0", "triggers": ["traceoff"]},
        ],
        exclusive=False,
        enabled_now=[],
    )
    assert [(c.kind, c.event) for c in changes] == [
        ("filter", "sched/sched_switch"),
        ("trigger_add", "sched/sched_switch"),
        ("enable", "sched/sched_process_exec"),
        ("enable", "sched/sched_switch"),
    ]
    assert wanted["sched/sched_wakeup"]["state"] == "disabled"
    assert before["sched/sched_switch"] == {"enabled": False, "filter": None, "triggers": []}


def test_plan_nothing_when_state_matches(tree, catalog):
    (tree / "events/sched/sched_switch/enable").write_text("1\n")
    (tree / "events/sched/sched_switch/filter").write_text("prev_pid != 0\n")
    (tree / "events/sched/sched_switch/trigger").write_text(TRIGGER_HELP + "traceoff:unlimited\n")
    changes = _events.plan_events(
        catalog,
        [
            {"name": "sched/sched_switch", "filter": "prev_pid != 0", "triggers": ["traceoff"]},
        ],
        exclusive=False,
        enabled_now=["sched:sched_switch"],
    )[0]
    assert changes == []


def test_plan_trigger_removal_and_filter_clear(tree, catalog):
    (tree / "events/sched/sched_switch/filter").write_text("prev_pid != 0\n")
    (tree / "events/sched/sched_switch/trigger").write_text(
        TRIGGER_HELP + "traceoff:unlimited\nhist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048 [active]\n"
    )
    changes = _events.plan_events(
        catalog,
        [
            {"name": "sched/sched_switch", "state": "disabled", "filter": "", "triggers": []},
        ],
        exclusive=False,
        enabled_now=[],
    )[0]
    assert [(c.kind, c.value) for c in changes] == [
        ("filter", "0"),
        ("trigger_remove", "!traceoff"),
        ("trigger_remove", "!hist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048"),
    ]


@pytest.mark.parametrize(
    "printed, removal",
    [
        ("traceoff:unlimited", "traceoff"),
        ("traceon:count=3 if prev_pid == 1", "traceon"),
        ("snapshot:unlimited", "snapshot"),
        ("enable_event:sched:sched_wakeup:unlimited", "enable_event:sched:sched_wakeup"),
        ("disable_event:sched:sched_wakeup:count=2", "disable_event:sched:sched_wakeup"),
        (
            "hist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048 [active]",
            "hist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048",
        ),
        (
            "hist:keys=pid:vals=hitcount:sort=hitcount:size=2048 if pid > 1 [paused]",
            "hist:keys=pid:vals=hitcount:sort=hitcount:size=2048",
        ),
    ],
)
def test_removal_form(printed, removal):
    assert _events.removal_form(printed) == removal


def test_exclusive_disables_the_rest(tree, catalog):
    (tree / "events/syscalls/sys_enter_openat/enable").write_text("1\n")
    changes = _events.plan_events(
        catalog, [{"name": "sched/sched_switch"}], exclusive=True, enabled_now=["syscalls:sys_enter_openat"]
    )[0]
    assert [(c.kind, c.event, c.value) for c in changes] == [
        ("enable", "sched/sched_switch", "1"),
        ("enable", "syscalls/sys_enter_openat", "0"),
    ]


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"state": "enabled"}, "needs a name"),
        ({"name": "sched", "state": "on"}, "state='on'"),
        ({"name": "sched", "triggers": "traceoff"}, "triggers must be a list"),
    ],
)
def test_plan_bad_entries(catalog, entry, message):
    with pytest.raises(_events.EventError, match=message):
        _events.plan_events(catalog, [entry], exclusive=False, enabled_now=[])


def test_apply_records_original_state(tree, catalog, tmp_path):
    changes = _events.plan_events(catalog, [{"name": "sched/sched_switch", "filter": "prev_pid != 0"}], False, [])[0]
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        transaction = Transaction(catalog.tracing.control)
        _events.apply_events(changes, transaction, ledger, "s", None, record=True)
        kinds = sorted((e["kind"], e.get("original")) for e in ledger.entries)
    assert kinds == [("event", "0"), ("filter", "none")]
    assert (tree / "events/sched/sched_switch/enable").read_text() == "1\n"
    assert (tree / "events/sched/sched_switch/filter").read_text() == "prev_pid != 0\n"
    transaction.rollback()
    assert (tree / "events/sched/sched_switch/enable").read_text() == "0\n"
    assert (tree / "events/sched/sched_switch/filter").read_text() == "0\n"


def test_rejected_filter_text_reads_as_no_filter(tree, catalog):
    (tree / "events/sched/sched_switch/filter").write_text(
        "no_such_field == 1\n              ^\nparse_error: Field not found\n"
    )
    assert _events.read_state(catalog, "sched/sched_switch").filter is None


def test_exclusive_also_removes_the_triggers_of_the_events_it_disables(tree, catalog, tmp_path):
    # sched_process_exec was enabled with a stacktrace trigger, then disabled: the
    # kernel keeps it in set_event (enable reads 0*) and the trigger fires on every exec.
    exec_event = tree / "events/sched/sched_process_exec"
    (exec_event / "enable").write_text("0*\n")
    (exec_event / "trigger").write_text(TRIGGER_HELP + "stacktrace:unlimited\n")
    (exec_event / "filter").write_text("common_pid != 1\n")
    (tree / "events/sched/sched_wakeup/enable").write_text("1\n")
    (tree / "events/sched/sched_wakeup/trigger").write_text(TRIGGER_HELP + "traceoff:count=3\n")
    enabled_now = ["sched:sched_process_exec", "sched:sched_wakeup", "nosys:gone"]
    changes, wanted, _before = _events.plan_events(catalog, [{"name": "sched/sched_switch"}], True, enabled_now)
    assert [(c.kind, c.event, c.value) for c in changes] == [
        ("trigger_remove", "sched/sched_process_exec", "!stacktrace"),
        ("trigger_remove", "sched/sched_wakeup", "!traceoff"),
        ("enable", "sched/sched_switch", "1"),
        ("enable", "sched/sched_wakeup", "0"),
    ]
    assert wanted["sched/sched_process_exec"] == {"state": "disabled", "triggers": []}
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        _events.apply_events(changes, Transaction(catalog.tracing.control), ledger, "s", None, record=True)
        recorded = sorted((e["kind"], e["event"], e.get("value") or e.get("original")) for e in ledger.entries)
        assert recorded == [
            ("event", "sched/sched_switch", "0"),
            ("event", "sched/sched_wakeup", "1"),
            ("trigger_remove", "sched/sched_process_exec", "stacktrace"),
            ("trigger_remove", "sched/sched_wakeup", "traceoff:3"),
        ]
        assert (exec_event / "trigger").read_text().endswith("stacktrace:unlimited\n!stacktrace\n")
        assert (exec_event / "filter").read_text() == "common_pid != 1\n"  # filters stay
        # teardown puts the triggers back
        from ansible_collections.tracefleet.ftrace.plugins.module_utils import _teardown

        undone, _notes, failures = _teardown.teardown(catalog.tracing, ledger, "s", False, False)
        assert failures == [] and len(undone) == 4
    assert (exec_event / "trigger").read_text().endswith("!stacktrace\nstacktrace\n")
    assert (tree / "events/sched/sched_wakeup/trigger").read_text().endswith("!traceoff\ntraceoff:3\n")
    assert (tree / "events/sched/sched_wakeup/enable").read_text() == "1\n"


def test_a_whole_system_is_recorded_with_one_ledger_save(tree, catalog, tmp_path, monkeypatch):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _ledger

    saves = []
    real = _ledger._atomicfile.replace
    monkeypatch.setattr(_ledger._atomicfile, "replace", lambda *a, **k: saves.append(1) or real(*a, **k))
    changes = _events.plan_events(catalog, [{"name": "*", "filter": "common_pid != 1"}], False, [])[0]
    assert len(changes) == 10
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        _events.apply_events(changes, Transaction(catalog.tracing.control), ledger, "s", None, record=True)
        assert len(ledger.entries) == 10
    assert len(saves) == 1
