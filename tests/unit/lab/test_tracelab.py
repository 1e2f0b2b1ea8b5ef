"""The lab CLI's pure parts: names, inventory, kernel command line, ports, image inputs."""

from __future__ import annotations

import base64
import re
import socket

import pytest
import yaml

from tracelab_lib import image, inventory, profiles, vm
from tracelab_lib.errors import LabError


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACELAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TRACELAB_CACHE_DIR", str(tmp_path / "cache"))


def make_vm(name="lab", profile="default", port=10022) -> vm.VM:
    machine = vm.VM(name=name, profile=profile, port=port, accel="tcg", memory=1536, smp=2, started=0.0)
    machine.dir.mkdir(parents=True)
    machine.key.write_text("private")
    machine.key.with_suffix(".pub").write_text("ssh-ed25519 AAAAC3Nza tracelab-%s\n" % name)
    return machine


@pytest.mark.parametrize("name", ["lab", "mol-default", "a", "x" * 40, "0vm"])
def test_valid_names(name):
    assert vm.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", "Upper", "a/b", "..", "a b", "x" * 41, "a_b", "lab\n", "lab\nx"])
def test_invalid_names(name):
    with pytest.raises(LabError, match="invalid VM name"):
        vm.validate_name(name)


def test_profiles_and_groups_are_valid_ansible_names():
    for profile in profiles.PROFILES.values():
        assert profile.group.isidentifier()
    assert profiles.get("debugfs-off").cmdline == ("debugfs=off",)
    assert profiles.get("lockdown").cmdline == ("lockdown=confidentiality",)
    assert profiles.get("debugfs-nomount").cmdline == ("debugfs=no-mount",)
    assert profiles.get("systemd").init == "/sbin/init"
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.get("nope")


def test_inventory_is_yaml_with_groups_and_connection_vars():
    vms = [make_vm("one", "default", 10022), make_vm("two", "debugfs-off", 10023)]
    data = yaml.safe_load(inventory.render(vms))
    children = data["all"]["children"]
    assert set(children["tracelab"]["hosts"]) == {"one", "two"}
    assert set(children["tracelab_default"]["hosts"]) == {"one"}
    assert set(children["tracelab_debugfs_off"]["hosts"]) == {"two"}
    host = children["tracelab"]["hosts"]["two"]
    assert host["ansible_host"] == "127.0.0.1"
    assert host["ansible_port"] == 10023
    assert host["ansible_user"] == "root"
    assert host["ansible_ssh_pipelining"] is True
    assert host["ansible_ssh_private_key_file"].endswith("/vms/two/id_ed25519")
    assert "UserKnownHostsFile=" in host["ansible_ssh_common_args"]
    assert host["tracelab_profile"] == "debugfs-off"


def test_empty_inventory_is_valid():
    data = yaml.safe_load(inventory.render([]))
    assert data["all"]["children"]["tracelab"]["hosts"] == {}


def test_kernel_cmdline_carries_profile_and_key():
    machine = make_vm("k", "lockdown")
    line = vm.kernel_cmdline(machine, profiles.get("lockdown"))
    words = line.split()
    assert "lockdown=confidentiality" in words
    assert "rdinit=/init" in words
    assert "tracelab.hostname=k" in words
    key = [w for w in words if w.startswith("tracelab.key=")][0].split("=", 1)[1]
    assert base64.b64decode(key).decode() == "ssh-ed25519 AAAAC3Nza tracelab-k"
    assert len(line) < 2048  # x86 COMMAND_LINE_SIZE


def test_qemu_command_accelerators():
    machine = make_vm("q")
    tcg = vm.qemu_command(machine, profiles.get("default"), machine.dir)
    assert tcg[tcg.index("-accel") + 1] == "tcg" and "max" in tcg
    assert "hostfwd=tcp:127.0.0.1:10022-:22" in tcg[tcg.index("-netdev") + 1]
    assert "tracelab-q" in tcg
    machine.accel = "kvm"
    kvm = vm.qemu_command(machine, profiles.get("default"), machine.dir)
    assert kvm[kvm.index("-accel") + 1] == "kvm" and "host" in kvm


