# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""trace_persist end to end on a fake root: /etc/kernel/cmdline, /etc/default/grub,
/boot (kernel configs, initrds), the systemd unit directory, and commands (systemctl,
update-grub, bootconfig) answered by a fake that records them. Each backend is
rendered, applied, applied again (no change), removed and torn down; check mode writes
nothing; bad input changes nothing."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest
import yaml

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_apply, _persist_render
from ansible_collections.tracefleet.ftrace.plugins.module_utils._ledger import Ledger
from ansible_collections.tracefleet.ftrace.plugins.module_utils._tracingdir import TracingDir
from ansible_collections.tracefleet.ftrace.plugins.modules import teardown, trace_persist

CMDLINE = "console=ttyS0 root=/dev/vda1 ro\n"
# A GRUB defaults file with comments, other variables, a byte that is not UTF-8 and no
# final newline: all of it must come back byte for byte.
GRUB = (
    b"# If you change this file, run 'update-grub' afterwards.\n"
    b"GRUB_DEFAULT=0\n"
    b"GRUB_TIMEOUT=5\n"
    b"GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n"
    b'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    b'GRUB_CMDLINE_LINUX="console=ttyS0"   # serial \xe9\n'
    b"#GRUB_TERMINAL=console"
)
MAGIC = b"#BOOTCONFIG\n"


class FakeBoot:
    """A fake root and the commands run on it."""

    def __init__(self, root, release="6.1.0-18-amd64"):
        self.root = root
        self.release = release
        self.calls: list[list[str]] = []
        self.failing: dict[str, tuple[int, str]] = {}
        self.tools = {name: "/usr/bin/" + name for name in ("systemctl", "update-grub", "bootconfig")}
        root.mkdir()
        tracing = root.parent / "tracefs"  # the running kernel's, for the names checked against it
        tracing.mkdir()
        (tracing / "available_filter_functions").write_text("do_sys_openat2\nvfs_read\npci_proc_init\n")
        (tracing / "trace_clock").write_text("[local] global mono boot\n")
        self.tracing = tracing

    def path(self, absolute):
        return self.root / absolute.lstrip("/")

    def write(self, absolute, data, mode=0o644):
        path = self.path(absolute)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        os.chmod(path, mode)
        return path

    def read(self, absolute):
        path = self.path(absolute)
        return path.read_bytes().decode("utf-8", "surrogateescape") if path.exists() else None

    def host(self):
        return _persist_apply.Host(
            str(self.root), self.release, self.run, self.tools.get, TracingDir(str(self.tracing))
        )

    def run(self, argv):
        self.calls.append(list(argv))
        name = os.path.basename(argv[0])
        if name in self.failing:
            return self.failing[name][0], "", self.failing[name][1]
        if name == "systemctl" and argv[1] in ("enable", "disable"):
            link = self.path("/etc/systemd/system/sysinit.target.wants/" + argv[2])
            if argv[1] == "enable":
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("../" + argv[2])
            else:
                link.unlink()
        if name == "bootconfig":
            fake_bootconfig(argv[1:])
        return 0, "", ""


def fake_bootconfig(arguments):
    """tools/bootconfig's -a and -d, written from bootconfig.rst's description of the
    format (not from the module's code)."""
    if arguments[0] == "-d":
        initrd = arguments[1]
        data = open(initrd, "rb").read()
        if data.endswith(MAGIC):
            size = struct.unpack("<I", data[-20:-16])[0]
            open(initrd, "wb").write(data[: -(size + 20)])
        return
    tree, initrd = arguments[1], arguments[2]
    fake_bootconfig(["-d", initrd])
    text = open(tree, "rb").read() + b"\0"
    image = open(initrd, "rb").read()
    pad = (-(len(image) + len(text) + 20)) % 4
    footer = struct.pack("<II", len(text) + pad, sum(text) & 0xFFFFFFFF) + MAGIC
    open(initrd, "wb").write(image + text + b"\0" * pad + footer)


@pytest.fixture
def boot(tmp_path, monkeypatch):
    fake = FakeBoot(tmp_path / "root")
    monkeypatch.setattr(_persist_apply, "this_host", fake.host)
    return fake


@pytest.fixture
def run(run_module):
    def run_persist(args):
        return run_module(trace_persist, dict({"name": "boot"}, **args))

    return run_persist


