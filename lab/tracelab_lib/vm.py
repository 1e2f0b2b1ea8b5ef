"""Run lab VMs: one state directory per VM, qemu daemonised, SSH on a loopback port."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import clock, image, paths, profiles, qemu
from .errors import LabError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
FIRST_PORT = 10022
LAST_PORT = 10999


@dataclass
class VM:
    name: str
    profile: str
    port: int
    accel: str
    memory: int
    smp: int
    started: float
    # Possible CPUs (qemu's maxcpus): more than `smp` gives a guest with CPUs that could
    # be hot-plugged but are offline, as many servers have. 0: the same as smp.
    max_cpus: int = 0
    # Kernel series (image.KERNELS); VMs recorded before there was a choice ran 6.1.
    kernel: str = image.DEFAULT_KERNEL
    # Booted from a persistent root disk (up --disk): a copy-on-write layer of the
    # "disk" image's root.img, kept across `reboot`.
    disk: bool = False
    # Boots so far (1 after `up`, one more per `reboot`).
    boots: int = 1

    @property
    def image(self) -> str:
        """The boot image: the profile's, or the disk image for a VM with a disk."""
        return "disk" if self.disk else profiles.get(self.profile).image

    @property
    def release(self) -> str:
        """The kernel release this VM boots (from its image), "" when unknown."""
        return image.release_of(self.image, self.kernel)

    @property
    def root_disk(self) -> Path:
        return self.dir / "root.qcow2"

    @property
    def boot_disk(self) -> Path:
        """The raw disk the guest writes its boot entry to (its "ESP")."""
        return self.dir / "boot.img"

    @property
    def dir(self) -> Path:
        return vm_dir(self.name)

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    def pid(self) -> int | None:
        try:
            return int((self.dir / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        """True when the recorded pid is alive and really is this VM's qemu."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            cmdline = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")
        except OSError:
            return False
        return ("tracelab-" + self.name).encode() in cmdline

    def ssh_options(self) -> list[str]:
        """OpenSSH options shared by `tracelab ssh`, the boot wait and the inventory."""
        return [
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "UserKnownHostsFile=%s" % self.known_hosts,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ]

    def ssh_command(self, command: list[str] | None = None) -> list[str]:
        cmd = (
            ["ssh"]
            + self.ssh_options()
            + [
                "-i",
                str(self.key),
                "-p",
                str(self.port),
                "root@127.0.0.1",
            ]
        )
        return cmd + (command or [])

    def ready(self) -> bool:
        """Running, and SSH answered once (written by `up` after the boot wait)."""
        return self.running() and (self.dir / "ready").exists()

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no console output yet)"


def validate_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise LabError(
            "invalid VM name %r: use 1-40 lowercase letters, digits and '-', starting with a letter or digit" % name
        )
    return name


def vm_dir(name: str) -> Path:
    return paths.state_dir() / "vms" / name


@contextlib.contextmanager
def _state_lock():
    """Serialises port allocation and state changes between concurrent tracelab runs."""
    root = paths.state_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load(name: str) -> VM | None:
    try:
        data = json.loads((vm_dir(name) / "vm.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    # Fields a newer tracelab wrote are left out, so an older checkout still sees the VM.
    known = {field.name for field in fields(VM)}
    try:
        return VM(**{key: value for key, value in data.items() if key in known})
    except TypeError:
        return None


def all_vms() -> list[VM]:
    root = paths.state_dir() / "vms"
    if not root.is_dir():
        return []
    found = (load(entry.name) for entry in sorted(root.iterdir()))
    return [vm for vm in found if vm is not None]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate_port(taken: set[int]) -> int:
    for port in range(FIRST_PORT, LAST_PORT + 1):
        if port not in taken and _port_free(port):
            return port
    raise LabError("no free loopback port in %d-%d" % (FIRST_PORT, LAST_PORT))


BOOT_ENTRY_MAGIC = "tracelab-boot-entry 1"
BOOT_DISK_SIZE = 1 << 20


def write_boot_entry(path: Path, cmdline: str) -> None:
    """A boot disk holding `cmdline` as its entry (the format tracelab-boot-entry writes)."""
    data = ("%s\n%s\n" % (BOOT_ENTRY_MAGIC, cmdline.strip())).encode()
    path.write_bytes(data + b"\0" * (BOOT_DISK_SIZE - len(data)))


def read_boot_entry(path: Path) -> str:
    """The command line the guest chose for its next boot, from its boot disk.

    The guest writes it there (tracelab-boot-entry, at boot and at shutdown) from its
    /etc/kernel/cmdline; a boot disk without a readable entry is an error, as a boot
    loader without an entry has nothing to boot."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise LabError("cannot read the boot disk %s: %s" % (path, exc.strerror)) from None
    lines = head.split(b"\0", 1)[0].decode("utf-8", "replace").split("\n")
    if lines[0] != BOOT_ENTRY_MAGIC or len(lines) < 2 or not lines[1].strip():
        raise LabError("the boot disk %s holds no boot entry (first line %r)" % (path, lines[0][:40]))
    return " ".join(lines[1].split())


def kernel_cmdline(vm: VM, profile: profiles.Profile) -> str:
    """The command line qemu boots the kernel with.

    A VM with a disk boots what its boot entry says (the guest's /etc/kernel/cmdline
    as of its last boot or shutdown); the others the profile's. Both get the VM's name
    and SSH key as tracelab.* words, as a cloud host gets its identity from the
    platform rather than from its disk."""
    pubkey = (vm.key.with_suffix(".pub")).read_text().strip()
    if vm.disk:
        words = read_boot_entry(vm.boot_disk).split()
    else:
        words = ["console=ttyS0", "panic=-1", "loglevel=4", "rdinit=" + profile.init]
        words += list(profile.cmdline)
    words += ["tracelab.hostname=" + vm.name, "tracelab.key=" + base64.b64encode(pubkey.encode()).decode()]
    return " ".join(words)


def qemu_command(vm: VM, profile: profiles.Profile, image_dir: Path, emulator: qemu.Qemu | None = None) -> list[str]:
    if vm.accel == "kvm":
        accel = ["-accel", "kvm", "-cpu", "host"]
    else:
        accel = ["-accel", "tcg", "-cpu", "max"]
    return (
        (emulator or qemu.Qemu(qemu.SYSTEM_BINARY)).command()
        + ["-name", "tracelab-" + vm.name]
        + accel
        + [
            "-m",
            str(vm.memory),
            "-smp",
            "cpus=%d,maxcpus=%d" % (vm.smp, max(vm.smp, vm.max_cpus)),
            "-kernel",
            str(image_dir / "vmlinuz"),
            "-initrd",
            str(image_dir / "initrd.img"),
            "-append",
            kernel_cmdline(vm, profile),
            "-display",
            "none",
            "-vga",
            "none",
            "-monitor",
            "none",
            # The console log of every boot, one after the other (append: a reboot keeps it).
            "-chardev",
            "file,id=console,append=on,path=" + str(vm.console),
            "-serial",
            "chardev:console",
            "-netdev",
            "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22" % vm.port,
            "-device",
            # romfile= : no iPXE option ROM; the kernel is booted directly.
            "virtio-net-pci,netdev=n0,romfile=",
            "-device",
            "virtio-rng-pci",
        ]
        + _disk_options(vm)
        + [
            # A guest that reboots makes qemu exit: `reboot` starts it again with the
            # boot entry the guest left (a VM without a disk has nothing to come back to).
            "-no-reboot",
            "-daemonize",
            "-pidfile",
            str(vm.dir / "qemu.pid"),
        ]
    )


def _disk_options(vm: VM) -> list[str]:
    if not vm.disk:
        return []
    return [
        "-drive",
        "file=%s,if=virtio,format=qcow2,discard=unmap" % vm.root_disk,
        "-drive",
        "file=%s,if=none,id=boot,format=raw" % vm.boot_disk,
        "-device",
        "virtio-blk-pci,drive=boot,serial=tracelab-boot",
    ]


def _make_disks(vm: VM, image_dir: Path) -> None:
    """The VM's copy-on-write layer over the image's root.img, and its boot disk
    holding the image's first command line."""
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(image_dir / "root.img"),
            str(vm.root_disk),
        ],
        check=True,
    )
    write_boot_entry(vm.boot_disk, (image_dir / "cmdline").read_text())