def test_qemu_command_cpus_online_and_possible():
    machine = make_vm("c")
    assert vm.qemu_command(machine, profiles.get("default"), machine.dir)[machine_smp_index(machine)] == (
        "cpus=2,maxcpus=2"
    )
    machine.max_cpus = 4
    assert vm.qemu_command(machine, profiles.get("default"), machine.dir)[machine_smp_index(machine)] == (
        "cpus=2,maxcpus=4"
    )


def machine_smp_index(machine: vm.VM) -> int:
    return vm.qemu_command(machine, profiles.get("default"), machine.dir).index("-smp") + 1


def test_max_cpus_below_cpus_is_refused():
    with pytest.raises(LabError, match="--max-cpus"):
        vm.up("c", "default", False, 512, 4, 1.0, max_cpus=2)


def test_port_allocation_skips_taken_and_busy_ports():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy_port = busy.getsockname()[1]
        original = (vm.FIRST_PORT, vm.LAST_PORT)
        try:
            vm.FIRST_PORT, vm.LAST_PORT = busy_port, busy_port + 50
            port = vm.allocate_port({busy_port + 1})
        finally:
            vm.FIRST_PORT, vm.LAST_PORT = original
    assert port not in (busy_port, busy_port + 1)


def test_state_without_process_is_not_running():
    machine = make_vm("ghost")
    (machine.dir / "qemu.pid").write_text("999999999\n")
    assert not machine.running() and not machine.ready()
    assert vm.down("ghost") is True
    assert not machine.dir.exists()
    assert vm.down("ghost") is False


def test_image_inputs_follow_guest_files(tmp_path, monkeypatch):
    guest = tmp_path / "guest"
    guest.mkdir()
    for name in ("init", "tracelab-setup"):
        (guest / name).write_text("#!/bin/sh\n")
    monkeypatch.setattr(image, "GUEST_DIR", guest)
    spec = image.IMAGES["minimal"]
    kernel = tmp_path / "linux-image-6.1.0-56-cloud-amd64_6.1.192-2"
    before = image._inputs(spec, "bookworm", kernel)
    assert before == image._inputs(spec, "bookworm", kernel)
    (guest / "init").write_text("#!/bin/sh\necho changed\n")
    assert image._inputs(spec, "bookworm", kernel) != before
    assert image._inputs(spec, "trixie", kernel)["suite"] == "trixie"


def test_image_package_lists():
    for spec in image.IMAGES.values():
        for package in ("python3", "openssh-server", "kmod", "iproute2", "procps", "trace-cmd", "bash", "coreutils"):
            assert package in spec.packages
    assert "systemd" in image.IMAGES["systemd"].packages


def test_kernel_series_and_groups():
    assert image.DEFAULT_KERNEL == "6.1"
    assert set(image.KERNELS) == {"6.1", "6.12"}
    assert image.kernel_series("6.12").group == "tracelab_k6_12"
    assert image.kernel_series("6.1").backports is False and image.kernel_series("6.12").backports is True
    with pytest.raises(LabError, match="unknown kernel"):
        image.kernel_series("5.10")


def test_kernel_release_drops_unsigned():
    assert image.kernel_release("linux-image-6.1.0-28-cloud-amd64") == "6.1.0-28-cloud-amd64"
    assert image.kernel_release("linux-image-6.12.95+deb12-cloud-amd64-unsigned") == "6.12.95+deb12-cloud-amd64"


def test_image_directories_are_per_kernel():
    assert image.image_dir("minimal", "6.1") != image.image_dir("minimal", "6.12")
    assert image.image_dir("minimal").name == "minimal-k6.1"
    assert image.release_of("minimal", "6.12") == ""
    built = image.image_dir("minimal", "6.12")
    built.mkdir(parents=True)
    (built / "release").write_text("6.12.95+deb12-cloud-amd64\n")
    assert image.release_of("minimal", "6.12") == "6.12.95+deb12-cloud-amd64"


