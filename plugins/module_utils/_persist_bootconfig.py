# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_persist's bootconfig backend, the text side: a checked `Spec` as the
`ftrace.*` tree of boot-time tracing (Documentation/trace/boottime-trace.rst), the
limits the kernel's parser sets on it (Documentation/admin-guide/bootconfig.rst,
include/linux/bootconfig.h), and reading the bootconfig attached to an initrd.

The tree, one key per line:

    ftrace[.instance.NAME].buffer_size = "NNKB"       (per CPU)
    ftrace[.instance.NAME].trace_clock = "CLOCK"
    ftrace[.instance.NAME].options = "OPT1", "noOPT2"
    ftrace[.instance.NAME].tracing_on = "0"|"1"
    ftrace[.instance.NAME].events = "sys:*"           (a whole system)
    ftrace[.instance.NAME].event.SYS.EV.filter = "FILTER"
    ftrace[.instance.NAME].event.SYS.EV.actions = "TRIGGER", ...
    ftrace[.instance.NAME].event.SYS.EV.enable
    ftrace[.instance.NAME].event.kprobes.EV.probes = "SYM[+OFF][%return] ARGS"

Kprobes defined this way are always in the group `kprobes` (kernel/trace/trace_boot.c
defines a probe only under event.kprobes, as `p:kprobes/EV PROBE`); uprobes cannot be
defined at all. The kernel copies a filter, an action and an option into 256-byte
buffers, and builds a probe's definition in one.

