from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _knob_changes, _knob_state
from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Transaction
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

FILES = {
    "available_tracers": "function_graph function nop\n",
    "current_tracer": "nop\n",
    "tracing_on": "1\n",
    "buffer_size_kb": "7 (expanded: 1408)\n",
    "trace_clock": "[local] global mono\n",
    "tracing_cpumask": "3\n",
    "set_ftrace_filter": "#### all functions enabled ####\n",
    "set_ftrace_notrace": "",
    "set_graph_function": "#### all functions enabled ####\n",
    "set_event_pid": "",
    "set_ftrace_pid": "no pid\n",
    "available_filter_functions": "do_sys_openat2\nvfs_read\nvfs_write\nnfs_open [nfs]\n",
    "options/overwrite": "1\n",
    "options/sym-offset": "0\n",
    "error_log": "",
}


@pytest.fixture
def tree(fake_host):
    fake_host.mount_tracefs(FILES)
    for cpu in (0, 1):
        (fake_host.tracing / "per_cpu" / ("cpu%d" % cpu)).mkdir(parents=True)
    return fake_host.tracing


@pytest.fixture
def tracing(fake_host, tree):
    return fake_host.tracing_dir()


def plan(tree, **params):
    return _knob_changes.plan_knobs(TracingDir(str(tree)), params)


def test_nothing_asked_nothing_planned(tree):
    assert plan(tree) == []


def test_idempotent_reads(tree):
    assert (
        plan(
            tree,
            tracer="nop",
            tracing_on=True,
            buffer_size_kb=1408,
            trace_clock="local",
            options={"overwrite": True},
            cpumask="3",
        )
        == []
    )


@pytest.mark.parametrize(
    "reading, wanted",
    [
        ("1410\n", 1408),
        ("1408\n", 1408),
        ("7 (expanded: 1408)\n", 1408),
        ("2051\n", 2048),
        ("2048\n", 2048),
        ("513\n", 512),
        ("4099\n", 4096),
    ],
)
def test_buffer_rounding_is_the_same_size(tree, reading, wanted):
    (tree / "buffer_size_kb").write_text(reading)
    assert plan(tree, buffer_size_kb=wanted) == []


def test_order_tracer_before_options_and_tracing_on_last(tree):
    changes = plan(
        tree,
        tracing_on=False,
        options={"sym-offset": True},
        tracer="function",
        buffer_size_kb=4096,
        trace_clock="mono",
        function_filter=["vfs_read"],
    )
    assert [c.knob for c in changes] == [
        "buffer_size_kb",
        "trace_clock",
        "function_filter",
        "tracer",
        "options/sym-offset",
        "tracing_on",
    ]
    assert changes[0].original == "1408"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"tracer": "blk"}, "tracer='blk': not in available_tracers"),
        ({"trace_clock": "bogus"}, "trace_clock='bogus': this kernel offers local, global, mono"),
        ({"buffer_size_kb": 0}, "buffer_size_kb=0: must be a positive"),
        ({"buffer_size_kb": -5}, "buffer_size_kb=-5"),
        ({"buffer_size_kb": 10**12}, "more than a quarter"),
        ({"options": {"nosuch": True}}, "'nosuch' is not a trace option here"),
        ({"options": {"../x": True}}, "not a trace option name"),
        ({"cpumask": "xyz"}, "not a hexadecimal CPU mask"),
        ({"cpumask": "4"}, "must select CPUs that exist"),
        ({"cpumask": "0"}, "must select CPUs that exist"),
        ({"function_filter": ["no_such_fn"]}, "'no_such_fn' is not in available_filter_functions"),
        ({"function_filter": ["zz*"]}, "matches no function"),
        ({"function_filter": ["a;b"]}, "is not a function name or glob"),
        ({"pids": ["abc"]}, "'abc' is not a process id"),
        ({"pids": ["5\n"]}, "is not a process id"),
        ({"pids": ["\u00b2"]}, "is not a process id"),
        ({"pids": ["!5\n"]}, "is not a process id"),
        ({"cpumask": "3\n"}, "not a hexadecimal CPU mask"),
        ({"cpumask": "3\n1"}, "not a hexadecimal CPU mask"),
        ({"function_filter": ["vfs_read\n"]}, "is not a function name or glob"),
        ({"function_filter": ["!vfs_read\n"]}, "is not a function name or glob"),
        ({"graph_functions": ["vfs_*\n"]}, "is not a function name or glob"),
    ],
)
def test_bad_input(tree, params, message):
    with pytest.raises(_knob_changes.KnobError) as failure:
        plan(tree, **params)
    assert message in str(failure.value)