@pytest.mark.parametrize(
    ("series", "package", "ok"),
    [
        ("6.1", "linux-image-6.1.0-28-cloud-amd64", True),
        ("6.12", "linux-image-6.12.95+deb12-cloud-amd64-unsigned", True),
        ("6.1", "linux-image-6.12.95+deb12-cloud-amd64-unsigned", False),
        ("6.12", "linux-image-6.1.0-28-cloud-amd64", False),
    ],
)
def test_kernel_package_must_match_its_series(monkeypatch, series, package, ok):
    monkeypatch.setenv("TRACELAB_KERNEL_PACKAGE_" + series.replace(".", "_"), package)

    class Shown:
        stdout = "Package: %s\nVersion: 1.2-3\n" % package

    monkeypatch.setattr(image, "_run", lambda cmd, **kwargs: Shown())
    if ok:
        assert image.resolve_kernel_package(image.kernel_series(series), []) == (package, "1.2-3")
    else:
        with pytest.raises(LabError, match="not of series"):
            image.resolve_kernel_package(image.kernel_series(series), [])


def test_backports_metapackage_resolves_to_unsigned(monkeypatch):
    calls = []

    class Out:
        def __init__(self, text):
            self.stdout = text

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        if "depends" in cmd:
            return Out("linux-image-cloud-amd64\n  Depends: linux-image-6.12.95+deb12-cloud-amd64\n")
        return Out("Version: 6.12.95-1~bpo12+1\n")

    monkeypatch.setattr(image, "_run", fake_run)
    options = ["-o", "Dir::State::Lists=/x"]
    package, version = image.resolve_kernel_package(image.kernel_series("6.12"), options)
    assert package == "linux-image-6.12.95+deb12-cloud-amd64-unsigned" and version == "6.12.95-1~bpo12+1"
    assert all(cmd[1:3] == options[:2] for cmd in calls)


def test_inventory_groups_by_kernel_series():
    old = make_vm("old", "default", 10022)
    new = make_vm("new", "debugfs-nomount", 10023)
    new.kernel = "6.12"
    data = yaml.safe_load(inventory.render([old, new]))
    children = data["all"]["children"]
    assert set(children["tracelab_k6_1"]["hosts"]) == {"old"}
    assert set(children["tracelab_k6_12"]["hosts"]) == {"new"}
    assert set(children["tracelab_debugfs_nomount"]["hosts"]) == {"new"}
    assert children["tracelab"]["hosts"]["new"]["tracelab_kernel"] == "6.12"
    assert children["tracelab"]["hosts"]["old"]["tracelab_kernel"] == "6.1"


def test_vm_state_without_kernel_is_the_default_series():
    machine = make_vm("legacy")
    record = {k: v for k, v in vm.asdict(machine).items() if k != "kernel"}
    (machine.dir / "vm.json").write_text(__import__("json").dumps(record))
    assert vm.load("legacy").kernel == "6.1"


def test_unknown_kernel_is_refused_before_anything_starts():
    with pytest.raises(LabError, match="unknown kernel"):
        vm.up("k", "default", False, 512, 1, 1.0, kernel="4.19")


def test_qemu_command_uses_the_lab_qemu_and_its_firmware():
    from tracelab_lib import qemu

    machine = make_vm("e")
    emulator = qemu.Qemu("/cache/qemu/v/root/usr/bin/qemu-system-x86_64", ("/a", "/b"), "/mods", "v")
    cmd = vm.qemu_command(machine, profiles.get("default"), machine.dir, emulator)
    assert cmd[:5] == ["/cache/qemu/v/root/usr/bin/qemu-system-x86_64", "-L", "/a", "-L", "/b"]
    assert "virtio-net-pci,netdev=n0,romfile=" in cmd
    assert emulator.env()["QEMU_MODULE_DIR"] == "/mods"
    assert vm.qemu_command(machine, profiles.get("default"), machine.dir)[0] == "qemu-system-x86_64"


