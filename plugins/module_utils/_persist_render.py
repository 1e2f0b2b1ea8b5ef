# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a checked `Spec` becomes for two of trace_persist's backends: kernel
command-line words (`cmdline_words`) and a systemd unit with the POSIX sh script it
runs (`unit_text`, `script_text`). Pure text; nothing here reads or writes the host.

The command-line words follow Documentation/admin-guide/kernel-parameters.txt:
`trace_event=sys:ev,...`, `trace_instance=NAME,sys:ev,...` (Linux 6.3+),
`trace_buf_size=NNk` (per CPU), `trace_clock=`, `trace_options=a,nob`,
`kprobe_event=p:GRP/EV,SYM,ARG;...` (Documentation/trace/kprobetrace.rst: spaces
become commas, probes are separated by ';'; the kernel enables each at the top level)
and `traceoff_after_boot` (Linux 6.15+) for tracing_on=false.

The script writes each value with `printf '%s\\n'`, single-quoted; list files
(kprobe_events, uprobe_events, trigger) are appended to, never truncated. It logs
each failed write to stderr (the journal) with the file and the value, goes on, and
exits non-zero when any failed.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

from ansible_collections.tracefleet.ftrace.plugins.module_utils._persist_spec import EventSpec, Spec

# The first line of every file this module renders: what marks a file as ours.
MARK = "# Managed by tracefleet.ftrace.trace_persist"
UNIT_PREFIX = "tracefleet-persist-"
# Where the script looks for tracefs: its own mount point, then the debugfs automount
# of kernels (and hosts) without one.
TRACEFS_PLACES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def mark(name: str) -> str:
    return "%s (setup %s); rendered by the module, edit the task instead" % (MARK, name)


def unit_name(name: str) -> str:
    return "%s%s.service" % (UNIT_PREFIX, name)


def probe_word_part(probe) -> str:
    """One probe as kprobe_event= takes it: the definition with commas for spaces."""
    return probe.definition.line().replace(" ", ",")


def cmdline_words(spec: Spec) -> list[str]:
    """The words that make the next boot trace as `spec` says (check `cmdline_obstacles`
    first: what it names is not said here)."""
    words = []
    if spec.probes:
        words.append("kprobe_event=" + ";".join(probe_word_part(probe) for probe in spec.probes))
    probes = spec.probe_names()
    # Probe events are enabled by kprobe_event= itself: trace_event= runs before they exist.
    events = [event.kernel_name for event in spec.events if event.enabled and event.name not in probes]
    if spec.instance is not None:
        words.append("trace_instance=" + ",".join([spec.instance] + events))
    elif events:
        words.append("trace_event=" + ",".join(events))
    if spec.instance is None:
        if spec.buffer_size_kb is not None:
            words.append("trace_buf_size=%dk" % spec.buffer_size_kb)
        if spec.trace_clock is not None:
            words.append("trace_clock=" + spec.trace_clock)
        if spec.options:
            words.append("trace_options=" + ",".join(spec.options))
        if spec.tracing_on is False:
            words.append("traceoff_after_boot")
    return words


def forbidden_words(spec: Spec) -> list[str]:
    """Words that must not be on the command line for `spec` to hold."""
    return ["traceoff_after_boot"] if spec.instance is None and spec.tracing_on else []


def quote(value: str) -> str:
    """`value` as one single-quoted POSIX sh word."""
    return "'" + value.replace("'", "'\\''") + "'"


def _event_dir(prefix: str, event: EventSpec) -> str:
    return prefix + "events/" + event.name


