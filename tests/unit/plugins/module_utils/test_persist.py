# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_persist's text layers: command-line editing (words in, words out, every other
byte kept), GRUB's value, the words a kernel or GRUB cannot take, and the bootconfig
tree's limits and initrd footer."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_bootconfig as bootconfig
from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_cmdline as cmdline
from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_spec import (
    PersistError,
    build,
    parse_release,
)
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir


@pytest.mark.parametrize(
    "text",
    ["", "\n", "a", "a\n", "a b\n", "  a\tb  \n", "a -- init\n", "root=/dev/vda1\nquiet\n", "-- x"],
)
def test_adding_then_removing_words_gives_the_text_back(text):
    added = cmdline.edit(text, [], ["w1=x", "w2"])
    assert cmdline.words_of(added)[-2:] == ["w1=x", "w2"] or "--" in text
    assert cmdline.edit(added, ["w1=x", "w2"], []) == text


def test_words_go_before_a_bare_double_dash():
    assert cmdline.edit("a -- b\n", [], ["w"]) == "a w -- b\n"
    assert cmdline.words_of("a w -- trace_event=x") == ["a", "w"]


def test_conflicts_are_single_valued_parameters_instances_and_forbidden_flags():
    present = ["trace_event=irq:*", "trace_clock=global", "trace_instance=a,irq:*", "trace_instance=b", "quiet"]
    wanted = ["trace_event=sched:*", "trace_clock=global", "trace_instance=b,sched:*"]
    assert cmdline.conflicts(present, [], wanted, []) == ["trace_event=irq:*", "trace_instance=b"]
    assert cmdline.conflicts(present + ["traceoff_after_boot"], [], [], ["traceoff_after_boot"]) == [
        "traceoff_after_boot"
    ]
    assert cmdline.conflicts(present, ["trace_event=irq:*"], wanted, []) == ["trace_instance=b"]


@pytest.mark.parametrize(
    ("word", "bootloader", "problem"),
    [
        ("kprobe_event=p:g/e,sym,x=$arg1", "kernel-cmdline", None),
        ("kprobe_event=p:g/e,sym,x=$arg1", "grub", "'$' at position"),
        ("kprobe_event=p:g/a,s;p:g/b,s", "grub", "';' at position"),
        ("kprobe_event=p:g/e,sym,x=+0(%di):u8", "grub", "'(' at position"),
        ('trace_event="x"', "kernel-cmdline", "a quote"),
        ("trace_event=a#b", "kernel-cmdline", "a comment"),
        ("trace_event=caf\u00e9", "kernel-cmdline", "not printable ASCII"),
        ("trace_event=sched:*", "grub", None),
    ],
)
def test_unsafe_words(word, bootloader, problem):
    found = cmdline.unsafe(word, bootloader)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize(
    ("line", "after", "removed"),
    [
        ('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="w"', None),
        ("GRUB_CMDLINE_LINUX='a b'", "GRUB_CMDLINE_LINUX='a b w'", None),
        # Quotes added for the space stay when the word goes.
        ("GRUB_CMDLINE_LINUX=quiet", 'GRUB_CMDLINE_LINUX="quiet w"', 'GRUB_CMDLINE_LINUX="quiet"'),
        ("GRUB_CMDLINE_LINUX=", "GRUB_CMDLINE_LINUX=w", None),
        ('  export GRUB_CMDLINE_LINUX="a"  # why', '  export GRUB_CMDLINE_LINUX="a w"  # why', None),
    ],
)
def test_grub_value_forms(line, after, removed):
    text = 'GRUB_TIMEOUT=5\n%s\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n' % line
    edited = cmdline.CmdlineFile("grub", "/etc/default/grub", text).edited([], ["w"])
    assert edited == text.replace(line, after)
    back = cmdline.CmdlineFile("grub", "/etc/default/grub", edited).edited(["w"], [])
    assert back == text.replace(line, removed or line)


@pytest.mark.parametrize(
    "line",
    [
        'GRUB_CMDLINE_LINUX="a $EXTRA"',
        'GRUB_CMDLINE_LINUX="a \\"b\\""',
        'GRUB_CMDLINE_LINUX="a',
        "GRUB_CMDLINE_LINUX=`cat x`",
    ],
)
def test_grub_values_that_are_not_plain_are_refused(line):
    with pytest.raises(cmdline.CmdlineError, match="not a one-line value"):
        cmdline.CmdlineFile("grub", "/etc/default/grub", line + "\n")