def test_function_lists_add_remove_and_globs(tree):
    (tree / "set_ftrace_filter").write_text("vfs_read\n")
    changes = plan(tree, function_filter=["vfs_*", "!vfs_read", "do_sys_openat2"])
    assert [(c.ledger_kind, c.value) for c in changes] == [
        ("list_add", "vfs_*"),
        ("list_add", "do_sys_openat2"),
        ("list_remove", "!vfs_read"),
    ]
    (tree / "set_ftrace_filter").write_text("vfs_read\nvfs_write\ndo_sys_openat2\n")
    assert plan(tree, function_filter=["vfs_*", "do_sys_openat2"]) == []


def test_pids_add_and_remove_by_rewrite(tree):
    (tree / "set_event_pid").write_text("7\n9\n")
    changes = plan(tree, pids=["!7", "11"])
    kinds = [(c.file, c.ledger_kind, c.value) for c in changes]
    assert ("set_event_pid", "list_add", "11") in kinds
    assert ("set_event_pid", "pid_replace", "9") in kinds
    assert ("set_ftrace_pid", "list_add", "11") in kinds


def test_deferred_tracer_option_checked_after_tracer(tree, tracing):
    changes = plan(tree, tracer="function_graph", options={"funcgraph-proc": True})
    assert [c.ledger_kind for c in changes] == ["knob", "deferred_option"]
    with Ledger(str(tree / "ledger.json")) as ledger, pytest.raises(
        _knob_changes.KnobError, match="not an option of the tracer"
    ):
        _knob_changes.apply_knobs(tracing, changes, Transaction(tracing.control), ledger, "s", True)


def test_apply_records_originals(tree, tracing):
    changes = plan(tree, tracer="function", function_filter=["vfs_read"], tracing_on=False)
    with Ledger(str(tree / "ledger.json")) as ledger:
        _knob_changes.apply_knobs(tracing, changes, Transaction(tracing.control), ledger, "s", True)
        entries = [(e["kind"], e["file"], e.get("original", e.get("value"))) for e in ledger.entries]
    assert entries == [
        ("list_add", "set_ftrace_filter", "vfs_read"),
        ("knob", "current_tracer", "nop"),
        ("knob", "tracing_on", "1"),
    ]
    assert (tree / "current_tracer").read_text() == "function\n"


def test_instance_resize_records_the_top_level_buffer_it_freezes(tree, fake_host):
    # 6.1: any resize sets the global "expanded" flag, after which an unused top-level
    # buffer stays at its minimum: remember the size it would have grown to.
    instance = tree / "instances" / "tf"
    instance.mkdir(parents=True)
    (instance / "buffer_size_kb").write_text("1410 (expanded: 1408)\n")
    tracing = fake_host.tracing_dir("tf")
    changes = _knob_changes.plan_knobs(tracing, {"buffer_size_kb": 512})
    assert [c.ledger_kind for c in changes] == ["top_buffer", "knob"]
    with Ledger(str(tree / "ledger.json")) as ledger:
        _knob_changes.apply_knobs(tracing, changes, Transaction(tracing.control), ledger, "s", False)
        assert [(e["instance"], e["file"], e["original"]) for e in ledger.entries] == [(None, "buffer_size_kb", "1408")]
    assert (tree / "buffer_size_kb").read_text() == "7 (expanded: 1408)\n"  # not written
    (tree / "buffer_size_kb").write_text("7\n")
    assert [c.ledger_kind for c in _knob_changes.plan_knobs(tracing, {"buffer_size_kb": 256})] == ["knob"]


# buffer_subbuf_size_kb (6.8+): the kernel rounds KiB up to a power-of-two number of
# memory pages, 1 to 128 of them (buffer_subbuf_size_write in kernel/trace/trace.c).
@pytest.mark.parametrize(
    "wanted, page, settled",
    [
        (1, 4096, 4),
        (4, 4096, 4),
        (5, 4096, 8),
        (8, 4096, 8),
        (9, 4096, 16),
        (300, 4096, 512),
        (512, 4096, 512),
        (513, 4096, None),
        (0, 4096, None),
        (-8, 4096, None),
        (8, 65536, 64),
        (8192, 65536, 8192),
        (8193, 65536, None),
    ],
)
def test_subbuf_rounding(wanted, page, settled):
    assert _knob_state.subbuf_size_kb(wanted, page) == settled


def test_buffer_pages_of_a_larger_subbuf():
    # 8 KiB sub-buffers carry 8176 bytes of data (events/header_page on the lab's 6.12)
    assert _knob_state.allocated_kb(1024 * 1024, 8192) == 1029
    assert _knob_state.allocated_kb(1024 * 1024) == 1027


@pytest.fixture
def subbuf_tree(tree, monkeypatch):
    (tree / "buffer_subbuf_size_kb").write_text("4\n")
    monkeypatch.setattr(_knob_state, "system_page_size", lambda: 4096)
    return tree


@pytest.mark.parametrize("reading, wanted", [("4\n", 1), ("4\n", 4), ("8\n", 5), ("8\n", 8), ("512\n", 300)])
def test_subbuf_reading_of_the_rounded_size_is_the_same(subbuf_tree, reading, wanted):
    (subbuf_tree / "buffer_subbuf_size_kb").write_text(reading)
    assert plan(subbuf_tree, buffer_subbuf_size_kb=wanted) == []


