"""A private apt state that knows only <suite>-backports: the lab fetches its newer kernel
and qemu from there without changing the host's apt configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import paths
from .errors import LabError


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command (C locale); a failure becomes a LabError that quotes its stderr."""
    env = dict(kwargs.pop("env", None) or os.environ, LC_ALL="C")
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


def _mirror() -> str:
    return os.environ.get("TRACELAB_DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")


def backports_options(suite: str) -> list[str]:
    """apt options for a private state that knows only <suite>-backports (no host change).

    The package lists are refreshed on every call; when the mirror cannot be reached,
    the lists of an earlier build are used (so a cached lab keeps working offline)."""
    root = paths.cache_dir() / "apt" / (suite + "-backports")
    for sub in ("lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    sources.write_text(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s-backports main\n" % (_mirror(), suite)
    )
    options = [
        "-o",
        "Dir::Etc::SourceList=%s" % sources,
        "-o",
        "Dir::Etc::SourceParts=%s" % (root / "sources.list.d"),
        "-o",
        "Dir::State::Lists=%s" % (root / "lists"),
        "-o",
        "Dir::Cache=%s" % (root / "cache"),
        "-o",
        "Debug::NoLocking=1",
    ]
    try:
        run(["apt-get", "-q", "update"] + options, capture_output=True)
    except LabError as exc:
        if not any((root / "lists").glob("*_Packages*")):
            raise LabError("cannot fetch the %s-backports package lists: %s" % (suite, exc)) from None
        print("tracelab: %s-backports unreachable, using the package lists of an earlier build" % suite, flush=True)
    return options


def download(options: list[str], packages: list[str], directory: Path) -> list[Path]:
    """`apt-get download` the packages (name=version) into directory; the .deb files."""
    # apt's sandbox user cannot write into root-owned temp dirs; it falls back to
    # downloading as root with a warning, which is fine here.
    run(["apt-get"] + options + ["download"] + packages, cwd=directory, capture_output=True)
    debs = sorted(directory.glob("*.deb"))
    if len(debs) != len(packages):
        raise LabError("apt-get download %s left %d .deb files" % (" ".join(packages), len(debs)))
    return debs


def candidate(options: list[str], package: str) -> str:
    """The version apt would fetch for package."""
    out = run(["apt-cache"] + options + ["show", "--no-all-versions", package], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise LabError("apt-cache show %s printed no Version; run `apt-get update`" % package)
