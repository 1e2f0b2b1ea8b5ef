"""Command line of tracelab."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from . import clock, image, inventory, profiles, qemu, vm
from .errors import LabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracelab",
        description="Throwaway real-kernel VMs (qemu) for tracefleet.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="fetch the kernel and build the boot images")
    build.add_argument("--image", choices=sorted(image.IMAGES) + ["all"], default="all")
    build.add_argument(
        "--kernel", choices=sorted(image.KERNELS) + ["all"], default="all", help="kernel series (default: all)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")

    up = sub.add_parser("up", help="boot a VM and wait until SSH answers")
    up.add_argument("--name", default="lab")
    up.add_argument("--profile", default="default", choices=sorted(profiles.PROFILES))
    up.add_argument(
        "--kernel",
        default=image.DEFAULT_KERNEL,
        choices=sorted(image.KERNELS),
        help="kernel series (default %s)" % image.DEFAULT_KERNEL,
    )
    up.add_argument("--kvm", action="store_true", help="use KVM instead of TCG")
    up.add_argument("--memory", type=int, default=1536, help="MiB (default 1536)")
    up.add_argument(
        "--cpus",
        "--smp",
        dest="cpus",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="online virtual CPUs (default: 2, or fewer host cores)",
    )
    up.add_argument(
        "--max-cpus",
        type=int,
        default=0,
        help="possible CPUs (default: --cpus); more than --cpus leaves the rest offline, as on hosts with "
        "hot-pluggable CPUs",
    )
    up.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for SSH (default 300 under TCG, 120 with KVM)"
    )
    up.add_argument(
        "--disk",
        action="store_true",
        help="a distribution-like host that survives reboots: a persistent root disk (ext4, a copy-on-write "
        "layer of the disk image), systemd as init, the kernel command line from its /etc/kernel/cmdline "
        "(implies --profile systemd)",
    )

    rb = sub.add_parser(
        "reboot",
        help="reboot a VM with a disk through its own boot configuration (the next boot's command line is the "
        "guest's /etc/kernel/cmdline) and wait for SSH",
    )
    rb.add_argument("name")
    rb.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for SSH (default 300)")

    down = sub.add_parser("down", help="stop VMs and remove their state")
    target = down.add_mutually_exclusive_group(required=True)
    target.add_argument("--name")
    target.add_argument("--all", action="store_true")

    pause = sub.add_parser("pause", help="freeze a VM (SIGSTOP): a host that hangs, SSH unanswered, nothing lost")
    pause.add_argument("--name", required=True)
    resume = sub.add_parser("resume", help="let a paused VM run again and wait for SSH")
    resume.add_argument("--name", required=True)

    status = sub.add_parser("status", help="list the VMs")
    status.add_argument("--json", action="store_true")

    inv = sub.add_parser("inventory", help="print a YAML Ansible inventory of the ready VMs")
    inv.add_argument("--name", action="append", default=[], help="only this VM (repeatable); default: every ready VM")
    inv.add_argument(
        "--aliases",
        type=int,
        default=1,
        metavar="K",
        help="list each VM K times, as NAME-1 ... NAME-K, each with its own session and instance "
        "(a fleet of K hosts per VM; default 1: each VM once, under its own name)",
    )
    sub.add_parser("profiles", help="list the VM profiles")

    clk = sub.add_parser("clock", help="how far a VM's wall clock is from the host's (--set: step it there)")
    clk.add_argument("name")
    clk.add_argument("--set", action="store_true", help="set the guest's clock to the host's, then measure again")

    ssh = sub.add_parser("ssh", help="run a command in a VM (or a shell)")
    ssh.add_argument("name")
    ssh.add_argument("remote", nargs=argparse.REMAINDER, help="command and arguments")
    return parser


def _status(as_json: bool) -> int:
    rows: list[dict[str, Any]] = []
    for machine in vm.all_vms():
        if machine.ready():
            state = "ready"
        else:
            state = "booting" if machine.running() else "stopped"
        rows.append(
            {
                "name": machine.name,
                "profile": machine.profile,
                "kernel": machine.kernel,
                "release": machine.release,
                "port": machine.port,
                "pid": machine.pid(),
                "state": state,
                "accel": machine.accel,
                "disk": machine.disk,
                "boots": machine.boots,
                "uptime_s": int(time.time() - machine.started),
                "console": str(machine.console),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no VMs")
        return 0
    line = "%-20s %-16s %-26s %-6s %-8s %-8s %-5s %s"
    print(line % ("NAME", "PROFILE", "KERNEL", "PORT", "PID", "STATE", "ACCEL", "UPTIME"))
    for row in rows:
        kernel = row["release"] or row["kernel"]
        print(
            line
            % (
                row["name"],
                row["profile"],
                kernel,
                row["port"],
                row["pid"] or "-",
                row["state"],
                row["accel"],
                "%ds" % row["uptime_s"],
            )
        )
    return 0


def _running(name: str) -> vm.VM:
    vm.validate_name(name)
    machine = vm.load(name)
    if machine is None or not machine.running():
        raise LabError("no running VM named %s" % name)
    return machine


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            names = sorted(image.IMAGES) if args.image == "all" else [args.image]
            kernels = sorted(image.KERNELS) if args.kernel == "all" else [args.kernel]
            for kernel in kernels:
                for name in names:
                    # `all`: the disk image on the default kernel only (what --disk boots
                    # unless asked otherwise; `up --disk --kernel X` builds the others).
                    if args.image == "all" and name in image.DISK_IMAGES and kernel != image.DEFAULT_KERNEL:
                        continue
                    image.build(name, kernel, force=args.force)
            if os.environ.get("TRACELAB_QEMU") != "system":
                print("tracelab: qemu %s ready" % qemu.fetch().version, flush=True)
        elif args.command == "up":
            timeout = args.timeout or (120.0 if args.kvm else 300.0)
            profile = "systemd" if args.disk and args.profile == "default" else args.profile
            vm.up(args.name, profile, args.kvm, args.memory, args.cpus, timeout, args.max_cpus, args.kernel, args.disk)
        elif args.command == "reboot":
            vm.reboot(args.name, args.timeout)
        elif args.command == "down":
            names = [m.name for m in vm.all_vms()] if args.all else [args.name]
            for name in names:
                if vm.down(name):
                    print("tracelab: %s is down" % name)
                elif not args.all:
                    print("tracelab: no VM named %s" % name)
        elif args.command == "pause":
            vm.pause(args.name)
            print("tracelab: %s is paused" % args.name)
        elif args.command == "resume":
            vm.resume(args.name)
            print("tracelab: %s runs again" % args.name)
        elif args.command == "status":
            return _status(args.json)
        elif args.command == "inventory":
            inventory.check_aliases(args.aliases)
            for name in args.name:
                vm.validate_name(name)
            ready = [m for m in vm.all_vms() if m.ready()]
            missing = sorted(set(args.name) - {m.name for m in ready})
            if missing:
                raise LabError("no ready VM named %s" % ", ".join(missing))
            inventory.write([m for m in ready if not args.name or m.name in args.name], args.aliases)
        elif args.command == "profiles":
            for profile in profiles.PROFILES.values():
                print("%-16s %s" % (profile.name, profile.description))
            print("kernels (up --kernel):")
            for series in image.KERNELS.values():
                print("  %-14s %s" % (series.name, series.description))
        elif args.command == "clock":
            machine = _running(args.name)
            if args.set:
                before, after = clock.sync(machine.ssh_command())
                print("%s: was %s, now %s" % (machine.name, before.describe(), after.describe()))
            else:
                print("%s: %s" % (machine.name, clock.measure(machine.ssh_command()).describe()))
        elif args.command == "ssh":
            machine = _running(args.name)
            remote = args.remote[1:] if args.remote[:1] == ["--"] else args.remote
            cmd = machine.ssh_command(remote)
            if remote:
                cmd.insert(1, "-T")
            os.execvp(cmd[0], cmd)
    except LabError as exc:
        print("tracelab: error: %s" % exc, file=sys.stderr)
        return 1
    return 0
