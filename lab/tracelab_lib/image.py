"""Build the lab's boot images: a Debian cloud kernel and a root filesystem in an initramfs.

Three cached layers, each rebuilt only when its inputs change:
  kernel/<package>_<version>/   the unpacked kernel package (vmlinuz, modules, config)
  rootfs/<hash>.tar             mmdebstrap output for a suite and a package list
  images/<image>-k<series>/     vmlinuz + initrd.img + inputs.json (everything combined)

The "disk" image is a distribution-like host instead: its root filesystem is an ext4
image (root.img; each VM boots a copy-on-write layer of it), systemd is init, and
initrd.img is the small initramfs Debian's initramfs-tools makes for it (it finds the
root disk by label), the way an installed Debian boots. Its kernel command line is the
image's /etc/kernel/cmdline (copied to `cmdline`); see vm.py for how a reboot takes
the guest's own.

Two kernel series (KERNELS): Debian's own cloud kernel (6.1 on bookworm) from the host's
apt sources, and the newer one from <suite>-backports (6.12 on bookworm), resolved with
a private apt state under the cache so the host's apt configuration is never changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import apt, paths
from .errors import LabError

# Bump when the way an image is assembled changes in a way its inputs don't show.
BUILD_FORMAT = 2

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
class KernelSeries:
    """Where one kernel series comes from: the cloud metapackage of a suite."""

    name: str  # "6.1", "6.12": what `up --kernel` takes
    backports: bool  # from <suite>-backports (private apt state) instead of the host's sources
    description: str

    @property
    def group(self) -> str:
        """Ansible inventory group for VMs on this series (valid group name)."""
        return "tracelab_k" + self.name.replace(".", "_")


KERNELS = {
    k.name: k
    for k in (
        KernelSeries("6.1", False, "Debian bookworm's cloud kernel (host apt sources)"),
        KernelSeries("6.12", True, "Debian bookworm-backports' cloud kernel (fetched with a private apt state)"),
    )
}
DEFAULT_KERNEL = "6.1"


def kernel_series(name: str) -> KernelSeries:
    try:
        return KERNELS[name]
    except KeyError:
        raise LabError("unknown kernel %r; choose one of: %s" % (name, ", ".join(KERNELS))) from None


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
    "disk": ImageSpec(
        "disk",
        BASE_PACKAGES + ("systemd", "systemd-sysv", "udev", "initramfs-tools", "e2fsprogs"),
        (
            "tracelab-setup",
            "tracelab-setup.service",
            "10-tracelab.network",
            "tracelab-boot-entry",
            "tracelab-boot-entry.service",
        ),
    ),
}
# Images that boot from a disk (root.img) rather than from their initramfs.
DISK_IMAGES = ("disk",)
ROOT_LABEL = "tracelab-root"
# The disk image's /etc/kernel/cmdline as built: what its first boot gets.
DISK_CMDLINE = "root=LABEL=%s rw console=ttyS0 panic=-1 loglevel=4" % ROOT_LABEL
# Size of the (sparse) root file system image: room for what tests install and trace.
DISK_SIZE = "3G"


_run = apt.run


def suite() -> str:
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


def _apt_options(series: KernelSeries) -> list[str]:
    return apt.backports_options(suite()) if series.backports else []


def resolve_kernel_package(series: KernelSeries, apt_options: list[str]) -> tuple[str, str]:
    """The versioned cloud kernel package of a series, and its version.

    The metapackage linux-image-cloud-amd64 names the signed image; the backports
    series is taken as its `-unsigned` twin (same files, no shim signature), which is
    what `apt-get download` can fetch without the signed package's dependencies."""
    package = os.environ.get("TRACELAB_KERNEL_PACKAGE_" + series.name.replace(".", "_"))
    if not package and not series.backports:
        package = os.environ.get("TRACELAB_KERNEL_PACKAGE")
    if not package:
        out = _run(
            ["apt-cache"] + apt_options + ["depends", "linux-image-cloud-amd64"], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                package = line.split(":", 1)[1].strip()
                break
        if not package:
            raise LabError(
                "apt knows no linux-image-cloud-amd64 for kernel %s; run `apt-get update` "
                "(or set TRACELAB_KERNEL_PACKAGE_%s)" % (series.name, series.name.replace(".", "_"))
            )
        if series.backports and not package.endswith("-unsigned"):
            package += "-unsigned"
    if not re.match(r"linux-image-%s[.-]" % re.escape(series.name), package):
        raise LabError("kernel package %s is not of series %s" % (package, series.name))
    out = _run(
        ["apt-cache"] + apt_options + ["show", "--no-all-versions", package], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            return package, line.split(":", 1)[1].strip()
    raise LabError("apt-cache show %s printed no Version; run `apt-get update`" % package)


def kernel_release(package: str) -> str:
    """The release (uname -r, the directory under /lib/modules) a kernel package installs."""
    release = package[len("linux-image-") :]
    return release[: -len("-unsigned")] if release.endswith("-unsigned") else release


def _fetch_kernel(package: str, version: str, apt_options: list[str]) -> Path:
    target = paths.cache_dir() / "kernel" / ("%s_%s" % (package, version))
    if (target / "vmlinuz").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        # apt's sandbox user cannot write into root-owned temp dirs; it falls
        # back to downloading as root with a warning, which is fine here.
        _run(["apt-get"] + apt_options + ["download", "%s=%s" % (package, version)], cwd=tmp, capture_output=True)
        debs = list(tmp_path.glob("*.deb"))
        if not debs:
            raise LabError("apt-get download %s left no .deb" % package)
        unpacked = tmp_path / "x"
        _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)])
        release = kernel_release(package)
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
    """Everything an image is made from: a change in any of them rebuilds it."""
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
    if spec.name in DISK_IMAGES:
        (root / "etc" / "fstab").write_text("LABEL=%s / ext4 defaults,noatime 0 1\n" % ROOT_LABEL)
    else:
        (root / "etc" / "fstab").write_text("# tracelab: root filesystem is the initramfs\n")
    if spec.name == "minimal":
        _install(GUEST_DIR / "init", root / "init", 0o755)
        return
    _install(GUEST_DIR / "tracelab-setup.service", root / "etc/systemd/system/tracelab-setup.service", 0o644)
    _install(GUEST_DIR / "10-tracelab.network", root / "etc/systemd/network/10-tracelab.network", 0o644)
    (root / "etc/modules-load.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/modules-load.d/tracelab.conf").write_text("virtio_pci\nvirtio_net\nvirtio_rng\n")
    (root / "etc/machine-id").write_text("")
    units = ["tracelab-setup.service", "systemd-networkd.service", "ssh.service"]
    if spec.name in DISK_IMAGES:
        _install(GUEST_DIR / "tracelab-boot-entry", root / "usr/local/sbin/tracelab-boot-entry", 0o755)
        _install(
            GUEST_DIR / "tracelab-boot-entry.service", root / "etc/systemd/system/tracelab-boot-entry.service", 0o644
        )
        units.append("tracelab-boot-entry.service")
        (root / "etc/kernel").mkdir(parents=True, exist_ok=True)
        (root / "etc/kernel/cmdline").write_text(DISK_CMDLINE + "\n")
        _install(kernel / "vmlinuz", root / "boot" / ("vmlinuz-" + release), 0o644)
        # No swap to resume from; the initramfs finds the root disk by its label.
        (root / "etc/initramfs-tools/conf.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/initramfs-tools/conf.d/resume").write_text("RESUME=none\n")
        _run(["chroot", str(root), "update-initramfs", "-c", "-k", release], capture_output=True)
    _run(["chroot", str(root), "systemctl", "enable", "--quiet"] + units)


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


