# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a host returns is untrusted: the one place the controller checks it.

A compromised or broken target can put anything in a module's result: a file name
like `/root/.ssh/authorized_keys` or `../../x`, a size of -1, 1e300 or NaN, a
per-CPU count keyed by `"x"`, a string of megabytes, a lone surrogate, keys the
module never returns. Every controller path that consumes a host's values (the
trace_capture action's fetch and filing, the manifest it writes, the run report
reading that manifest back, the audit's checks of tracefs_info facts) passes them
through a schema declared here first, and uses only the copy the schema returns:
plain Python types, known keys, checked types, ranges, lengths, name syntax and
allowed values. Nothing the controller writes is named by a host: file names are
rebuilt from the task's own options, and a host-given name is only compared with
the one expected.

`check(schema, value, what)` is strict: the first bad value raises HostResultError
naming the field and the value (repr, truncated), and the caller fails the task for
that host before it writes anything. `sanitize(schema, value, what, problems)` is for
files the controller wrote earlier and reads back (a manifest someone may have
edited): a bad field, item or entry is left out and described in `problems`.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import abc
import math
import re
from typing import Any

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import control_character
from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError
from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _escape

SHOWN = 60  # characters of a bad value shown in a message
MAX_BYTES = 1 << 50  # 1 PiB: more than any capture, less than anything that overflows
MAX_COUNT = (1 << 63) - 1  # the kernel's counters are 64-bit
MAX_CPUS = 1 << 16
MAX_SECONDS = 1e8  # about three years: a window, a timing
MAX_NAME = 255
MAX_LINE = 4096
MAX_ITEMS = 1 << 17  # events, probe lines, instances
OUTPUT_LIMIT = 1 << 20  # a workload's stdout and stderr, as _workload returns them

_SURROGATE = re.compile("[\ud800-\udfff]")


