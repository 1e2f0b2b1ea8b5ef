"""Build the lab's boot images: a Debian cloud kernel and a root filesystem in an initramfs.

Three cached layers, each rebuilt only when its inputs change:
  kernel/<package>_<version>/   the unpacked kernel package (vmlinuz, modules, config)
  rootfs/<hash>.tar             mmdebstrap output for a suite and a package list
  images/<image>/               vmlinuz + initrd.img + inputs.json (everything combined)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import LabError

# Bump when the way an image is assembled changes in a way its inputs don't show.
BUILD_FORMAT = 1

GUEST_DIR = Path(__file__).resolve().parent.parent / "guest"

BASE_PACKAGES = (
    "python3",
    "openssh-server",
    "kmod",
    "iproute2",
    "procps",
    "trace-cmd",
    # probe targets for uprobes
    "bash",
    "coreutils",
    # trace_capture compresses with zstd on the target when both sides have it
    "zstd",
)

# Files the images are made without: docs and translations only cost boot time.
DPKG_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)


@dataclass(frozen=True)
class ImageSpec:
    name: str
    packages: tuple[str, ...]
    guest_files: tuple[str, ...]


IMAGES = {
    "minimal": ImageSpec("minimal", BASE_PACKAGES, ("init", "tracelab-setup")),
    "systemd": ImageSpec(
        "systemd",
        BASE_PACKAGES + ("systemd", "systemd-sysv", "udev"),
        ("tracelab-setup", "tracelab-setup.service", "10-tracelab.network"),
    ),
}


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C")
    try:
        return subprocess.run(cmd, check=True, env=env, **kwargs)
    except FileNotFoundError:
        raise LabError("%s is not installed (try `make deps`)" % cmd[0]) from None
    except subprocess.CalledProcessError as exc:
        detail = ""
        if isinstance(exc.stderr, (bytes, str)) and exc.stderr:
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr
            detail = ": " + err.strip()[-2000:]
        raise LabError("command failed (%s): %s%s" % (exc.returncode, " ".join(cmd), detail)) from None


def _suite() -> str:
    override = os.environ.get("TRACELAB_SUITE")
    if override:
        return override
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME=") and line.split("=", 1)[1].strip('"'):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "bookworm"


def resolve_kernel_package() -> tuple[str, str]:
    """The versioned cloud kernel package the metapackage points at, and its version."""
    package = os.environ.get("TRACELAB_KERNEL_PACKAGE")
    if not package:
        out = _run(["apt-cache", "depends", "linux-image-cloud-amd64"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                package = line.split(":", 1)[1].strip()
                break
        if not package:
            raise LabError(
                "apt knows no linux-image-cloud-amd64; run `apt-get update` (or set TRACELAB_KERNEL_PACKAGE)"
            )
    out = _run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            return package, line.split(":", 1)[1].strip()
    raise LabError("apt-cache show %s printed no Version; run `apt-get update`" % package)


def _fetch_kernel(package: str, version: str) -> Path:
    target = paths.cache_dir() / "kernel" / ("%s_%s" % (package, version))
    if (target / "vmlinuz").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        # apt's sandbox user cannot write into root-owned temp dirs; it falls
        # back to downloading as root with a warning, which is fine here.
        _run(["apt-get", "download", "%s=%s" % (package, version)], cwd=tmp, capture_output=True)
        debs = list(tmp_path.glob("*.deb"))
        if not debs:
            raise LabError("apt-get download %s left no .deb" % package)
        unpacked = tmp_path / "x"
        _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)])
        release = package[len("linux-image-") :]
        staged = tmp_path / "kernel"
        staged.mkdir()
        shutil.move(str(unpacked / "boot" / ("vmlinuz-" + release)), str(staged / "vmlinuz"))
        shutil.move(str(unpacked / "boot" / ("config-" + release)), str(staged / "config"))
        modules_root = unpacked / "lib" / "modules"
        if not modules_root.exists():
            modules_root = unpacked / "usr" / "lib" / "modules"
        shutil.move(str(modules_root / release), str(staged / "modules"))
        (staged / "release").write_text(release + "\n")
        os.replace(staged, target)
    return target


def _rootfs_tar(spec: ImageSpec, suite: str) -> Path:
    key = hashlib.sha256(
        json.dumps({"suite": suite, "packages": sorted(spec.packages), "excludes": DPKG_EXCLUDES}).encode()
    ).hexdigest()[:16]
    tar = paths.cache_dir() / "rootfs" / ("%s-%s-%s.tar" % (spec.name, suite, key))
    if tar.exists():
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial.tar")
    cmd = ["mmdebstrap", "--variant=minbase", "--quiet", "--include=" + ",".join(spec.packages)]
    cmd += ["--dpkgopt=path-exclude=" + pattern for pattern in DPKG_EXCLUDES]
    cmd += [suite, str(partial)]
    print("tracelab: building the %s root filesystem (%s, mmdebstrap)..." % (spec.name, suite), flush=True)
    _run(cmd, capture_output=True)
    os.replace(partial, tar)
    return tar


def _inputs(spec: ImageSpec, suite: str, kernel: Path) -> dict:
    guest = {name: hashlib.sha256((GUEST_DIR / name).read_bytes()).hexdigest() for name in spec.guest_files}
    return {
        "format": BUILD_FORMAT,
        "image": spec.name,
        "suite": suite,
        "packages": sorted(spec.packages),
        "kernel": kernel.name,
        "guest_files": guest,
        "builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }


def _install(src: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)


def _customise(spec: ImageSpec, root: Path, kernel: Path) -> None:
    release = (kernel / "release").read_text().strip()
    shutil.copytree(kernel / "modules", root / "lib" / "modules" / release, symlinks=True)
    _install(kernel / "config", root / "boot" / ("config-" + release), 0o644)
    _run(["depmod", "-b", str(root), release])
    # Host keys are made at each boot (tracelab-setup), never shared between VMs.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    _install(GUEST_DIR / "tracelab-setup", root / "usr/local/sbin/tracelab-setup", 0o755)
    (root / "etc" / "fstab").write_text("# tracelab: root filesystem is the initramfs\n")
    if spec.name == "minimal":
        _install(GUEST_DIR / "init", root / "init", 0o755)
        return
    _install(GUEST_DIR / "tracelab-setup.service", root / "etc/systemd/system/tracelab-setup.service", 0o644)
    _install(GUEST_DIR / "10-tracelab.network", root / "etc/systemd/network/10-tracelab.network", 0o644)
    (root / "etc/modules-load.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/modules-load.d/tracelab.conf").write_text("virtio_pci\nvirtio_net\nvirtio_rng\n")
    (root / "etc/machine-id").write_text("")
    _run(
        [
            "chroot",
            str(root),
            "systemctl",
            "enable",
            "--quiet",
            "tracelab-setup.service",
            "systemd-networkd.service",
            "ssh.service",
        ]
    )


def _pack(root: Path, out: Path) -> None:
    """newc cpio of the whole tree, zstd-compressed (the cloud kernel has RD_ZSTD)."""
    with open(out, "wb") as sink:
        find = subprocess.Popen(["find", ".", "-print0"], cwd=root, stdout=subprocess.PIPE)
        cpio = subprocess.Popen(
            ["cpio", "--null", "--quiet", "-o", "-H", "newc"], cwd=root, stdin=find.stdout, stdout=subprocess.PIPE
        )
        # stdout=PIPE: both pipes exist (the asserts tell the type checker so).
        assert find.stdout is not None and cpio.stdout is not None
        find.stdout.close()
        zstd = subprocess.Popen(["zstd", "-q", "-T0", "-3", "-c"], stdin=cpio.stdout, stdout=sink)
        cpio.stdout.close()
        codes = (zstd.wait(), cpio.wait(), find.wait())
    if any(codes):
        raise LabError("packing the initramfs failed (find/cpio/zstd exit codes %s)" % (codes,))


def image_dir(name: str) -> Path:
    return paths.cache_dir() / "images" / name


def build(name: str, force: bool = False) -> Path:
    """Build image `name` if its inputs changed (or `force`); return its directory."""
    if name not in IMAGES:
        raise LabError("unknown image %r; choose one of: %s" % (name, ", ".join(IMAGES)))
    if os.geteuid() != 0:
        raise LabError("building an image needs root (mmdebstrap, chroot, file ownership)")
    spec = IMAGES[name]
    suite = _suite()
    kernel = _fetch_kernel(*resolve_kernel_package())
    inputs = _inputs(spec, suite, kernel)
    target = image_dir(name)
    stamp = target / "inputs.json"
    if not force and stamp.exists() and (target / "initrd.img").exists() and json.loads(stamp.read_text()) == inputs:
        print("tracelab: image %s is up to date (%s)" % (name, target), flush=True)
        return target
    tar = _rootfs_tar(spec, suite)
    target.parent.mkdir(parents=True, exist_ok=True)
    print("tracelab: assembling image %s..." % name, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "root"
        root.mkdir()
        _run(["tar", "-x", "-p", "--numeric-owner", "-f", str(tar), "-C", str(root)])
        _customise(spec, root, kernel)
        staged = tmp_path / "image"
        staged.mkdir()
        _pack(root, staged / "initrd.img")
        shutil.copyfile(kernel / "vmlinuz", staged / "vmlinuz")
        (staged / "inputs.json").write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    size = (target / "initrd.img").stat().st_size
    print("tracelab: image %s ready (%s, initramfs %.0f MB)" % (name, target, size / 1e6), flush=True)
    return target


def ensure(name: str) -> Path:
    """The image directory, building it first when it is missing."""
    target = image_dir(name)
    if (target / "initrd.img").exists() and (target / "vmlinuz").exists():
        return target
    return build(name)