def test_subbuf_change_writes_the_rounded_size(subbuf_tree):
    [change] = plan(subbuf_tree, buffer_subbuf_size_kb=5)
    assert (change.knob, change.file, change.value) == ("buffer_subbuf_size_kb", "buffer_subbuf_size_kb", "8")
    assert (change.before, change.after, change.original, change.ledger_kind) == (4, 8, "4", "knob")


@pytest.mark.parametrize(
    "reading, wanted, message",
    [
        (None, 8, "buffer_subbuf_size_kb=8: this kernel has no buffer_subbuf_size_kb (ring-buffer sub-buffer"),
        ("4\n", 0, "buffer_subbuf_size_kb=0: the kernel takes 1 to 512 KiB (1 to 128 pages of 4096 bytes"),
        ("4\n", 513, "buffer_subbuf_size_kb=513: the kernel takes 1 to 512 KiB"),
        ("4\n", -4, "buffer_subbuf_size_kb=-4: the kernel takes"),
        ("four\n", 8, "buffer_subbuf_size_kb=8: buffer_subbuf_size_kb reads 'four\\n', not a number of KiB"),
        # A size no kernel takes is refused as such where the file is missing too (6.1).
        (None, 0, "buffer_subbuf_size_kb=0: the kernel takes 1 to 512 KiB"),
        (None, -4, "buffer_subbuf_size_kb=-4: the kernel takes 1 to 512 KiB"),
        (None, 10**12, "buffer_subbuf_size_kb=1000000000000: the kernel takes 1 to 512 KiB"),
        # A bool is an int to AnsibleModule: True would be 1 KiB (and "True" in the kernel file).
        ("4\n", True, "buffer_subbuf_size_kb=True: a whole number of KiB is expected, not true or false"),
        (None, False, "buffer_subbuf_size_kb=False: a whole number of KiB is expected, not true or false"),
    ],
)
def test_subbuf_bad_input(subbuf_tree, reading, wanted, message):
    if reading is None:
        (subbuf_tree / "buffer_subbuf_size_kb").unlink()
    else:
        (subbuf_tree / "buffer_subbuf_size_kb").write_text(reading)
    with pytest.raises(_knob_changes.KnobError) as failure:
        plan(subbuf_tree, buffer_subbuf_size_kb=wanted)
    assert message in str(failure.value)


@pytest.mark.parametrize("wanted", [True, False])
def test_a_bool_buffer_size_is_refused_before_the_kernel_is_sent_its_text(tree, wanted):
    with pytest.raises(_knob_changes.KnobError) as failure:
        plan(tree, buffer_size_kb=wanted)
    assert str(failure.value) == "buffer_size_kb=%r: a whole number of KiB is expected, not true or false" % wanted


def test_subbuf_before_buffer_size_which_rounds_in_the_new_pages(subbuf_tree):
    (subbuf_tree / "buffer_size_kb").write_text("1027\n")  # 1024 in 4 KiB pages
    assert plan(subbuf_tree, buffer_size_kb=1024) == []
    changes = plan(subbuf_tree, buffer_subbuf_size_kb=8, buffer_size_kb=1024)
    assert [(c.knob, c.value) for c in changes] == [("buffer_subbuf_size_kb", "8"), ("buffer_size_kb", "1024")]
    # after both writes: 1024 KiB in 8 KiB sub-buffers reads back as 1029
    (subbuf_tree / "buffer_subbuf_size_kb").write_text("8\n")
    (subbuf_tree / "buffer_size_kb").write_text("1029\n")
    assert plan(subbuf_tree, buffer_subbuf_size_kb=8, buffer_size_kb=1024) == []
    assert plan(subbuf_tree, buffer_size_kb=1024) == []


def test_subbuf_written_first_recorded_last(subbuf_tree, tracing):
    # Teardown undoes newest first: the sub-buffers go back before the buffer size.
    (subbuf_tree / "buffer_size_kb").write_text("1410\n")
    changes = plan(subbuf_tree, buffer_subbuf_size_kb=8, buffer_size_kb=1024)
    transaction = Transaction(tracing.control)
    with Ledger(str(subbuf_tree / "ledger.json")) as ledger:
        _knob_changes.apply_knobs(tracing, changes, transaction, ledger, "s", True)
        entries = [(e["kind"], e["file"], e["original"]) for e in ledger.entries]
    assert transaction.done == ["buffer_subbuf_size_kb <- 8", "buffer_size_kb <- 1024"]
    assert entries == [("knob", "buffer_size_kb", "1410"), ("knob", "buffer_subbuf_size_kb", "4")]
    assert (subbuf_tree / "buffer_subbuf_size_kb").read_text().strip() == "8"
