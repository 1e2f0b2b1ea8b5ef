"""The qemu the lab's VMs run under.

bookworm's qemu 7.2 cannot boot the 6.12 kernel under TCG: every boot dies with a
different oops (double faults, list corruption, NULL dereferences in kernfs) at a
different point, with `-cpu max`, `qemu64` or `Nehalem`, one vCPU or single-threaded
TCG (measured on these machines). bookworm-backports' qemu boots both kernels. It is
fetched like the 6.12 kernel: a private apt state, the packages unpacked into the
cache (`qemu/<version>/`), nothing installed on the host; its shared libraries are
bookworm's. TRACELAB_QEMU=system uses the host's qemu-system-x86_64 instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import apt, image, paths
from .errors import LabError

PACKAGES = ("qemu-system-x86", "qemu-system-data", "qemu-system-common", "seabios")
SYSTEM_BINARY = "qemu-system-x86_64"


@dataclass(frozen=True)
class Qemu:
    binary: str
    data_dirs: tuple[str, ...] = ()
    module_dir: str = ""
    version: str = "system"

    def command(self) -> list[str]:
        """The binary and the firmware search path (-L, first match wins)."""
        cmd = [self.binary]
        for directory in self.data_dirs:
            cmd += ["-L", directory]
        return cmd

    def env(self) -> dict[str, str]:
        """The environment to start it with: its own accelerator/device modules, not the host's."""
        env = dict(os.environ)
        if self.module_dir:
            env["QEMU_MODULE_DIR"] = self.module_dir
        return env


def _root() -> Path:
    return paths.cache_dir() / "qemu"


def _from_dir(directory: Path) -> Qemu:
    root = directory / "root"
    return Qemu(
        binary=str(root / "usr/bin/qemu-system-x86_64"),
        data_dirs=(str(root / "usr/share/qemu"), str(root / "usr/share/seabios")),
        module_dir=str(root / "usr/lib/x86_64-linux-gnu/qemu"),
        version=directory.name,
    )


def system() -> Qemu:
    if shutil.which(SYSTEM_BINARY) is None:
        raise LabError("%s is not installed (try `make deps`)" % SYSTEM_BINARY)
    return Qemu(SYSTEM_BINARY)


def fetch() -> Qemu:
    """The newest qemu of <suite>-backports, unpacked into the cache (downloaded once)."""
    options = apt.backports_options(image.suite())
    version = apt.candidate(options, PACKAGES[0])
    target = _root() / version.replace(":", "_")
    if (target / "ready").exists():
        return _from_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    print("tracelab: fetching qemu %s (%s-backports)..." % (version, image.suite()), flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / "qemu"
        debs = Path(tmp) / "debs"
        debs.mkdir()
        (staged / "root").mkdir(parents=True)
        wanted = ["%s=%s" % (name, apt.candidate(options, name)) for name in PACKAGES]
        for deb in apt.download(options, wanted, debs):
            apt.run(["dpkg-deb", "-x", str(deb), str(staged / "root")])
        found = _from_dir(staged)
        apt.run([found.binary, "--version"], capture_output=True, env=found.env())
        (staged / "ready").write_text(version + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    return _from_dir(target)


def ensure() -> Qemu:
    """The qemu to start VMs with: TRACELAB_QEMU=system, else the cached one (fetched when missing)."""
    if os.environ.get("TRACELAB_QEMU") == "system":
        return system()
    cached = sorted((d for d in _root().glob("*") if (d / "ready").exists()), key=lambda d: d.stat().st_mtime)
    if cached:
        return _from_dir(cached[-1])
    return fetch()
