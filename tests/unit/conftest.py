"""Make the collection and the lab importable for plain pytest runs.

ansible resolves ``ansible_collections.tracefleet.ftrace`` through a directory named
``ansible_collections/tracefleet/ftrace``; build/collections holds a symlink of that
name to this checkout (``make collection`` creates it, and so does this file).
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "tracefleet", "ftrace")

if os.path.basename(os.path.dirname(os.path.dirname(ROOT))) == "ansible_collections":
    # Already inside an ansible_collections tree (for example under ansible-test).
    COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(ROOT)))
elif not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.join("..", "..", "..", ".."), LINK)

for path in (COLLECTIONS, os.path.join(ROOT, "lab"), os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)


import pytest  # noqa: E402  (after the sys.path set-up above)

IDLE_OPTIONS = """print-parent
nosym-offset
nosym-addr
noverbose
noraw
nohex
nobin
noblock
trace_printk
annotate
nouserstacktrace
nosym-userobj
noprintk-msg-only
context-info
nolatency-format
record-cmd
norecord-tgid
overwrite
nodisable_on_free
irq-info
markers
noevent-fork
nopause-on-trace
hash-ptr
function-trace
nofunction-fork
nodisplay-graph
nostacktrace
"""

# An idle top-level tracing directory as the lab's 6.1 kernel shows it after boot.
IDLE_TRACEFS = {
    "trace": "",
    "available_tracers": "blk mmiotrace function_graph function nop\n",
    "current_tracer": "nop\n",
    "tracing_on": "1\n",
    "buffer_size_kb": "7 (expanded: 1408)\n",
    "trace_clock": "local [global] counter uptime perf mono mono_raw boot tai x86-tsc\n",
    "trace_options": IDLE_OPTIONS,
    "tracing_cpumask": "3\n",
    "set_event": "",
    "set_ftrace_filter": "#### all functions enabled ####\n",
    "set_ftrace_notrace": "",
    "set_graph_function": "#### all functions enabled ####\n",
    "set_graph_notrace": "#### no functions disabled ####\n",
    "set_ftrace_pid": "no pid\n",
    "set_event_pid": "",
    "error_log": "",
    "dynamic_events": "",
    "events/sched/sched_switch/filter": "none\n",
    "events/sched/sched_switch/trigger": "# Available triggers:\n# traceon traceoff snapshot stacktrace enable_event disable_event\n",
    "events/sched/sched_switch/enable": "0\n",
}


class FakeHost:
    """A fake /proc, /sys and /boot plus a tracefs tree, all under tmp_path."""

    def __init__(self, root):
        self.root = root
        self.tracing = root / "tracing"
        self.write("proc/filesystems", "nodev\tsysfs\nnodev\ttracefs\nnodev\tdebugfs\n")
        self.write("proc/cmdline", "console=ttyS0 rdinit=/init\n")
        self.write("sys/devices/system/cpu/possible", "0-1\n")
        self.write("sys/devices/system/clocksource/clocksource0/current_clocksource", "hpet\n")
        (root / "sys/kernel/debug").mkdir(parents=True)
        self.mountinfo("")

    def write(self, relative, text):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def mountinfo(self, text):
        self.write("proc/self/mountinfo", text)

    def mount_tracefs(self, files=None, options="rw,nosuid,nodev,noexec,relatime"):
        """Mount the fake tracefs tree (in the fake mount table) with `files`."""
        self.mountinfo("37 21 0:12 / %s %s - tracefs tracefs rw\n" % (self.tracing, options))
        self.tracing.mkdir(exist_ok=True)
        for name, text in (IDLE_TRACEFS if files is None else files).items():
            path = self.tracing / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        (self.tracing / "instances").mkdir(exist_ok=True)

    def tracefs_write(self, name, text):
        (self.tracing / name).write_text(text)

    def tracing_dir(self, instance=None, control=None):
        """The fake tracefs (mount it first) as the domain layer sees it: a TracingDir."""
        from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir

        return TracingDir(str(self.tracing), instance, control)


@pytest.fixture
def fake_host(tmp_path):
    return FakeHost(tmp_path)