def _stop(vm: VM) -> None:
    # A VM with a disk: its boot loop first, so that it boots nothing again.
    try:
        loop = int((vm.dir / "boot-loop.pid").read_text().strip())
        cmdline = Path("/proc/%d/cmdline" % loop).read_bytes()
    except (OSError, ValueError):
        loop = 0
        cmdline = b""
    if loop and b"tracelab" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(loop, signal.SIGTERM)
    if vm.running():
        pid = vm.pid()
        assert pid is not None
        os.kill(pid, signal.SIGCONT)  # a paused VM acts on SIGTERM only once it runs
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while vm.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        if vm.running():
            os.kill(pid, signal.SIGKILL)


def _wait_for_ssh(vm: VM, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    probe = vm.ssh_command(["true"])
    probe[1:1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    while time.monotonic() < deadline:
        if not vm.running():
            raise LabError("VM %s stopped while booting; console tail:\n%s" % (vm.name, vm.console_tail()))
        result = subprocess.run(
            probe,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        if result.returncode == 0:
            return
        time.sleep(1)
    raise LabError(
        "VM %s: SSH on 127.0.0.1:%d did not answer within %ds; console log %s ends:\n%s"
        % (vm.name, vm.port, timeout, vm.console, vm.console_tail())
    )


def set_clock(vm: VM) -> None:
    """Step the guest's wall clock to the host's (the RTC it booted from has whole seconds)."""
    try:
        before, after = clock.sync(vm.ssh_command())
    except (LabError, OSError) as exc:
        print("tracelab: warning: %s: could not set the guest's clock: %s" % (vm.name, exc), flush=True)
        return
    print("tracelab: %s: guest clock was %s off the host's, now %s" % (vm.name, before.describe(), after.describe()))


def _start(
    name: str,
    profile: profiles.Profile,
    image_dir: Path,
    kvm: bool,
    memory: int,
    smp: int,
    max_cpus: int,
    kernel: str,
    disk: bool = False,
) -> VM:
    """Start qemu for a new VM (called with the state lock held)."""
    if vm_dir(name).exists():
        shutil.rmtree(vm_dir(name))
    taken = {other.port for other in all_vms() if other.running()}
    vm = VM(
        name=name,
        profile=profile.name,
        port=allocate_port(taken),
        accel="kvm" if kvm else "tcg",
        memory=memory,
        smp=smp,
        started=time.time(),
        max_cpus=max_cpus,
        kernel=kernel,
        disk=disk,
    )
    vm.dir.mkdir(parents=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tracelab-" + name, "-f", str(vm.key)], check=True
    )
    if disk:
        _make_disks(vm, image_dir)
    _save(vm)
    _launch(vm, profile, image_dir)
    return vm


def _save(vm: VM) -> None:
    (vm.dir / "vm.json").write_text(json.dumps(asdict(vm), indent=2) + "\n")


def _launch(vm: VM, profile: profiles.Profile, image_dir: Path) -> None:
    emulator = qemu.ensure()
    if vm.disk:
        _supervise(vm, profile, image_dir, emulator)
        return
    result = subprocess.run(
        qemu_command(vm, profile, image_dir, emulator), capture_output=True, text=True, check=False, env=emulator.env()
    )
    if result.returncode != 0:
        raise LabError("qemu failed to start VM %s: %s" % (vm.name, result.stderr.strip()))


# What the kernel prints on its console when it resets the machine for a reboot
# (kernel/reboot.c, at KERN_EMERG: printed whatever the loglevel).
RESTART_MARK = "reboot: Restarting system"


def _supervise(vm: VM, profile: profiles.Profile, image_dir: Path, emulator: qemu.Qemu) -> None:
    """Run a VM with a disk under a boot loop of its own: a detached process that runs
    qemu in the foreground and, each time the guest reboots (the kernel's restart
    message on the console, then qemu's exit at the reset: -no-reboot), boots it again
    with the entry the guest left on its boot disk. Any other exit (power off, `down`,
    a crash) ends the loop. So a reboot from inside the guest (`systemctl reboot`,
    ansible.builtin.reboot) works like `tracelab reboot`. Returns once qemu runs, or
    raises with qemu's complaint."""
    first = _qemu_foreground(qemu_command(vm, profile, image_dir, emulator))
    (vm.dir / "booted-cmdline").write_text(kernel_cmdline(vm, profile) + "\n")
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the detached side, exercised on real VMs
        os.close(ready_r)
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            # Nothing of the caller's stays open here (a pipe held open would keep whoever
            # reads tracelab's output waiting for its end).
            os.closerange(3, ready_w)
            os.closerange(ready_w + 1, 1 << 16)
            _boot_loop(vm, profile, image_dir, emulator, first, ready_w)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.waitpid(child, 0)
    with os.fdopen(ready_r, "rb") as ready:
        answer = ready.read().decode("utf-8", "replace")
    if answer != "ok":
        raise LabError("qemu failed to start VM %s: %s" % (vm.name, answer.strip() or "no answer from its boot loop"))


def _qemu_foreground(cmd: list[str]) -> list[str]:
    """The qemu command of a VM with a disk: run in the foreground by its boot loop."""
    return [arg for arg in cmd if arg != "-daemonize"]


def _boot_loop(  # pragma: no cover - runs detached, exercised on real VMs
    vm: VM, profile: profiles.Profile, image_dir: Path, emulator: qemu.Qemu, cmd: list[str], ready_w: int
) -> None:
    (vm.dir / "boot-loop.pid").write_text("%d\n" % os.getpid())
    while True:
        offset = vm.console.stat().st_size if vm.console.exists() else 0
        with open(vm.dir / "qemu.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=emulator.env())
        if ready_w >= 0:
            deadline = time.monotonic() + 30
            while proc.poll() is None and vm.pid() != proc.pid and time.monotonic() < deadline:
                time.sleep(0.1)
            answer = "ok" if proc.poll() is None and vm.pid() == proc.pid else _tail(vm.dir / "qemu.log")
            os.write(ready_w, answer.encode())
            os.close(ready_w)
            ready_w = -1
            if answer != "ok":
                proc.kill()
                proc.wait()
                return
        proc.wait()
        if RESTART_MARK not in _console_since(vm, offset):
            return  # powered off, stopped by `down`, or crashed: no boot loader runs again
        with _state_lock():
            current = load(vm.name)
            if current is None or not vm.dir.exists():
                return
            vm = current
            vm.boots += 1
            vm.started = time.time()
            _save(vm)
            try:
                cmd = _qemu_foreground(qemu_command(vm, profile, image_dir, emulator))
            except LabError as exc:
                with open(vm.console, "a") as console:
                    console.write("\ntracelab: no boot: %s\n" % exc)
                return
            (vm.dir / "booted-cmdline").write_text(kernel_cmdline(vm, profile) + "\n")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def _console_since(vm: VM, offset: int) -> str:
    try:
        with open(vm.console, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def up(
    name: str,
    profile_name: str,
    kvm: bool,
    memory: int,
    smp: int,
    timeout: float,
    max_cpus: int = 0,
    kernel: str = image.DEFAULT_KERNEL,
    disk: bool = False,
) -> VM:
    validate_name(name)
    image.kernel_series(kernel)
    if smp < 1 or (max_cpus and max_cpus < smp):
        raise LabError("--cpus must be at least 1 and --max-cpus (%d) at least --cpus (%d)" % (max_cpus, smp))
    try:
        profile = profiles.get(profile_name)
    except ValueError as exc:
        raise LabError(str(exc)) from None
    if kvm and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise LabError("--kvm needs read/write access to /dev/kvm")
    if disk and profile.image != "systemd":
        raise LabError("--disk boots a distribution-like host with systemd: use it with --profile systemd")
    image_dir = image.ensure("disk" if disk else profile.image, kernel)

    with _state_lock():
        existing = load(name)
        if existing is not None and existing.running():
            if (existing.profile, existing.kernel, existing.disk) != (profile.name, kernel, disk):
                raise LabError(
                    "VM %s is already running with profile %s on kernel %s%s"
                    % (name, existing.profile, existing.kernel, " with a disk" if existing.disk else "")
                )
            if existing.ready():
                print("tracelab: %s is already up (port %d)" % (name, existing.port))
                return existing
            vm = existing  # an earlier `up` was interrupted while waiting: wait again
        else:
            vm = _start(name, profile, image_dir, kvm, memory, smp, max_cpus, kernel, disk)

    print(
        "tracelab: booting %s (profile %s, kernel %s%s, %s, port %d)..."
        % (name, profile.name, kernel, ", persistent disk" if disk else "", vm.accel, vm.port),
        flush=True,
    )
    _booted(vm, timeout)
    return vm


def _booted(vm: VM, timeout: float) -> None:
    """Wait for SSH (stopping qemu if it never answers), set the clock, mark the VM ready."""
    started = time.monotonic()
    try:
        _wait_for_ssh(vm, timeout)
    except BaseException:
        _stop(vm)
        raise
    booted = time.monotonic() - started
    set_clock(vm)
    (vm.dir / "ready").write_text("%d\n" % int(time.time()))
    print("tracelab: %s is up after %.0fs (lab/tracelab ssh %s)" % (vm.name, booted, vm.name), flush=True)


def reboot(name: str, timeout: float = 300.0) -> VM:
    """Reboot VM `name` (it must have a disk) through the guest's own boot configuration.

    The guest reboots the way it always does (`systemctl reboot`): on the way down it
    writes its /etc/kernel/cmdline to its boot disk; qemu exits at the reset and the
    VM's boot loop boots the kernel and initramfs again with that entry's command line,
    on the same disks, as a boot loader would. Waits for that boot, then for SSH, and
    sets the clock."""
    vm = _running_vm(name)
    if not vm.disk:
        raise LabError("VM %s has no disk: it forgets everything when it stops (start one with up --disk)" % name)
    with contextlib.suppress(FileNotFoundError):
        (vm.dir / "ready").unlink()
    before = vm.boots
    # The session ends when the guest goes down: its exit status is not the reboot's.
    subprocess.run(
        vm.ssh_command(["systemctl", "reboot"]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    deadline = time.monotonic() + min(timeout, 180.0)
    while time.monotonic() < deadline:
        current = load(name)
        if current is not None and current.boots > before and current.running():
            vm = current
            break
        time.sleep(0.5)
    else:
        raise LabError(
            "VM %s did not boot again within 180s after systemctl reboot; console tail:\n%s" % (name, vm.console_tail())
        )
    try:
        line = (vm.dir / "booted-cmdline").read_text().strip()
    except OSError:
        line = "?"
    print("tracelab: booting %s (boot %d): %s" % (name, vm.boots, _shown(line)), flush=True)
    _booted(vm, timeout)
    return vm


def _shown(cmdline: str) -> str:
    """A command line as printed: the SSH key's word shortened."""
    return " ".join(w if not w.startswith("tracelab.key=") else "tracelab.key=..." for w in cmdline.split())


def pause(name: str) -> VM:
    """Freeze VM `name` as a host that hangs does: its qemu is stopped (SIGSTOP), so the
    guest runs nothing and answers nothing (SSH sessions to it stall until their
    keepalives give up), and nothing in it is lost."""
    vm = _running_vm(name)
    os.kill(vm.pid(), signal.SIGSTOP)  # type: ignore[arg-type]
    (vm.dir / "paused").write_text("%d\n" % int(time.time()))
    return vm


def resume(name: str, timeout: float = 120.0) -> VM:
    """Let a paused VM run again, wait until SSH answers, and step its clock back to
    the host's (a guest that was frozen may have fallen behind)."""
    vm = _running_vm(name)
    os.kill(vm.pid(), signal.SIGCONT)  # type: ignore[arg-type]
    with contextlib.suppress(FileNotFoundError):
        (vm.dir / "paused").unlink()
    _wait_for_ssh(vm, timeout)
    set_clock(vm)
    return vm


def _running_vm(name: str) -> VM:
    validate_name(name)
    vm = load(name)
    if vm is None or not vm.running():
        raise LabError("no running VM named %s" % name)
    return vm


def down(name: str) -> bool:
    """Stop VM `name` and remove its state; False when there was no such VM."""
    validate_name(name)
    with _state_lock():
        vm = load(name)
        if vm is None and not vm_dir(name).exists():
            return False
        if vm is not None:
            _stop(vm)
        shutil.rmtree(vm_dir(name), ignore_errors=True)
    return True