@pytest.fixture
def undo(run_module):
    """The teardown module, on the same ledger."""
    return lambda args=None: run_module(teardown, args or {})


def ledger_kinds(tmp_path):
    with Ledger(str(tmp_path / "ledger.json")) as ledger:
        return [(entry["kind"], entry.get("name"), entry.get("backend")) for entry in ledger.entries]


def tree_of(boot):
    return {
        str(path.relative_to(boot.root)): path.read_bytes() for path in sorted(boot.root.rglob("*")) if path.is_file()
    }


SCHED = {"events": [{"name": "sched/sched_switch"}, {"name": "irq"}], "buffer_size_kb": 8192, "trace_clock": "global"}


def test_cmdline_on_kernel_cmdline_apply_again_remove(run, boot, tmp_path):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    result = run(dict(SCHED, options=["noprint-parent", "sym-addr"], _ansible_diff=True))
    assert result["changed"] and result["reboot_required"] and result["backend"] == "cmdline"
    words = [
        "trace_event=sched:sched_switch,irq:*",
        "trace_buf_size=8192k",
        "trace_clock=global",
        "trace_options=noprint-parent,sym-addr",
    ]
    assert result["cmdline_words"] == words and result["update_command"] is None
    assert boot.read("/etc/kernel/cmdline") == CMDLINE[:-1] + " " + " ".join(words) + "\n"
    assert result["diff"] == [
        {
            "before_header": "/etc/kernel/cmdline",
            "after_header": "/etc/kernel/cmdline",
            "before": CMDLINE,
            "after": boot.read("/etc/kernel/cmdline"),
        }
    ]
    assert ledger_kinds(tmp_path) == [("persist", "boot", "cmdline")]
    assert boot.calls == []

    again = run(dict(SCHED, options=["noprint-parent", "sym-addr"]))
    assert not again["changed"] and not again["reboot_required"] and again["changes"] == []

    gone = run({"state": "absent"})
    assert gone["changed"] and gone["reboot_required"]
    assert boot.read("/etc/kernel/cmdline") == CMDLINE
    assert boot.read("/etc/tracefleet/persist/boot.json") is None and ledger_kinds(tmp_path) == []
    assert not run({"state": "absent"})["changed"]


def test_check_mode_writes_nothing(run, boot, tmp_path):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    before = tree_of(boot)
    for args in (SCHED, dict(SCHED, events=[{"name": "sched/sched_switch", "filter": "prev_pid != 0"}])):
        result = run(dict(args, _ansible_check_mode=True))
        assert result["changed"] and result["reboot_required"] and result["changes"]
    assert tree_of(boot) == before and boot.calls == []
    assert not (tmp_path / "ledger.json").exists() and not boot.path("/etc/tracefleet").exists()


def test_cmdline_probes_and_an_instance_on_a_new_kernel(run, boot):
    boot.release = "6.15.2"
    boot.write("/etc/kernel/cmdline", CMDLINE)
    probe = {"name": "open", "target": "do_sys_openat2", "fetchargs": ["fn=+0($arg2):string", "fd=%di:s32"]}
    result = run({"probes": [probe], "events": [{"name": "tracefleet/open"}, {"name": "sched:sched_switch"}]})
    assert result["cmdline_words"] == [
        "kprobe_event=p:tracefleet/open,do_sys_openat2,fn=+0($arg2):string,fd=%di:s32",
        "trace_event=sched:sched_switch",
    ]
    off = run({"name": "off", "tracing_on": False})
    assert off["backend"] == "cmdline" and off["cmdline_words"] == ["traceoff_after_boot"]
    instance = run({"name": "inst", "instance": "boot", "events": [{"name": "irq/irq_handler_entry"}]})
    assert instance["cmdline_words"] == ["trace_instance=boot,irq:irq_handler_entry"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"events": [{"name": "sched/sched_switch", "filter": "prev_pid != 0"}]}, "events[0].filter"),
        ({"events": [{"name": "sched/sched_switch", "triggers": ["traceoff"]}]}, "events[0].triggers"),
        ({"instance": "boot", "events": [{"name": "irq"}]}, "trace_instance= came with Linux 6.3"),
        ({"tracing_on": False}, "traceoff_after_boot came with Linux 6.15"),
        ({"probes": [{"name": "open", "target": "do_sys_openat2"}]}, "list tracefleet/open in events"),
    ],
)
def test_auto_picks_the_unit_for_what_the_command_line_cannot_say(run, boot, args, reason):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    result = run(dict(args, _ansible_check_mode=True))
    assert result["backend"] == "unit" and reason in result["backend_reason"]
    refused = run(dict(args, backend="cmdline"))
    assert refused["failed"] and reason in refused["msg"] and "nothing was changed" in refused["msg"]
    assert boot.read("/etc/kernel/cmdline") == CMDLINE