def test_qemu_system_choice_and_cache(monkeypatch, tmp_path):
    from tracelab_lib import qemu

    monkeypatch.setenv("TRACELAB_QEMU", "system")
    monkeypatch.setattr(qemu.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match="not installed"):
        qemu.ensure()
    monkeypatch.delenv("TRACELAB_QEMU")
    cached = qemu._root() / "1_10.0.2"
    cached.mkdir(parents=True)
    (cached / "ready").write_text("1:10.0.2\n")
    found = qemu.ensure()
    assert found.binary == str(cached / "root/usr/bin/qemu-system-x86_64") and found.version == "1_10.0.2"


def test_vm_state_from_a_newer_tracelab_still_loads():
    machine = make_vm("newer")
    record = dict(vm.asdict(machine), future_field=1)
    (machine.dir / "vm.json").write_text(__import__("json").dumps(record))
    assert vm.load("newer").name == "newer"
    (machine.dir / "vm.json").write_text("[1, 2]")
    assert vm.load("newer") is None


def test_inventory_with_one_alias_is_the_plain_inventory():
    vms = [make_vm("one", "default", 10022), make_vm("two", "debugfs-off", 10023)]
    plain = inventory.render(vms)
    assert inventory.render(vms, 1) == plain
    hosts = yaml.safe_load(plain)["all"]["children"]["tracelab"]["hosts"]
    assert set(hosts) == {"one", "two"}
    for variables in hosts.values():
        assert not {"tracelab_vm", "tracelab_alias", "rollout_machine", "session_name", "session_instance"} & set(
            variables
        )


def test_inventory_aliases_make_a_fleet_of_each_vm():
    one, two = make_vm("one", "default", 10022), make_vm("two", "debugfs-off", 10023)
    two.kernel = "6.12"
    data = yaml.safe_load(inventory.render([one, two], 3))
    children = data["all"]["children"]
    hosts = children["tracelab"]["hosts"]
    assert list(hosts) == ["one-1", "one-2", "one-3", "two-1", "two-2", "two-3"]
    assert list(children["tracelab_default"]["hosts"]) == ["one-1", "one-2", "one-3"]
    assert list(children["tracelab_debugfs_off"]["hosts"]) == ["two-1", "two-2", "two-3"]
    assert list(children["tracelab_k6_12"]["hosts"]) == ["two-1", "two-2", "two-3"]
    assert list(children["tracelab_k6_1"]["hosts"]) == ["one-1", "one-2", "one-3"]
    for name, variables in hosts.items():
        machine, alias = name.rsplit("-", 1)
        source = one if machine == "one" else two
        # The VM's own connection: every alias reaches the same VM.
        assert variables["ansible_port"] == source.port
        assert variables["ansible_ssh_private_key_file"] == str(source.key)
        assert variables["tracelab_vm"] == machine == variables["rollout_machine"]
        assert variables["tracelab_alias"] == int(alias)
        assert variables["tracelab_profile"] == source.profile
    # Aliases of one VM share its kernel and its ledger: each has its own session and instance.
    for machine in ("one", "two"):
        mine = [v for v in hosts.values() if v["tracelab_vm"] == machine]
        assert len({v["session_name"] for v in mine}) == 3
        assert len({v["session_instance"] for v in mine}) == 3
    assert hosts["two-2"]["session_name"] == "fleet-2" == hosts["two-2"]["session_instance"]


