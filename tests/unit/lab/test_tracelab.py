"""The lab CLI's pure parts: names, inventory, kernel command line, ports, image inputs."""

from __future__ import annotations

import base64
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