def test_grub_value_edited_file_kept_byte_for_byte(run, boot, tmp_path):
    boot.write("/etc/default/grub", GRUB, mode=0o600)
    result = run(dict(SCHED, _ansible_diff=True))
    assert result["bootloader"] == "grub" and result["update_command"] == ["/usr/bin/update-grub"]
    expected = GRUB.replace(
        b'"console=ttyS0"',
        b'"console=ttyS0 trace_event=sched:sched_switch,irq:* trace_buf_size=8192k trace_clock=global"',
    )
    assert boot.path("/etc/default/grub").read_bytes() == expected
    assert os.stat(boot.path("/etc/default/grub")).st_mode & 0o777 == 0o600
    assert boot.calls == [["/usr/bin/update-grub"]]
    assert not run(SCHED)["changed"]
    run({"state": "absent"})
    assert boot.path("/etc/default/grub").read_bytes() == GRUB
    assert boot.calls == [["/usr/bin/update-grub"], ["/usr/bin/update-grub"]]


def test_grub_without_the_variable_gets_one_and_other_updaters(run, boot):
    boot.write("/etc/default/grub", "GRUB_TIMEOUT=5\n")
    boot.tools = {"grub2-mkconfig": "/usr/sbin/grub2-mkconfig", "systemctl": "/usr/bin/systemctl"}
    result = run({"events": [{"name": "irq"}]})
    assert boot.read("/etc/default/grub") == 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="trace_event=irq:*"\n'
    assert result["update_command"] == ["/usr/sbin/grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]


@pytest.mark.parametrize(
    ("grub", "problem"),
    [
        ('GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX b"\n', "on lines 1, 2"),
        ('GRUB_CMDLINE_LINUX="$(cat /etc/extra)"\n', "without shell expansions"),
    ],
)
def test_grub_values_tracefleet_will_not_edit(run, boot, grub, problem):
    boot.write("/etc/default/grub", grub)
    result = run({"events": [{"name": "irq"}], "backend": "cmdline"})
    assert result["failed"] and problem in result["msg"]
    assert boot.read("/etc/default/grub") == grub and boot.calls == []


def test_grub_refuses_what_its_script_parser_would_read(run, boot):
    boot.write("/etc/default/grub", GRUB)
    args = {
        "probes": [{"name": "open", "target": "do_sys_openat2", "fetchargs": ["fn=+0($arg2):string"]}],
        "events": [{"name": "tracefleet/open"}],
    }
    auto = run(dict(args, _ansible_check_mode=True))
    assert auto["backend"] == "unit" and "GRUB's script parser" in auto["backend_reason"]
    refused = run(dict(args, backend="cmdline"))
    assert refused["failed"] and refused["msg"].startswith("name=boot: probes[0]: on the grub command line")


def test_a_failed_update_command_puts_the_file_back(run, boot, tmp_path):
    boot.write("/etc/default/grub", GRUB)
    boot.failing["update-grub"] = (1, "/usr/sbin/grub-probe: error: failed to get canonical path of `overlay'.")
    result = run(SCHED)
    assert result["failed"] and "update-grub failed (exit 1): /usr/sbin/grub-probe: error" in result["msg"]
    assert "the files it needed were put back" in result["msg"]
    assert boot.path("/etc/default/grub").read_bytes() == GRUB
    del boot.failing["update-grub"]
    assert run(SCHED)["changed"]  # the next run tries again


def test_a_foreign_word_is_refused_then_replaced_with_force_and_put_back(undo, run, boot, tmp_path):
    foreign = "console=ttyS0 trace_event=block:* quiet\n"
    boot.write("/etc/kernel/cmdline", foreign)
    refused = run(SCHED)
    assert refused["failed"] and "'trace_event=block:*'" in refused["msg"] and "force=true" in refused["msg"]
    assert boot.read("/etc/kernel/cmdline") == foreign and not boot.path("/etc/tracefleet/persist/boot.json").exists()

    forced = run(dict(SCHED, force=True))
    assert forced["replaced_words"] == ["trace_event=block:*"]
    assert "block:*" not in boot.read("/etc/kernel/cmdline")
    assert not run(dict(SCHED, force=True))["changed"]

    undone = undo()
    assert undone["reboot_required"] and "a reboot completes the undo" in undone["msg"]
    # Back, at the end of the line (where it stood is not recorded).
    assert boot.read("/etc/kernel/cmdline") == "console=ttyS0 quiet trace_event=block:*\n"


def test_a_word_of_another_setup_is_named(run, boot):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    run({"name": "first", "trace_clock": "global"})
    refused = run({"name": "second", "trace_clock": "mono"})
    assert refused["failed"] and "'trace_clock=global' (trace_persist setup first)" in refused["msg"]
    # The same word is no conflict: the second setup does not own it.
    same = run({"name": "third", "trace_clock": "global"})
    assert not same["reboot_required"] and same["changed"]
    run({"name": "third", "state": "absent"})
    assert "trace_clock=global" in boot.read("/etc/kernel/cmdline")


def test_tracing_on_true_refuses_a_foreign_traceoff_after_boot(run, boot):
    boot.release = "6.16.0"
    boot.write("/etc/kernel/cmdline", "console=ttyS0 traceoff_after_boot\n")
    refused = run({"tracing_on": True})
    assert refused["failed"] and "'traceoff_after_boot'" in refused["msg"]


def test_words_go_before_init_arguments(run, boot):
    boot.write("/etc/kernel/cmdline", "root=/dev/vda1 -- single\n")
    run({"trace_clock": "global"})
    assert boot.read("/etc/kernel/cmdline") == "root=/dev/vda1 trace_clock=global -- single\n"


def test_bootloader_choice(run, boot):
    missing = run({"trace_clock": "global", "backend": "cmdline"})
    assert missing["failed"] and "found neither /etc/kernel/cmdline nor /etc/default/grub" in missing["msg"]
    auto = run({"trace_clock": "global", "_ansible_check_mode": True})
    assert auto["backend"] == "unit" and "found neither" in auto["backend_reason"]
    named = run({"trace_clock": "global", "bootloader": "kernel-cmdline"})
    assert named["failed"] and "does not exist, and tracefleet does not create it" in named["msg"]
    boot.write("/etc/default/grub", GRUB)
    boot.write("/etc/kernel/cmdline", CMDLINE)
    assert run({"trace_clock": "global", "_ansible_check_mode": True})["bootloader"] == "kernel-cmdline"
    chosen = run({"trace_clock": "global", "bootloader": "grub", "boot_update_command": ["/bin/true"]})
    assert chosen["cmdline_file"] == "/etc/default/grub" and boot.calls == [["/bin/true"]]


UNIT_ARGS = {
    "instance": "boot",
    "probes": [{"name": "open", "target": "do_sys_openat2", "fetchargs": ["fn=+0($arg2):string"]}],
    "events": [
        {"name": "tracefleet/open", "filter": 'fn ~ "/etc/*"'},
        {"name": "sched/sched_switch", "triggers": ["stacktrace if prev_pid == 1"], "state": "disabled"},
    ],
    "buffer_size_kb": 4096,
    "trace_clock": "mono",
    "options": ["noprint-parent"],
    "tracing_on": True,
}


def test_unit_rendered_enabled_idempotent_and_removed(run, boot, tmp_path):
    boot.path("/run/systemd/system").mkdir(parents=True)
    result = run(dict(UNIT_ARGS, _ansible_diff=True))
    assert result["backend"] == "unit" and result["changed"] and result["reboot_required"]
    unit_path = "/etc/systemd/system/tracefleet-persist-boot.service"
    assert result["unit_path"] == unit_path and result["script_path"] == "/etc/tracefleet/persist/boot.sh"
    assert boot.read(unit_path) == result["unit"] and boot.read(result["script_path"]) == result["script"]
    assert os.stat(boot.path(result["script_path"])).st_mode & 0o777 == 0o755
    assert [diff["after_header"] for diff in result["diff"]] == [result["script_path"], unit_path]
    unit = result["unit"]
    for line in (
        "DefaultDependencies=no",
        "Wants=sys-kernel-tracing.mount",
        "Before=sysinit.target shutdown.target",
        "Type=oneshot",
        "ExecStart=/bin/sh /etc/tracefleet/persist/boot.sh",
        "WantedBy=sysinit.target",
    ):
        assert line in unit.split("\n")
    assert "After=sys-kernel-tracing.mount" in unit
    assert boot.calls == [
        ["/usr/bin/systemctl", "daemon-reload"],
        ["/usr/bin/systemctl", "enable", "tracefleet-persist-boot.service"],
    ]
    assert not run(UNIT_ARGS)["changed"] and len(boot.calls) == 2

    gone = run({"state": "absent"})
    assert gone["reboot_required"]
    assert boot.calls[2:] == [
        ["/usr/bin/systemctl", "disable", "tracefleet-persist-boot.service"],
        ["/usr/bin/systemctl", "daemon-reload"],
    ]
    assert boot.read(unit_path) is None and boot.read("/etc/tracefleet/persist/boot.sh") is None
    assert ledger_kinds(tmp_path) == []


def test_the_script_configures_a_tracefs_tree(boot, monkeypatch, tmp_path):
    """Run the rendered script with sh against a tracefs-like directory."""
    from ansible_collections.tracefleet.ftrace.plugins.module_utils import _persist_spec

    tracefs = tmp_path / "sys-tracing"
    for name in ("trace", "kprobe_events", "error_log"):
        (tracefs / name).parent.mkdir(parents=True, exist_ok=True)
        (tracefs / name).write_text("")
    instance = tracefs / "instances" / "boot"
    for event in ("tracefleet/open", "sched/sched_switch"):
        (instance / "events" / event).mkdir(parents=True)
    (instance / "events" / "sched" / "sched_switch" / "trigger").write_text("traceoff\n")
    (instance / "trace_options").mkdir()  # a write the "kernel" refuses
    (tracefs / "error_log").write_text("[  1.0] trace_options: bad option\n")
    monkeypatch.setattr(_persist_render, "TRACEFS_PLACES", (str(tmp_path / "absent"), str(tracefs)))
    spec = _persist_spec.build(dict(UNIT_ARGS, name="boot"), TracingDir(str(boot.tracing)))
    script = tmp_path / "boot.sh"
    script.write_text(_persist_render.script_text(spec))
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "writing 'noprint-parent' to %s/instances/boot/trace_options failed" % tracefs in done.stderr
    assert "trace_options: bad option" in done.stderr and "1 write(s) failed" in done.stderr
    assert (tracefs / "kprobe_events").read_text() == "p:tracefleet/open do_sys_openat2 fn=+0($arg2):string\n"
    assert (instance / "buffer_size_kb").read_text() == "4096\n"
    assert (instance / "trace_clock").read_text() == "mono\n"
    assert (instance / "events/tracefleet/open/filter").read_text() == 'fn ~ "/etc/*"\n'
    assert (instance / "events/tracefleet/open/enable").read_text() == "1\n"
    assert (instance / "events/sched/sched_switch/trigger").read_text() == "traceoff\nstacktrace if prev_pid == 1\n"
    assert not (instance / "events/sched/sched_switch/enable").exists()
    assert (instance / "tracing_on").read_text() == "1\n"
    # Run again: the probe is there (events/tracefleet/open exists at the top level now).
    (tracefs / "events/tracefleet/open").mkdir(parents=True)
    again = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert "tracefleet/open is already defined; left as it is" in again.stderr
    assert (tracefs / "kprobe_events").read_text().count("\n") == 1


def test_a_failed_enable_puts_the_unit_files_back(run, boot):
    boot.failing["systemctl"] = (1, "Failed to enable unit: Access denied")
    result = run(UNIT_ARGS)
    assert result["failed"] and "Access denied" in result["msg"]
    assert boot.read("/etc/systemd/system/tracefleet-persist-boot.service") is None
    assert boot.read("/etc/tracefleet/persist/boot.sh") is None


def test_a_unit_file_tracefleet_did_not_write_needs_force(run, boot):
    boot.write("/etc/systemd/system/tracefleet-persist-boot.service", "[Unit]\nDescription=mine\n")
    refused = run(UNIT_ARGS)
    assert refused["failed"] and "tracefleet did not write it" in refused["msg"]
    assert run(dict(UNIT_ARGS, force=True))["changed"]


def test_switching_backends_removes_the_old_one(run, boot, tmp_path):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    run(SCHED)
    switched = run(dict(SCHED, events=[{"name": "sched/sched_switch", "filter": "prev_pid != 0"}]))
    assert switched["backend"] == "unit" and boot.read("/etc/kernel/cmdline") == CMDLINE
    assert ledger_kinds(tmp_path) == [("persist", "boot", "unit")]
    back = run(SCHED)
    assert back["backend"] == "cmdline" and boot.read("/etc/systemd/system/tracefleet-persist-boot.service") is None


@pytest.fixture
def binary(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    source = tmp_path / "t.c"
    source.write_text("int target_fn(int x) { return x + 1; }\nint main(void) { return target_fn(1); }\n")
    path = tmp_path / "bin" / "t"
    path.parent.mkdir()
    subprocess.run(["gcc", "-O0", "-o", str(path), str(source)], check=True)
    return str(path)


def test_a_uprobe_is_resolved_now_and_waits_for_its_file_system(run, boot, binary):
    result = run({"probes": [{"name": "fn", "type": "uprobe", "target": binary + ":target_fn"}]})
    assert (
        result["backend"] == "unit"
        and "uprobes cannot be defined on the kernel command line" in result["backend_reason"]
    )
    assert "RequiresMountsFor=%s" % binary in result["unit"].split("\n")
    assert "add uprobe_events 'p:tracefleet/fn %s:0x" % binary in result["script"]


BOOTCONFIG_ARGS = {
    "backend": "bootconfig",
    "probes": [
        {"name": "pci_init", "group": "kprobes", "target": "pci_proc_init"},
        {"name": "pci_done", "group": "kprobes", "type": "kretprobe", "target": "pci_proc_init"},
    ],
    "events": [
        {"name": "kprobes/pci_init", "triggers": ["traceon"]},
        {"name": "kprobes/pci_done", "triggers": ["traceoff"], "state": "disabled"},
        {"name": "sched/sched_switch", "filter": 'prev_comm == "swapper/0"'},
        {"name": "initcall"},
    ],
    "buffer_size_kb": 2048,
    "trace_clock": "global",
    "options": ["sym-addr"],
    "tracing_on": False,
}


def parse_tree(text: str) -> dict:
    """A small reader of the bootconfig syntax the module writes (key = "v", 'v'; key)."""
    tree = {}
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        key, equals, rest = line.partition(" = ")
        values = []
        while equals and rest:
            quote = rest[0]
            assert quote in "\"'", line
            end = rest.index(quote, 1)
            values.append(rest[1:end])
            rest = rest[end + 1 :].lstrip(", ")
        assert key not in tree, "a key defined twice: %s" % key
        tree[key] = values if equals else None
    return tree


@pytest.fixture
def bootconfig_host(boot):
    boot.release = "6.12.0-1-amd64"
    boot.write("/boot/config-6.12.0-1-amd64", "CONFIG_BOOT_CONFIG=y\n# CONFIG_BOOT_CONFIG_FORCE is not set\n")
    for release in ("6.12.0-1-amd64", "6.1.0-18-amd64"):
        boot.write("/boot/vmlinuz-" + release, b"kernel")
        boot.write("/boot/initrd.img-" + release, b"\x07" * 1001)
    boot.write("/etc/kernel/cmdline", CMDLINE)
    return boot


def test_bootconfig_tree_attached_hooked_and_removed(undo, run, bootconfig_host, tmp_path):
    boot = bootconfig_host
    result = run(dict(BOOTCONFIG_ARGS, _ansible_diff=True))
    assert result["backend"] == "bootconfig" and result["changed"], result.get("msg")
    assert parse_tree(result["tree"]) == {
        "ftrace.event.kprobes.pci_init.probes": ["pci_proc_init"],
        "ftrace.event.kprobes.pci_done.probes": ["pci_proc_init%return"],
        "ftrace.buffer_size": ["2048KB"],
        "ftrace.trace_clock": ["global"],
        "ftrace.options": ["sym-addr"],
        "ftrace.events": ["initcall:*"],
        "ftrace.event.kprobes.pci_init.actions": ["traceon"],
        "ftrace.event.kprobes.pci_init.enable": None,
        "ftrace.event.kprobes.pci_done.actions": ["traceoff"],
        "ftrace.event.sched.sched_switch.filter": ['prev_comm == "swapper/0"'],
        "ftrace.event.sched.sched_switch.enable": None,
        "ftrace.tracing_on": ["0"],
    }
    assert result["tree"].startswith("# Managed by tracefleet.ftrace.trace_persist (setup boot)")
    assert result["initrds"] == ["/boot/initrd.img-6.1.0-18-amd64", "/boot/initrd.img-6.12.0-1-amd64"]
    for initrd in result["initrds"]:
        data = boot.path(initrd).read_bytes()
        assert data.endswith(MAGIC) and len(data) % 4 == 0
        assert _persist_apply.bootconfig.read_attached(str(boot.path(initrd))) == result["tree"]
    assert result["cmdline_words"] == ["bootconfig"]
    assert boot.read("/etc/kernel/cmdline") == CMDLINE[:-1] + " bootconfig\n"
    hook = boot.read("/etc/initramfs/post-update.d/tracefleet-persist-boot")
    assert "exec '/usr/bin/bootconfig' -a '/etc/tracefleet/persist/boot.bconf' \"$2\"" in hook
    assert os.stat(boot.path("/etc/initramfs/post-update.d/tracefleet-persist-boot")).st_mode & 0o111
    assert boot.read("/etc/tracefleet/persist/boot.bconf") == result["tree"]

    calls = len(boot.calls)
    assert not run(BOOTCONFIG_ARGS)["changed"] and len(boot.calls) == calls

    # A kernel installed since: update-initramfs ran the hook, which attached the tree.
    boot.write("/boot/vmlinuz-6.13.0-1-amd64", b"kernel")
    newer = boot.write("/boot/initrd.img-6.13.0-1-amd64", b"\x07" * 999)
    fake_bootconfig(["-a", str(boot.path("/etc/tracefleet/persist/boot.bconf")), str(newer)])

    undone = undo()
    assert undone["reboot_required"] and undone["remaining"] == 0
    for initrd in result["initrds"]:
        assert boot.path(initrd).read_bytes() == b"\x07" * 1001
    assert newer.read_bytes() == b"\x07" * 999
    assert boot.read("/etc/kernel/cmdline") == CMDLINE
    assert boot.read("/etc/initramfs/post-update.d/tracefleet-persist-boot") is None
    assert boot.read("/etc/tracefleet/persist/boot.bconf") is None


def test_bootconfig_of_someone_else_needs_force_and_comes_back(run, bootconfig_host):
    boot = bootconfig_host
    theirs = boot.write("/tmp/theirs.bconf", "kernel.tp_printk\n")
    fake_bootconfig(["-a", str(theirs), str(boot.path("/boot/initrd.img-6.1.0-18-amd64"))])
    refused = run(BOOTCONFIG_ARGS)
    assert refused["failed"] and "carries a bootconfig tracefleet did not attach" in refused["msg"]
    assert run(dict(BOOTCONFIG_ARGS, force=True))["changed"]
    run({"state": "absent"})
    initrd = str(boot.path("/boot/initrd.img-6.1.0-18-amd64"))
    assert _persist_apply.bootconfig.read_attached(initrd) == "kernel.tp_printk\n"


@pytest.mark.parametrize(
    ("config", "tools", "message"),
    [
        ("# CONFIG_BOOT_CONFIG is not set\n", None, "was built without CONFIG_BOOT_CONFIG"),
        (None, None, "has no readable build configuration"),
        ("CONFIG_BOOT_CONFIG=y\n", {"systemctl": "/usr/bin/systemctl"}, "the bootconfig tool is not installed"),
    ],
)
def test_bootconfig_needs_the_kernel_and_the_tool(run, boot, config, tools, message):
    if config is not None:
        boot.write("/boot/config-" + boot.release, config)
    if tools is not None:
        boot.tools = tools
    result = run(BOOTCONFIG_ARGS)
    assert result["failed"] and message in result["msg"] and "nothing" not in tree_of(boot)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probes": [{"name": "p", "target": "vfs_read"}], "events": []}, "group='tracefleet'"),
        ({"instance": "my.instance"}, "'my.instance' cannot be a word of a bootconfig key"),
        ({"events": [{"name": "sched/sched_switch", "filter": "a == \"x\" && b == 'y'"}]}, "both kinds of quotes"),
        ({"events": [{"name": "sched/sched_switch", "filter": "pid == 1 || " * 30 + "pid == 2"}]}, "fewer than 256"),
    ],
)
def test_what_bootconfig_cannot_say(run, bootconfig_host, change, message):
    result = run(dict(BOOTCONFIG_ARGS, **change))
    assert result["failed"] and message in result["msg"]
    assert bootconfig_host.read("/etc/kernel/cmdline") == CMDLINE