def _make_disk(root: Path, kernel: Path, staged: Path) -> None:
    """root.img (ext4, labelled, made from the tree), the initramfs initramfs-tools made
    in it, and the command line the image boots with first."""
    release = (kernel / "release").read_text().strip()
    shutil.copyfile(root / "boot" / ("initrd.img-" + release), staged / "initrd.img")
    (staged / "cmdline").write_text((root / "etc/kernel/cmdline").read_text())
    _run(
        ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), str(staged / "root.img"), DISK_SIZE],
        capture_output=True,
    )


def image_dir(name: str, kernel: str = DEFAULT_KERNEL) -> Path:
    return paths.cache_dir() / "images" / ("%s-k%s" % (name, kernel))


def build(name: str, kernel: str = DEFAULT_KERNEL, force: bool = False) -> Path:
    """Build image `name` on kernel series `kernel` if its inputs changed (or `force`); return its directory."""
    if name not in IMAGES:
        raise LabError("unknown image %r; choose one of: %s" % (name, ", ".join(IMAGES)))
    series = kernel_series(kernel)
    if os.geteuid() != 0:
        raise LabError("building an image needs root (mmdebstrap, chroot, file ownership)")
    spec = IMAGES[name]
    codename = suite()
    apt_options = _apt_options(series)
    kernel_dir = _fetch_kernel(*resolve_kernel_package(series, apt_options), apt_options)
    inputs = _inputs(spec, codename, kernel_dir)
    target = image_dir(name, kernel)
    label = "%s (kernel %s)" % (name, kernel)
    stamp = target / "inputs.json"
    if not force and stamp.exists() and (target / "initrd.img").exists() and json.loads(stamp.read_text()) == inputs:
        print("tracelab: image %s is up to date (%s)" % (label, target), flush=True)
        return target
    tar = _rootfs_tar(spec, codename)
    target.parent.mkdir(parents=True, exist_ok=True)
    print("tracelab: assembling image %s..." % label, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "root"
        root.mkdir()
        _run(["tar", "-x", "-p", "--numeric-owner", "-f", str(tar), "-C", str(root)])
        _customise(spec, root, kernel_dir)
        staged = tmp_path / "image"
        staged.mkdir()
        if name in DISK_IMAGES:
            _make_disk(root, kernel_dir, staged)
        else:
            _pack(root, staged / "initrd.img")
        shutil.copyfile(kernel_dir / "vmlinuz", staged / "vmlinuz")
        shutil.copyfile(kernel_dir / "release", staged / "release")
        (staged / "inputs.json").write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    size = (target / "initrd.img").stat().st_size
    print("tracelab: image %s ready (%s, initramfs %.0f MB)" % (label, target, size / 1e6), flush=True)
    return target


def ensure(name: str, kernel: str = DEFAULT_KERNEL) -> Path:
    """The image directory, building it first when it is missing."""
    target = image_dir(name, kernel)
    wanted = ["initrd.img", "vmlinuz"] + (["root.img", "cmdline"] if name in DISK_IMAGES else [])
    if all((target / part).exists() for part in wanted):
        return target
    return build(name, kernel)


def release_of(name: str, kernel: str = DEFAULT_KERNEL) -> str:
    """The kernel release (uname -r) an image boots, or "" when it is not built."""
    try:
        return (image_dir(name, kernel) / "release").read_text().strip()
    except OSError:
        return ""