def script_text(spec: Spec) -> str:
    """The script the unit runs: the whole setup, each write checked and logged."""
    name = spec.name
    prefix = "" if spec.instance is None else "instances/%s/" % spec.instance
    lines = [
        "#!/bin/sh",
        mark(name),
        "# Boot-time tracing: run once at boot by %s." % unit_name(name),
        "set -u",
        "failed=0",
        "T=",
        "for place in %s; do" % " ".join(TRACEFS_PLACES),
        '\tif [ -e "$place/trace" ]; then T=$place; break; fi',
        "done",
        'if [ -z "$T" ]; then',
        "\tprintf '%%s: tracefs is mounted at none of %s\\n' %s >&2"
        % (" ".join(TRACEFS_PLACES), quote(unit_name(name))),
        "\texit 1",
        "fi",
        "# what failed, the kernel's own words on it, and count it",
        "fail() {",
        "\tprintf '%%s: %%s\\n' %s \"$1\" >&2" % quote(unit_name(name)),
        '\tif [ -r "$T/error_log" ]; then tail -n 2 "$T/error_log" >&2; fi',
        "\tfailed=$((failed + 1))",
        "}",
        "# put FILE VALUE: one write that sets the file's value",
        "put() {",
        '\tprintf \'%s\\n\' "$2" > "$T/$1" || fail "writing \'$2\' to $T/$1 failed"',
        "}",
        "# add FILE VALUE: one write appended to a list file, which is never truncated",
        "add() {",
        '\tprintf \'%s\\n\' "$2" >> "$T/$1" || fail "appending \'$2\' to $T/$1 failed"',
        "}",
    ]
    for probe in spec.probes:
        definition = probe.definition
        list_file = "uprobe_events" if probe.is_uprobe else "kprobe_events"
        lines += [
            "# %s" % probe.option,
            'if [ -d "$T/events/%s/%s" ]; then' % (definition.group, definition.event),
            "\tprintf '%%s: %s is already defined; left as it is\\n' %s >&2"
            % (probe.event_name, quote(unit_name(name))),
            "else",
            "\tadd %s %s" % (list_file, quote(definition.line())),
            "fi",
        ]
    if spec.instance is not None:
        lines += [
            "# instance",
            'if [ ! -d "$T/%s" ] && ! mkdir "$T/%s"; then' % (prefix.rstrip("/"), prefix.rstrip("/")),
            "\tfail %s" % quote("cannot create instance %s" % spec.instance),
            "fi",
        ]
    if spec.buffer_size_kb is not None:
        lines.append("put %s %s" % (quote(prefix + "buffer_size_kb"), quote(str(spec.buffer_size_kb))))
    if spec.trace_clock is not None:
        lines.append("put %s %s" % (quote(prefix + "trace_clock"), quote(spec.trace_clock)))
    for option in spec.options:
        lines.append("put %s %s" % (quote(prefix + "trace_options"), quote(option)))
    for event in spec.events:
        if event.filter:
            lines.append("put %s %s" % (quote(_event_dir(prefix, event) + "/filter"), quote(event.filter)))
    for event in spec.events:
        for trigger in event.triggers:
            lines.append("add %s %s" % (quote(_event_dir(prefix, event) + "/trigger"), quote(trigger)))
    for event in spec.events:
        if event.enabled:
            lines.append("put %s '1'" % quote(_event_dir(prefix, event) + "/enable"))
    if spec.tracing_on is not None:
        lines.append("put %s %s" % (quote(prefix + "tracing_on"), "'1'" if spec.tracing_on else "'0'"))
    lines += [
        'if [ "$failed" -ne 0 ]; then',
        "\tprintf '%%s: %%d write(s) failed\\n' %s \"$failed\" >&2" % quote(unit_name(name)),
        "\texit 1",
        "fi",
        "exit 0",
    ]
    return "\n".join(lines) + "\n"


def unit_text(spec: Spec, script_path: str) -> str:
    """The oneshot service that runs the script as early as systemd can: once tracefs is
    mounted and the modules listed for boot are loaded (kprobes on module symbols), and
    before sysinit.target, so that most of userspace starts traced."""
    binaries = sorted({probe.binary for probe in spec.probes if probe.binary})
    unit = [
        mark(spec.name),
        "[Unit]",
        "Description=tracefleet boot-time tracing (%s)" % spec.name,
        "DefaultDependencies=no",
        # Wants, not Requires: systemd before 247 has no sys-kernel-tracing.mount, and
        # the script finds the debugfs automount of older kernels by itself.
        "Wants=sys-kernel-tracing.mount",
        "After=sys-kernel-tracing.mount sys-kernel-debug.mount systemd-modules-load.service",
        "Before=sysinit.target shutdown.target",
        "Conflicts=shutdown.target",
    ]
    if binaries:
        # The uprobes' files are on file systems that must be mounted first ('%' would
        # start a systemd specifier).
        unit.append("RequiresMountsFor=%s" % " ".join(path.replace("%", "%%") for path in binaries))
    unit += [
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=/bin/sh %s" % script_path,
        "",
        "[Install]",
        "WantedBy=sysinit.target",
    ]
    return "\n".join(unit) + "\n"