def test_teardown_of_each_backend(undo, run, boot, bootconfig_host, tmp_path):
    run({"name": "words", "trace_clock": "global"})
    run(dict(UNIT_ARGS, name="unit"))
    run(dict(BOOTCONFIG_ARGS, name="tree"))
    assert sorted(kind[2] for kind in ledger_kinds(tmp_path)) == ["bootconfig", "cmdline", "unit"]
    preview = undo({"_ansible_check_mode": True})
    assert preview["reboot_required"] and len(preview["undone"]) == 3
    assert boot.read("/etc/systemd/system/tracefleet-persist-unit.service") is not None
    undone = undo()
    assert undone["reboot_required"] and undone["remaining"] == 0
    assert all("a reboot completes the change" in text for text in undone["undone"])
    assert boot.read("/etc/kernel/cmdline") == CMDLINE
    assert boot.read("/etc/systemd/system/tracefleet-persist-unit.service") is None
    assert sorted(os.listdir(boot.path("/etc/tracefleet/persist"))) == []
    again = undo()
    assert not again["changed"] and not again["reboot_required"]


def test_teardown_when_the_state_file_is_gone(undo, run, boot, tmp_path):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    run({"trace_clock": "global"})
    boot.path("/etc/tracefleet/persist/boot.json").unlink()
    undone = undo()
    assert undone["notes"] == [
        "boot-time tracing boot had nothing left to remove (no /etc/tracefleet/persist/boot.json)"
    ]
    assert not undone["reboot_required"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"events": [{"name": "sched/sched_switch", "filter": "prev_pid == 1\nirq:*"}]}, "events[0].filter="),
        ({"probes": [{"name": "p", "target": "vfs_read", "fetchargs": ["x=%di#y"]}]}, "'#' at position"),
        ({"name": "my setup", "trace_clock": "global"}, "name='my setup' is not a valid setup name"),
        ({"events": [{"name": "sched/sched switch"}]}, "is not an event name"),
        ({"events": [{"name": "sched/sched_*"}]}, "globs are not kept"),
        ({"probes": [{"name": "p", "type": "fprobe", "target": "vfs_read"}]}, "fprobe"),
        (
            {"instance": "boot", "events": [{"name": "irq"}], "backend": "cmdline"},
            "trace_instance= came with Linux 6.3",
        ),
        ({"options": ["sym-addr", "nosym-addr"]}, "set the same option twice"),
        ({"trace_clock": "tsc"}, "the running kernel offers local, global, mono, boot"),
        ({"buffer_size_kb": 0}, "buffer_size_kb=0"),
        ({"events": [{"name": "irq", "filter": "irq == 1"}]}, "need one event"),
        ({"events": [{"name": "irq/irq_handler_entry", "triggers": ["reboot"]}]}, "does not start with a trigger"),
        ({"probes": [{"name": "p", "target": "no_such_function"}]}, "does not exist"),
        ({}, "nothing to set up at boot"),
    ],
)
def test_bad_input_changes_nothing(run, boot, tmp_path, args, message):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    before = tree_of(boot)
    result = run(args)
    assert result["failed"] and message in result["msg"], result["msg"]
    assert "Traceback" not in result["msg"]
    assert tree_of(boot) == before and boot.calls == [] and not (tmp_path / "ledger.json").exists()


def test_results_are_documented(run, boot):
    boot.write("/etc/kernel/cmdline", CMDLINE)
    documented = set(yaml.safe_load(trace_persist.RETURN))
    common = {"changed", "diff", "invocation", "warnings", "failed", "msg"}
    for args in (SCHED, dict(UNIT_ARGS, name="u"), {"state": "absent"}):
        result = run(dict(args, _ansible_diff=True))
        assert not result.get("failed"), result.get("msg")
        assert set(result) - common == documented
