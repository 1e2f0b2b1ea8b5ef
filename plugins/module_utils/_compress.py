# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Streaming compression for capture files, on both sides of the transfer.

The traced host compresses (trace_capture's module), the controller decompresses
(its action plugin): zstd through the `zstd` program when there is one, gzip
through the `gzip` program or, failing that, Python's gzip module. Files are
streamed; nothing holds a whole capture in memory.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import shutil
import subprocess
import zlib
from typing import Any

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
CHUNK = 1 << 20
PIPE_SIZE = 1 << 18  # what a compressor may have left to do when the window closes
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in Python 3.10+


class CompressError(TracefleetError):
    """A compressor that failed, or a compressed file that is damaged."""


def available(method: str) -> bool:
    if method == "zstd":
        return shutil.which("zstd") is not None
    return method in ("gzip", "none")


def choose(requested: str, peer_has_zstd: bool = True) -> str:
    """`auto` -> zstd when this side (and the peer) can, else gzip."""
    if requested != "auto":
        return requested
    return "zstd" if peer_has_zstd and available("zstd") else "gzip"


def _run(argv: list, source: str, target: str) -> None:
    with open(source, "rb") as stdin, open(target, "wb") as stdout:
        proc = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise CompressError(
            "%s failed (rc %d): %s" % (" ".join(argv), proc.returncode, proc.stderr.decode(errors="replace").strip())
        )


def compress(method: str, source: str, target: str, level: int | None = None) -> None:
    if method == "none":
        shutil.copyfile(source, target)
    elif method == "zstd":
        if not available("zstd"):
            raise CompressError("compress=zstd: no zstd program on this host")
        _run(["zstd", "-q", "-c", "-T0", "-%d" % (level or 1)], source, target)
    elif method == "gzip":
        if shutil.which("gzip"):
            _run(["gzip", "-c", "-%d" % (level or 1)], source, target)
        else:
            with open(source, "rb") as stdin, gzip.open(target, "wb", compresslevel=level or 1) as out:
                shutil.copyfileobj(stdin, out, CHUNK)
    else:
        raise CompressError("unknown compression %r" % method)


class Stream:
    """A file being written through a compressor, fed while other work goes on.

    With zstd or gzip as programs, `fd` is the compressor's stdin (a pipe, so the
    ring buffer can be spliced straight into it); with `none`, or gzip without the
    program, it is a plain file (compressed by Python in `finish`). Concatenated
    streams unpack to the concatenation of their contents.
    """

    def __init__(self, method: str, path: str, level: int = 1) -> None:
        self.method = method
        self.path = path
        self.raw_bytes = 0
        self.cpu_seconds = 0.0
        # A Popen with stdin and stderr pipes (Any: typeshed has both Optional).
        self.process: Any = None
        self._plain = ""  # the uncompressed file, without a compressor program
        self.fd: int | None
        if method == "zstd" or (method == "gzip" and shutil.which("gzip")):
            argv = ["zstd", "-q", "-c", "-%d" % level] if method == "zstd" else ["gzip", "-c", "-%d" % level]
            with open(path, "wb") as out:
                self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE)
            self.fd = self.process.stdin.fileno()
            self.is_pipe = True
            try:
                fcntl.fcntl(self.fd, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
        elif method in ("none", "gzip"):
            self._plain = path if method == "none" else path + ".plain"
            self.fd = os.open(self._plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self.is_pipe = False
        else:
            raise CompressError("unknown compression %r" % method)

    def write(self, data: bytes) -> None:
        if self.fd is None:
            raise AssertionError("write after finish")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.raw_bytes += len(data)

    def finish(self) -> None:
        """Close the input and wait for the compressor. Raises CompressError if it failed."""
        if self.process is not None:
            if not self.process.stdin.closed:
                self.process.stdin.close()
            _pid, status, usage = os.wait4(self.process.pid, 0)
            self.process.returncode = (
                os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8  # novermin
            )
            self.cpu_seconds = usage.ru_utime + usage.ru_stime
            errors = self.process.stderr.read().decode(errors="replace").strip()
            self.process.stderr.close()
            if self.process.returncode != 0:
                raise CompressError("%s failed (rc %d): %s" % (self.method, self.process.returncode, errors))
        elif self.fd is not None:
            os.close(self.fd)
            if self.method == "gzip":
                compress("gzip", self._plain, self.path)
                os.unlink(self._plain)
        self.fd = None

    def abort(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            self.process.wait()
            if not self.process.stdin.closed:
                self.process.stdin.close()
            self.process.stderr.close()
        elif self.process is None and self.fd is not None:
            os.close(self.fd)
        self.fd = None


def finish_all(streams: list) -> None:
    """Finish several streams; their compressors wind down side by side."""
    for stream in streams:
        if stream.process is not None:
            stream.process.stdin.close()
    for stream in streams:
        stream.finish()


def concatenate(parts: list, target: str) -> None:
    """Write the parts one after the other into `target` (copied in the kernel where
    copy_file_range(2) works)."""
    with open(target, "wb", buffering=0) as out:
        for part in parts:
            with open(part, "rb") as source:
                left = os.fstat(source.fileno()).st_size
                try:
                    while left > 0:
                        copied = os.copy_file_range(source.fileno(), out.fileno(), left)
                        if not copied:
                            break
                        left -= copied
                except (AttributeError, OSError):
                    pass
                if left > 0:
                    source.seek(-left, os.SEEK_END)
                    shutil.copyfileobj(source, out, CHUNK)


def decompress(method: str, source: str, target: str) -> None:
    if method == "none":
        shutil.copyfile(source, target)
    elif method == "zstd":
        if not available("zstd"):
            raise CompressError("the capture is zstd-compressed and there is no zstd program here")
        _run(["zstd", "-q", "-d", "-c"], source, target)
    elif method == "gzip":
        try:
            with gzip.open(source, "rb") as stdin, open(target, "wb") as out:
                shutil.copyfileobj(stdin, out, CHUNK)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise CompressError("%s is damaged: %s" % (source, exc))
    else:
        raise CompressError("unknown compression %r" % method)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def size(path: str) -> int:
    return os.path.getsize(path)