def test_a_command_line_too_long_for_the_kernel_is_refused():
    current = cmdline.CmdlineFile("kernel-cmdline", "/etc/kernel/cmdline", "a\n")
    with pytest.raises(cmdline.CmdlineError, match="more than the kernel takes"):
        current.edited([], ["x" * 2047])


@pytest.mark.parametrize(("release", "parsed"), [("6.1.0-18-amd64", (6, 1)), ("6.15", (6, 15)), ("x", None)])
def test_parse_release(release, parsed):
    assert parse_release(release) == parsed


def spec_of(tmp_path, **params):
    return build(dict({"name": "s"}, **params), TracingDir(str(tmp_path / "none")))


def test_a_tree_past_the_kernels_node_limit_is_refused(tmp_path):
    events = [{"name": "sys%d/event%d" % (index, index), "filter": "a == 1"} for index in range(300)]
    spec = spec_of(tmp_path, events=events)
    tree = bootconfig.render(spec, (6, 12))
    assert tree.node_count() == 1 + 1 + 300 * 5  # ftrace, event, then sys, event, filter, its value, enable
    with pytest.raises(PersistError, match="nodes; the kernel takes at most 1024"):
        bootconfig.check_limits(tree, tree.text("s"))


def test_a_tree_past_the_kernels_size_limit_is_refused(tmp_path):
    events = [{"name": "s/e%d" % index, "filter": "x" * 200} for index in range(170)]
    tree = bootconfig.render(spec_of(tmp_path, events=events), (6, 12))
    with pytest.raises(PersistError, match="the kernel takes at most 32767"):
        bootconfig.check_limits(tree, tree.text("s"))


def test_sizes_of_a_small_tree(tmp_path):
    tree = bootconfig.render(spec_of(tmp_path, tracing_on=False), (6, 12))
    text = tree.text("s")
    assert text.split("\n")[1:] == ['ftrace.tracing_on = "0"', ""]
    sizes = bootconfig.check_limits(tree, text)
    assert sizes == {"bytes": len(text) + 1, "total_bytes": len(text) + 1 + 3 + 20, "nodes": 3}


def test_a_return_probe_needs_the_return_suffix(tmp_path, monkeypatch):
    tracing = tmp_path / "tracing"
    tracing.mkdir()
    (tracing / "available_filter_functions").write_text("vfs_read\n")
    spec = build(
        {"name": "s", "probes": [{"name": "r", "group": "kprobes", "type": "kretprobe", "target": "vfs_read"}]},
        TracingDir(str(tracing)),
    )
    with pytest.raises(PersistError, match="%return suffix of Linux 5.11"):
        bootconfig.render(spec, (5, 10))
    assert 'ftrace.event.kprobes.r.probes = "vfs_read%return"' in bootconfig.render(spec, (5, 11)).text("s")


def attach(path, text: bytes, csum=None):
    data = text + b"\0"
    pad = (-(path.stat().st_size + len(data) + 20)) % 4
    footer = struct.pack("<II", len(data) + pad, sum(text) if csum is None else csum) + bootconfig.MAGIC
    path.write_bytes(path.read_bytes() + data + b"\0" * pad + footer)


def test_reading_the_bootconfig_attached_to_an_initrd(tmp_path):
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"\x1f\x8b" + b"\0" * 101)
    assert bootconfig.read_attached(str(initrd)) is None
    attach(initrd, b"ftrace.tracing_on = 0\n")
    assert bootconfig.read_attached(str(initrd)) == "ftrace.tracing_on = 0\n"
    broken = tmp_path / "broken"
    broken.write_bytes(b"\0" * 7)
    attach(broken, b"kernel.x\n", csum=1)
    with pytest.raises(PersistError, match="checksum is wrong"):
        bootconfig.read_attached(str(broken))
    short = tmp_path / "short"
    short.write_bytes(struct.pack("<II", 4096, 0) + bootconfig.MAGIC)
    with pytest.raises(PersistError, match="more than the file holds"):
        bootconfig.read_attached(str(short))