@pytest.mark.parametrize("aliases", [2, 64, inventory.MAX_ALIASES])
def test_alias_names_are_valid_inventory_and_instance_names(aliases):
    from ansible_collections.tracefleet.ftrace.plugins.module_utils._instance import validate_name

    longest = make_vm("x" * 40)
    listed = inventory.hosts([longest, make_vm("x" * 39 + "1", port=10023)], aliases)
    names = [name for name, _vm, _vars in listed]
    assert len(set(names)) == len(names) == 2 * aliases
    for name, _vm, variables in listed:
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name)
        assert validate_name(variables["session_instance"]) == variables["session_instance"]
        assert validate_name(variables["session_name"], "session_name")


def test_alias_names_of_different_vms_never_meet():
    # "web" alias 11 and "web-1" alias 1 would both be "web-11" / "web-1-1" only if the
    # part after the last '-' were not the alias number.
    listed = inventory.hosts([make_vm("web"), make_vm("web-1", port=10023), make_vm("web-11", port=10024)], 12)
    names = [name for name, _vm, _vars in listed]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("aliases", [0, -1, inventory.MAX_ALIASES + 1, True, "2"])
def test_bad_alias_counts_are_refused(aliases):
    with pytest.raises(LabError, match="--aliases"):
        inventory.render([make_vm()], aliases)


def test_inventory_cli_refuses_bad_aliases_before_looking_at_vms(capsys):
    from tracelab_lib import cli

    assert cli.main(["inventory", "--aliases", "0"]) != 0
    assert "--aliases 0" in capsys.readouterr().err


def test_disk_vm_boots_the_entry_the_guest_left():
    machine = make_vm("d", "systemd")
    machine.disk = True
    vm.write_boot_entry(machine.boot_disk, image.DISK_CMDLINE + "\n")
    words = vm.kernel_cmdline(machine, profiles.get("systemd")).split()
    assert words[: len(image.DISK_CMDLINE.split())] == image.DISK_CMDLINE.split()
    assert "rdinit=/sbin/init" not in words  # the initramfs-tools initrd finds the root disk itself
    assert "tracelab.hostname=d" in words
    # What the guest's tracelab-boot-entry writes: the magic line, the words, NUL padding.
    machine.boot_disk.write_bytes(
        b"tracelab-boot-entry 1\nroot=LABEL=x rw  trace_event=sched:sched_switch\n" + b"\0" * 4000
    )
    words = vm.kernel_cmdline(machine, profiles.get("systemd")).split()
    assert words[:3] == ["root=LABEL=x", "rw", "trace_event=sched:sched_switch"]
    cmd = vm.qemu_command(machine, profiles.get("systemd"), machine.dir)
    drives = [cmd[i + 1] for i, word in enumerate(cmd) if word == "-drive"]
    assert drives[0].startswith("file=%s," % machine.root_disk) and "format=qcow2" in drives[0]
    assert drives[1].startswith("file=%s," % machine.boot_disk) and "format=raw" in drives[1]
    assert "virtio-blk-pci,drive=boot,serial=tracelab-boot" in cmd


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\0" * 4096,
        b"tracelab-boot-entry 1\n\n",
        b"grub env block\nroot=/dev/vda\n",
        b"tracelab-boot-entry 2\nx\n",
    ],
)
def test_a_boot_disk_without_an_entry_is_an_error(content):
    machine = make_vm("e", "systemd")
    machine.disk = True
    machine.boot_disk.write_bytes(content)
    with pytest.raises(LabError, match="holds no boot entry"):
        vm.kernel_cmdline(machine, profiles.get("systemd"))


def test_vm_without_a_disk_has_no_drives_and_cannot_reboot(monkeypatch):
    machine = make_vm("n")
    assert "-drive" not in vm.qemu_command(machine, profiles.get("default"), machine.dir)
    monkeypatch.setattr(vm, "_running_vm", lambda name: machine)
    with pytest.raises(LabError, match="has no disk"):
        vm.reboot("n")


def test_disk_needs_the_systemd_profile():
    with pytest.raises(LabError, match="--profile systemd"):
        vm.up("x", "default", False, 512, 1, 10.0, disk=True)