Attached to an initrd, the file is followed by NUL padding (to align the whole image
to 4 bytes), then the footer: size (le32, the text, its NUL and the padding), checksum
(le32, the sum of the text's bytes) and the 12-byte magic `#BOOTCONFIG\\n`.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os
import re
import struct

from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_render import mark
from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_spec import PersistError, Spec

MAGIC = b"#BOOTCONFIG\n"
FOOTER_SIZE = 4 + 4 + len(MAGIC)
ALIGN = 4
# include/linux/bootconfig.h
XBC_DATA_MAX = 32767
XBC_NODE_MAX = 1024
XBC_KEYLEN_MAX = 256
XBC_DEPTH_MAX = 16
# kernel/trace/trace_boot.c's MAX_BUF_LEN: a value (or probe definition) must fit with its NUL.
MAX_BUF_LEN = 256
# The `%return` suffix that makes a kprobe a return probe came with Linux 5.11.
RETURN_SUFFIX_SINCE = (5, 11)
_KEY_WORD = re.compile(r"[A-Za-z0-9_-]+")


class Tree:
    """Keys (tuples of words) with their values (a list; None for a key without one), in
    the order they were added, merged the way the kernel's parser merges them."""

    def __init__(self) -> None:
        self.entries: list[tuple[tuple[str, ...], list[str] | None]] = []

    def add(self, option: str, key: list[str], values: list[str] | None = None) -> None:
        for word in key:
            if not _KEY_WORD.fullmatch(word):
                raise PersistError(
                    "%s: %r cannot be a word of a bootconfig key (letters, digits, '-' and '_' only)" % (option, word)
                )
        for value in values or []:
            if '"' in value and "'" in value:
                raise PersistError(
                    "%s=%r: a bootconfig value cannot hold both kinds of quotes (they cannot be escaped)"
                    % (option, value)
                )
        self.entries.append((tuple(key), values))

    def text(self, name: str) -> str:
        lines = [mark(name)]
        for key, values in self.entries:
            if values is None:
                lines.append(".".join(key))
            else:
                lines.append("%s = %s" % (".".join(key), ", ".join(_quoted(value) for value in values)))
        return "\n".join(lines) + "\n"

    def node_count(self) -> int:
        """Nodes the kernel's parser allocates: one per distinct key word at its place in
        the tree, one per value."""
        keys = set()
        values = 0
        for key, entry_values in self.entries:
            for depth in range(1, len(key) + 1):
                keys.add(key[:depth])
            values += len(entry_values or [])
        return len(keys) + values


def _quoted(value: str) -> str:
    return "'%s'" % value if '"' in value else '"%s"' % value


def _probe_value(probe) -> str:
    """The PROBE of `event.kprobes.EV.probes`: the target (with `%return` for a return
    probe) and the fetchargs, as trace_boot.c hands them to the kprobe parser."""
    definition = probe.definition
    target = definition.target + ("%return" if definition.kind == "r" else "")
    return " ".join([target] + definition.args)


def _check_length(option: str, value: str, room: int = MAX_BUF_LEN) -> None:
    if len(value.encode("utf-8")) >= room:
        raise PersistError(
            "%s=%r is %d bytes; boot-time tracing takes fewer than %d here" % (option, value, len(value), room)
        )


def render(spec: Spec, release: tuple[int, int] | None) -> Tree:
    """The `ftrace` tree of `spec`; PersistError for what bootconfig cannot say."""
    tree = Tree()
    base = ["ftrace"] if spec.instance is None else ["ftrace", "instance", spec.instance]
    for probe in spec.probes:
        if probe.is_uprobe:
            raise PersistError("%s: boot-time tracing cannot define %ss; use backend unit" % (probe.option, probe.type))
        if probe.definition.group != "kprobes":
            raise PersistError(
                "%s: group=%r: boot-time tracing defines kprobes only in the group 'kprobes' "
                "(ftrace.event.kprobes.NAME.probes); set group: kprobes, or use backend unit"
                % (probe.option, probe.definition.group)
            )
        if probe.definition.kind == "r" and (release is None or release < RETURN_SUFFIX_SINCE):
            raise PersistError(
                "%s: a return probe in bootconfig needs the %%return suffix of Linux %d.%d and later"
                % ((probe.option,) + RETURN_SUFFIX_SINCE)
            )
        value = _probe_value(probe)
        _check_length(probe.option, "p:kprobes/%s %s" % (probe.definition.event, value))
        tree.add(probe.option, base + ["event", "kprobes", probe.definition.event, "probes"], [value])
    if spec.buffer_size_kb is not None:
        tree.add("buffer_size_kb", base + ["buffer_size"], ["%dKB" % spec.buffer_size_kb])
    if spec.trace_clock is not None:
        tree.add("trace_clock", base + ["trace_clock"], [spec.trace_clock])
    if spec.options:
        for option in spec.options:
            _check_length("options", option)
        tree.add("options", base + ["options"], list(spec.options))
    systems = [event.kernel_name for event in spec.events if event.event is None and event.enabled]
    if systems:
        tree.add("events", base + ["events"], systems)
    for event in spec.events:
        if event.event is None:
            continue
        key = base + ["event", event.system, event.event]
        if event.filter:
            _check_length(event.option + ".filter", event.filter)
            tree.add(event.option + ".filter", key + ["filter"], [event.filter])
        if event.triggers:
            for trigger in event.triggers:
                _check_length(event.option + ".triggers", trigger)
            tree.add(event.option + ".triggers", key + ["actions"], list(event.triggers))
        if event.enabled:
            tree.add(event.option, key + ["enable"])
    if spec.tracing_on is not None:
        tree.add("tracing_on", base + ["tracing_on"], ["1" if spec.tracing_on else "0"])
    return tree


def check_limits(tree: Tree, text: str) -> dict:
    """The tree's size against the kernel's limits; PersistError past one. Returns the
    sizes (the data with its NUL and the most padding, the footer included)."""
    data = len(text.encode("utf-8")) + 1
    worst = data + ALIGN - 1
    if worst > XBC_DATA_MAX:
        raise PersistError(
            "the bootconfig would be %d bytes with its NUL and padding; the kernel takes at most %d"
            % (worst, XBC_DATA_MAX)
        )
    nodes = tree.node_count()
    if nodes > XBC_NODE_MAX:
        raise PersistError("the bootconfig would have %d nodes; the kernel takes at most %d" % (nodes, XBC_NODE_MAX))
    for key, _values in tree.entries:
        if len(key) > XBC_DEPTH_MAX:
            raise PersistError("bootconfig key %s is deeper than %d words" % (".".join(key), XBC_DEPTH_MAX))
        if len(".".join(key)) >= XBC_KEYLEN_MAX:
            raise PersistError("bootconfig key %s is longer than %d characters" % (".".join(key), XBC_KEYLEN_MAX - 1))
    return {"bytes": data, "total_bytes": worst + FOOTER_SIZE, "nodes": nodes}


def checksum(data: bytes) -> int:
    """xbc_calc_checksum: the bytes' sum, as an unsigned 32-bit number."""
    return sum(data) & 0xFFFFFFFF


def read_attached(path: str) -> str | None:
    """The bootconfig text attached to the initrd `path` (None when there is none).
    Raises PersistError for a footer whose size or checksum is wrong."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            if end < FOOTER_SIZE:
                return None
            handle.seek(end - FOOTER_SIZE)
            footer = handle.read(FOOTER_SIZE)
            if footer[8:] != MAGIC:
                return None
            size, stored = struct.unpack("<II", footer[:8])
            if size > end - FOOTER_SIZE or size > XBC_DATA_MAX + ALIGN:
                raise PersistError("%s: its bootconfig footer says %d bytes, more than the file holds" % (path, size))
            handle.seek(end - FOOTER_SIZE - size)
            data = handle.read(size)
    except OSError as exc:
        raise PersistError("cannot read the initrd %s: %s" % (path, exc)) from None
    if checksum(data) != stored:
        raise PersistError("%s: its bootconfig checksum is wrong (%d, not %d)" % (path, checksum(data), stored))
    return data.rstrip(b"\0").decode("utf-8", "replace")