class HostResultError(TracefleetError):
    """A value a host returned that the controller refuses."""

    def __init__(self, field: str, value, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__("%s=%s: %s" % (field, show(value), reason))


def show(value) -> str:
    """A short, printable repr of a value, whatever its size."""
    if isinstance(value, str):
        text = repr(value[:SHOWN])
        return text if len(value) <= SHOWN else "%s... (%d characters)" % (text, len(value))
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 128 else "an integer of %d bits" % value.bit_length()
    if isinstance(value, (dict, list, tuple)):
        try:
            text = repr(value) if len(value) <= 8 else ""
        except (RecursionError, ValueError):  # pragma: no cover - values from JSON nest finitely
            text = ""
        if text and len(text) <= SHOWN:
            return text
        return "a %s of %d item(s)" % (type(value).__name__, len(value))
    return "a %s" % type(value).__name__


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


class Spec(abc.ABC):
    """One value's rules. `check` returns the value as plain Python types."""

    def __init__(self, nullable: bool = False) -> None:
        self.nullable = nullable

    def check(self, value, where: str, problems: list | None = None):
        if value is None:
            if self.nullable:
                return None
            raise HostResultError(where, value, "a value is required")
        return self._check(value, where, problems)

    @abc.abstractmethod
    def _check(self, value, where: str, problems: list | None):
        """The value checked (and normalised) by this kind of spec."""


class Str(Spec):
    """A string: at most `max_len` characters; with `pattern`, fully matching it
    (`describe` says what it is); with `choices`, one of them. Lone surrogates (what
    undecodable host bytes become) are refused in a name, and turned into visible
    backslash escapes in free `text`. With `printable`, no control character (newline,
    ESC, NUL, DEL, a Unicode line separator; a tab is allowed)."""

    def __init__(
        self,
        max_len: int = MAX_LINE,
        pattern: str | None = None,
        describe: str = "",
        choices=None,
        text: bool = False,
        nullable: bool = False,
        printable: bool = False,
    ) -> None:
        super().__init__(nullable)
        self.max_len, self.choices, self.text, self.printable = max_len, choices, text, printable
        self.pattern = re.compile(pattern) if pattern else None
        self.describe = describe

    def _check(self, value, where, problems):
        if not isinstance(value, str):
            raise HostResultError(where, value, "a string is expected, not %s" % _kind(value))
        value = str.__str__(value)  # a plain str, whatever subclass it came as
        if len(value) > self.max_len:
            raise HostResultError(where, value, "longer than %d characters" % self.max_len)
        if _SURROGATE.search(value):
            if not self.text:
                raise HostResultError(where, value, "not valid Unicode (a lone surrogate)")
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        if self.printable:
            problem = control_character(value)
            if problem:
                raise HostResultError(where, value, problem)
        if self.choices is not None and value not in self.choices:
            raise HostResultError(where, value, "not one of %s" % ", ".join(sorted(self.choices)))
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise HostResultError(where, value, "not %s" % (self.describe or "of the form %s" % self.pattern.pattern))
        return value


class Int(Spec):
    """An integer (not a bool, not a float) in [low, high]."""

    def __init__(self, low: int = 0, high: int = MAX_COUNT, nullable: bool = False) -> None:
        super().__init__(nullable)
        self.low, self.high = low, high

    def _check(self, value, where, problems):
        if isinstance(value, bool) or not isinstance(value, int):
            raise HostResultError(where, value, "an integer is expected, not %s" % _kind(value))
        if not self.low <= value <= self.high:
            raise HostResultError(where, value, "out of range %d..%d" % (self.low, self.high))
        return int(value)


class Float(Spec):
    """A finite number (an int is taken as a float) in [low, high]."""

    def __init__(self, low: float = 0.0, high: float = MAX_SECONDS, nullable: bool = False) -> None:
        super().__init__(nullable)
        self.low, self.high = low, high

    def _check(self, value, where, problems):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HostResultError(where, value, "a number is expected, not %s" % _kind(value))
        if isinstance(value, int) and value.bit_length() > 128:
            raise HostResultError(where, value, "out of range %g..%g" % (self.low, self.high))
        number = float(value)
        if not math.isfinite(number):
            raise HostResultError(where, value, "not a finite number")
        if not self.low <= number <= self.high:
            raise HostResultError(where, value, "out of range %g..%g" % (self.low, self.high))
        return number


class Bool(Spec):
    def _check(self, value, where, problems):
        if not isinstance(value, bool):
            raise HostResultError(where, value, "true or false is expected, not %s" % _kind(value))
        return bool(value)


class Message(Spec):
    """Free text a host's result carries (a failure's `msg`), kept rather than refused
    for its content: made one line of harmless text (_escape.line: line breaks become
    spaces, control characters, bidirectional overrides and lone surrogates visible
    escapes) and cut to at most `max_len` characters, the cut saying how long the text
    was. Only a value that is not a string is refused."""

    def __init__(self, max_len: int, nullable: bool = False) -> None:
        super().__init__(nullable)
        self.max_len = max_len

    def _check(self, value, where, problems):
        if not isinstance(value, str):
            raise HostResultError(where, value, "a string is expected, not %s" % _kind(value))
        text = str.__str__(value)
        # Escapes only lengthen the text: a cut of the raw text bounds the work.
        line = _escape.line(text[: self.max_len + 1])
        if len(text) <= self.max_len and len(line) <= self.max_len:
            return line
        suffix = "... (cut: %d characters)" % len(text)
        return line[: self.max_len - len(suffix)] + suffix


class Equal(Spec):
    """Exactly the value the controller expects (what it asked the module for)."""

    def __init__(self, expected, nullable: bool = False) -> None:
        super().__init__(nullable or expected is None)
        self.expected = expected

    def _check(self, value, where, problems):
        # The expected value may be a subclass of its plain type (ansible-core tags
        # templated strings); what the host returns is compared by the plain type.
        plain = next((kind for kind in (bool, int, float, str) if isinstance(self.expected, kind)), type(self.expected))
        if not isinstance(value, plain) or (plain is not bool and isinstance(value, bool)):
            raise HostResultError(where, value, "expected %r" % (self.expected,))
        if value != self.expected:
            raise HostResultError(where, value, "expected %r" % (self.expected,))
        return self.expected


class Keep(Spec):
    """Ansible's own keys (warnings, deprecations), which ansible deserialised into its
    own types and handles as for every module: passed on unchanged."""

    def __init__(self) -> None:
        super().__init__(nullable=True)

    def _check(self, value, where, problems):
        return value


def _collect(problems: list | None, error: HostResultError) -> None:
    if problems is None:
        raise error
    problems.append(str(error))


class List(Spec):
    def __init__(self, item: Spec, max_items: int = MAX_ITEMS, nullable: bool = False) -> None:
        super().__init__(nullable)
        self.item, self.max_items = item, max_items

    def _check(self, value, where, problems):
        if not isinstance(value, (list, tuple)):
            raise HostResultError(where, value, "a list is expected, not %s" % _kind(value))
        if len(value) > self.max_items:
            raise HostResultError(where, value, "more than %d items" % self.max_items)
        out = []
        for index, item in enumerate(value):
            try:
                out.append(self.item.check(item, "%s[%d]" % (where, index), problems))
            except HostResultError as exc:
                _collect(problems, exc)
        return out


class Map(Spec):
    """A dict of `key` (a Str spec) -> `value`."""

    def __init__(self, key: Str, value: Spec, max_items: int = MAX_ITEMS, nullable: bool = False) -> None:
        super().__init__(nullable)
        self.key, self.value, self.max_items = key, value, max_items

    def _check(self, value, where, problems):
        if not isinstance(value, dict):
            raise HostResultError(where, value, "a dict is expected, not %s" % _kind(value))
        if len(value) > self.max_items:
            raise HostResultError(where, value, "more than %d entries" % self.max_items)
        out = {}
        for key, item in value.items():
            try:
                name = self.key.check(key, "%s key" % where, None)
                out[name] = self.value.check(item, "%s[%s]" % (where, show(name)), problems)
            except HostResultError as exc:
                _collect(problems, exc)
        return out


class Record(Spec):
    """A dict with known keys. `required` keys must be there; a key not in `fields`
    is refused with extra="refuse", left out with extra="ignore" (a registered result
    carries keys a check does not use; a newer manifest may carry more). Keys in
    `drop` are expected and left out (what ansible adds to every result)."""

    def __init__(
        self,
        fields: dict,
        required=(),
        extra: str = "refuse",
        drop=(),
        nullable: bool = False,
    ) -> None:
        super().__init__(nullable)
        self.fields, self.required, self.extra, self.drop = fields, frozenset(required), extra, frozenset(drop)

    def _check(self, value, where, problems):
        if not isinstance(value, dict):
            raise HostResultError(where, value, "a dict is expected, not %s" % _kind(value))
        prefix = where + "." if where else ""
        out: dict[str, Any] = {}
        for key in sorted(value, key=str):
            if key in self.fields or key in self.drop or self.extra == "ignore":
                continue
            _collect(problems, HostResultError(prefix + str(key)[:SHOWN], value[key], "a key this result never has"))
        for key in sorted(self.required - set(value)):
            _collect(problems, HostResultError(prefix + key, None, "missing"))
        for key, spec in self.fields.items():
            if key not in value:
                continue
            try:
                out[key] = spec.check(value[key], prefix + key, problems)
            except HostResultError as exc:
                _collect(problems, exc)
        return out


def check(schema: Spec, value, what: str = ""):
    """The checked copy of `value`; the first bad value raises HostResultError."""
    return schema.check(value, what, None)


def sanitize(schema: Spec, value, what: str, problems: list):
    """The checked copy of `value` without what is bad in it, described in `problems`.
    Raises HostResultError only when `value` itself is not what the schema is of."""
    return schema.check(value, what, problems)


# ---------------------------------------------------------------- the schemas

NAME = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
CPU = Str(max_len=16, pattern=r"[0-9]{1,5}", describe="a CPU number")
COUNT = Int(0, MAX_COUNT)
BYTES = Int(0, MAX_BYTES)
SECONDS = Float(0.0, MAX_SECONDS)
PER_CPU = Map(CPU, COUNT, max_items=MAX_CPUS)
TRACE_CLOCK = Str(max_len=32, pattern=r"[a-z0-9][a-z0-9_-]*", describe="a trace clock name")
KERNEL = Str(max_len=MAX_NAME, pattern=r"[!-~]+", describe="a kernel release (printable ASCII, no spaces)")
_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z"
# system/event, or system/* for a whole system (_capture.summarise_events).
EVENT = Str(
    max_len=MAX_NAME,
    pattern=r"[A-Za-z0-9_][A-Za-z0-9_.+-]*/(?:\*|[A-Za-z0-9_][A-Za-z0-9_.+-]*)",
    describe="an event as system/name",
)
SHA256 = Str(max_len=64, pattern=r"[0-9a-f]{64}", describe="a sha256 in lower-case hex", nullable=True)
MAX_WALL_NS = 10**20  # nanoseconds since the epoch: beyond the year 5000
MAX_TRACE_NS = 10**18  # a trace clock's nanoseconds: 31 years of uptime
MAX_UNCERTAINTY_NS = 10**10  # a bracket of 10 s is no anchor
# The window's anchor (_capture_anchor): the middle of the winning bracket, its
# marker's trace time, and the bracket's width; None where there is none.
CLOCK_ANCHOR = Record(
    dict(
        wall=Float(0.0, 1e11, nullable=True),
        trace=Float(-1e15, 1e15, nullable=True),
        clock=Str(max_len=32, pattern=r"[a-z0-9][a-z0-9_-]*", describe="a trace clock name", nullable=True),
        wall_ns=Int(0, MAX_WALL_NS, nullable=True),
        trace_ns=Int(0, MAX_TRACE_NS, nullable=True),
        uncertainty_ns=Int(0, MAX_UNCERTAINTY_NS, nullable=True),
    )
)
PIDS = List(Int(1, 1 << 22), max_items=4096)
TIMINGS = Record(dict.fromkeys(("before", "window", "during", "after", "compress_cpu", "cpu"), SECONDS))
TEXT = Str(max_len=OUTPUT_LIMIT, text=True)
FREE = Str(max_len=MAX_LINE, text=True, nullable=True)
# What ansible adds to any module's result: warnings and deprecations in its own
# types, the facts of interpreter discovery, and keys it strips from results anyway.
ANSIBLE_KEYS = dict(
    warnings=Keep(),
    deprecations=Keep(),
    ansible_facts=Map(
        Str(max_len=MAX_NAME, pattern=r"(?:ansible_)?discovered_interpreter_\w+", describe="interpreter discovery"),
        Str(max_len=MAX_LINE),
        max_items=8,
    ),
)
ANSIBLE_DROPPED = ("_ansible_parsed", "_ansible_no_log", "invocation", "stdout_lines", "stderr_lines")

WINDOW = dict(
    changed=Bool(),
    kernel=KERNEL,
    trace_clock=TRACE_CLOCK,
    started=Str(max_len=40, pattern=_TIMESTAMP, describe="a UTC time in ISO 8601", nullable=True),
    clock_anchor=CLOCK_ANCHOR,
    # The possible CPUs not read (offline when the window opened, or without a buffer).
    cpus_offline=List(Int(0, MAX_CPUS - 1), max_items=MAX_CPUS),
)

# An armed window (state=started with start_at): when it was to open, whether it was
# armed too late for that, and (collected) how long after start_at it really opened.
ARMED = dict(
    start_at=Str(max_len=40, pattern=_TIMESTAMP, describe="a UTC time in ISO 8601", nullable=True),
    late=Bool(),
)
START_DELAY = Float(-MAX_SECONDS, MAX_SECONDS)

# trace_capture, state=started: a window opened or armed, nothing to fetch.
CAPTURE_STARTED = Record(dict(WINDOW, **ARMED, **ANSIBLE_KEYS), required=("kernel",), drop=ANSIBLE_DROPPED)


def capture_collected(
    remote: tuple,
    file_name: str,
    compress: tuple,
    fmt: str,
    instance: str | None,
    command: str | None,
    file_version: int | None = None,
) -> Record:
    """trace_capture, state=captured or collected: what the module must return when
    the controller asked for a `fmt` capture of `instance` into the file `file_name`
    (compressed with one of `compress`, to one of `remote`); `file_version`: the
    trace.dat version asked for (format=dat)."""
    fields = dict(
        WINDOW,
        file=Str(max_len=MAX_LINE, choices=remote),
        file_name=Equal(file_name),
        compress=Str(max_len=8, choices=compress),
        bytes=BYTES,
        raw_bytes=BYTES,
        sha256=SHA256,
        events=COUNT,
        events_per_cpu=PER_CPU,
        lost_events=PER_CPU,
        seconds=SECONDS,
        enabled_events=List(EVENT),
        timings=TIMINGS,
        closed_by=Str(max_len=16, choices=("duration", "command", "collected", "max_bytes", "free_space")),
        budget_reached=Bool(),
        format=Equal(fmt),
        instance=Equal(instance),
        excluded_pids=PIDS,
        start_delay=START_DELAY,
        **ARMED,
        **ANSIBLE_KEYS,
    )
    required = ["file", "file_name", "compress", "bytes", "raw_bytes", "events", "kernel", "format"]
    if file_version is not None:
        fields.update(file_version=Equal(file_version))
        required.append("file_version")
    if command is not None:
        fields.update(cmd=Equal(command), rc=Int(-255, 255), stdout=TEXT, stderr=TEXT)
        required += ["cmd", "rc"]
    return Record(fields, required=required, drop=ANSIBLE_DROPPED)


# The manifest the controller wrote (_runs.file_capture), read back by the run report.
MANIFEST_FILE = Record(
    dict(path=Str(max_len=MAX_LINE, text=True), bytes=BYTES, sha256=Str(max_len=128, text=True, nullable=True)),
    extra="ignore",
)
MANIFEST_CAPTURE = Record(
    dict(
        name=Str(max_len=MAX_NAME, text=True, nullable=True),
        format=Str(max_len=16, text=True, nullable=True),
        instance=Str(max_len=MAX_NAME, text=True, nullable=True),
        trace_clock=Str(max_len=32, text=True, nullable=True),
        started=FREE,
        clock_anchor=Record(
            dict(
                wall=Float(0.0, 1e11, nullable=True),
                trace=Float(-1e15, 1e15, nullable=True),
                clock=Str(max_len=32, text=True, nullable=True),
                wall_ns=Int(0, MAX_WALL_NS, nullable=True),
                trace_ns=Int(0, MAX_TRACE_NS, nullable=True),
                uncertainty_ns=Int(0, MAX_UNCERTAINTY_NS, nullable=True),
            ),
            extra="ignore",
            nullable=True,
        ),
        file_version=Int(6, 7, nullable=True),
        excluded_pids=List(Int(1, 1 << 22), max_items=4096, nullable=True),
        seconds=Float(0.0, MAX_SECONDS, nullable=True),
        events=Int(0, MAX_COUNT, nullable=True),
        events_per_cpu=Map(Str(max_len=16, text=True), COUNT, max_items=MAX_CPUS, nullable=True),
        lost_events=Map(Str(max_len=16, text=True), COUNT, max_items=MAX_CPUS, nullable=True),
        enabled_events=List(Str(max_len=MAX_NAME, text=True), nullable=True),
        compress=Str(max_len=16, text=True, nullable=True),
        transferred_bytes=Int(0, MAX_BYTES, nullable=True),
        transfer=Str(max_len=16, text=True, nullable=True),
        timings=Map(Str(max_len=32, text=True), Float(0.0, MAX_SECONDS), max_items=16, nullable=True),
        command=Record(dict(cmd=FREE, rc=Int(-255, 255, nullable=True)), extra="ignore", nullable=True),
        files=List(MANIFEST_FILE, max_items=64, nullable=True),
        cpus_offline=List(Int(0, MAX_CPUS - 1), max_items=MAX_CPUS, nullable=True),
        closed_by=Str(max_len=16, text=True, nullable=True),
        budget_reached=Bool(nullable=True),
        start_at=FREE,
        late=Bool(nullable=True),
        start_delay=Float(-MAX_SECONDS, MAX_SECONDS, nullable=True),
    ),
    extra="ignore",
)
MANIFEST_HOST = Record(
    dict(
        dir=Str(max_len=MAX_LINE, text=True, nullable=True),
        kernel=Str(max_len=MAX_NAME, text=True, nullable=True),
        captures=List(MANIFEST_CAPTURE, max_items=4096, nullable=True),
    ),
    extra="ignore",
)
# The run's host sample (_runs.record_sample, from _sample.record): written by the
# controller, checked as strictly when written and as host data when read back.
MANIFEST_SAMPLE = Record(
    dict(
        method=Str(max_len=32, pattern=r"[a-z0-9][a-z0-9-]*", describe="a sampling method name"),
        group=Str(max_len=MAX_LINE, text=True, printable=True),
        group_size=Int(0, 1 << 20),
        size=Str(max_len=16, pattern=r"[0-9]{1,9}|[0-9]{1,3}(?:\.[0-9]{1,6})?%", describe="a count or a percentage"),
        seed=Str(max_len=256, text=True, printable=True),
        hosts=List(Str(max_len=MAX_LINE, text=True), max_items=1 << 20),
    ),
    required=("method", "group", "group_size", "size", "seed", "hosts"),
    extra="ignore",
    nullable=True,
)
# A host of the run that failed or was unreachable (_runs.record_failures), as the
# run_failures action gets it from the session role, which reads it from the host's
# registered results: host data. The reason is kept whatever its content, as one line of
# at most MAX_REASON characters; a value of the wrong type is refused.
MAX_REASON = 2000
HOST_NAME = Str(max_len=MAX_LINE, text=True)
FAILURE = Record(
    dict(reason=Message(MAX_REASON), unreachable=Bool(), task=Message(MAX_NAME, nullable=True)),
    required=("reason",),
)
# Inventory names, as the hosts of the play name them (no lone surrogate).
FAILURES = Map(Str(max_len=MAX_LINE), FAILURE, max_items=1 << 20)
# The same, as the manifest records it (with the time it was recorded) and its readers
# read it back.
MANIFEST_FAILURE = Record(
    dict(
        reason=Str(max_len=MAX_REASON, text=True),
        unreachable=Bool(nullable=True),
        task=Str(max_len=MAX_NAME, text=True, nullable=True),
        time=FREE,
    ),
    required=("reason",),
    extra="ignore",
)
MANIFEST = Record(
    dict(
        format=Int(0, 1 << 16, nullable=True),
        run_id=Str(max_len=MAX_NAME, text=True, nullable=True),
        created=FREE,
        updated=FREE,
        hosts=Map(HOST_NAME, MANIFEST_HOST, max_items=1 << 20, nullable=True),
        sample=MANIFEST_SAMPLE,
        failed=Map(HOST_NAME, MANIFEST_FAILURE, max_items=1 << 20, nullable=True),
    ),
    extra="ignore",
)

# tracefs_info, as the audit's checks read it (the keys they use; the others are
# ignored, never read).
_OPTION = Str(max_len=MAX_LINE, text=True)
_MOUNT = Record(
    dict(
        mount_point=Str(max_len=MAX_LINE, text=True),
        options=List(_OPTION, max_items=256, nullable=True),
        super_options=List(_OPTION, max_items=256, nullable=True),
    ),
    extra="ignore",
)
_MOUNTS = List(_MOUNT, max_items=4096, nullable=True)
_PATH = Str(max_len=MAX_LINE, text=True, nullable=True)
_OPTIONS = List(_OPTION, max_items=256, nullable=True)
# tracefs.boot (_tracefs_boot.boot_facts): the mount the next boot makes.
_BOOT = Record(
    dict(
        mount_point=_PATH,
        unit=_PATH,
        systemd=Bool(nullable=True),
        source=Str(max_len=32, text=True, nullable=True),
        file=_PATH,
        dropins=List(Str(max_len=MAX_LINE, text=True), max_items=256, nullable=True),
        options_file=_PATH,
        mounted=Bool(nullable=True),
        fstype=Str(max_len=MAX_NAME, text=True, nullable=True),
        configured_options=_OPTIONS,
        options=_OPTIONS,
        gid=Int(0, (1 << 32) - 1, nullable=True),
        mode=Str(max_len=16, text=True, nullable=True),
        agrees=Bool(nullable=True),
        differences=List(
            Record(
                dict(setting=_OPTION, live=_OPTION, boot=_OPTION),
                extra="ignore",
            ),
            max_items=64,
            nullable=True,
        ),
        error=Str(max_len=MAX_LINE, text=True, nullable=True),
    ),
    extra="ignore",
    nullable=True,
)
_NAMES = List(Str(max_len=MAX_LINE, text=True), nullable=True)
TRACEFS_INFO_FACTS = Record(
    dict(
        failed=Bool(nullable=True),
        kernel_release=Str(max_len=MAX_NAME, text=True, nullable=True),
        tracefs=Record(
            dict(
                registered=Bool(nullable=True),
                mounted=Bool(nullable=True),
                path=Str(max_len=MAX_LINE, text=True, nullable=True),
                super_options=List(_OPTION, max_items=256, nullable=True),
                mountpoints=_MOUNTS,
                boot=_BOOT,
            ),
            extra="ignore",
        ),
        debugfs=Record(
            dict(
                registered=Bool(nullable=True),
                mount_allowed=Bool(nullable=True),
                policy=Str(max_len=32, text=True, nullable=True),
                policy_source=Str(max_len=32, text=True, nullable=True),
                mounted=Bool(nullable=True),
                mount_point_exists=Bool(nullable=True),
                mountpoints=_MOUNTS,
            ),
            extra="ignore",
        ),
        lockdown=Str(max_len=32, text=True, nullable=True),
        lockdown_source=Str(max_len=32, text=True, nullable=True),
        usable=Bool(nullable=True),
        instance=Str(max_len=MAX_NAME, text=True, nullable=True),
        instances=_NAMES,
        enabled_events=_NAMES,
        dynamic_events=_NAMES,
        instance_events=Map(Str(max_len=MAX_NAME, text=True), _NAMES, max_items=1 << 14, nullable=True),
        ledger=Record(
            dict(
                error=Str(max_len=MAX_LINE, text=True, nullable=True),
                instances=_NAMES,
                probe_groups=_NAMES,
            ),
            extra="ignore",
            nullable=True,
        ),
    ),
    required=("tracefs", "debugfs"),
    extra="ignore",
)
