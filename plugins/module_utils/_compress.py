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

import contextlib
import errno
import fcntl
import gzip
import hashlib
import os
import shutil
import subprocess
import zlib
from typing import Any, Iterator

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
    """`auto` -> zstd when this side (and the peer) can, else gzip. Raises
    CompressError when the method asked for cannot be used here."""
    if requested == "auto":
        return "zstd" if peer_has_zstd and available("zstd") else "gzip"
    if requested not in SUFFIX:
        raise CompressError("compress=%r: use one of auto, %s" % (requested, ", ".join(SUFFIX)))
    if not available(requested):
        raise CompressError(
            "compress=%s: there is no %s program on this host; use compress=auto" % (requested, requested)
        )
    return requested


def mount_point(path: str) -> str:
    """The mount point of the filesystem holding `path`, for messages."""
    path = os.path.realpath(path)
    while not os.path.ismount(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def no_space(path: str, detail: object) -> CompressError:
    """The error for a filesystem that filled up while `path` was written."""
    return CompressError(
        "no space left on %s (writing %s): %s; free some space or lower max_bytes" % (mount_point(path), path, detail)
    )


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _is_no_space(exc: OSError) -> bool:
    return exc.errno in NO_SPACE


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

    def __init__(self, method: str, path: str, level: int = 1, threads: bool = False) -> None:
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
            if threads and method == "zstd":
                argv.append("-T0")
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
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise self.failed(exc) from None
        self.raw_bytes += len(data)

    def take(self, pipe_out: int, count: int) -> None:
        """Move `count` bytes waiting in the pipe `pipe_out` into this stream (splice(2))."""
        if self.fd is None:
            raise AssertionError("write after finish")
        left = count
        try:
            while left:
                left -= os.splice(pipe_out, self.fd, left)  # novermin (only where os.splice exists)
        except OSError as exc:
            raise self.failed(exc) from None
        self.raw_bytes += count

    def copy_from(self, path: str) -> None:
        """Append the contents of the file `path`."""
        with open(path, "rb") as source:
            for block in iter(lambda: source.read(CHUNK), b""):
                self.write(block)

    def failed(self, exc: OSError) -> Exception:
        """The error for a write that failed: a full filesystem says so by name (a
        compressor that could not write its output shows as a broken pipe here)."""
        if _is_no_space(exc):
            return no_space(self._plain or self.path, exc.strerror)
        if exc.errno == errno.EPIPE and self.process is not None:
            self.abort()
            errors = self._errors
            if "No space left" in errors or "Disk quota" in errors:
                return no_space(self.path, errors)
            return CompressError("%s stopped while being fed: %s" % (self.method, errors or exc.strerror))
        return exc

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
            errors = self._read_errors()
            if self.process.returncode != 0:
                if "No space left" in errors or "Disk quota" in errors:
                    raise no_space(self.path, errors)
                raise CompressError("%s failed (rc %d): %s" % (self.method, self.process.returncode, errors))
        elif self.fd is not None:
            os.close(self.fd)
            if self.method == "gzip":
                try:
                    compress("gzip", self._plain, self.path)
                except OSError as exc:
                    if _is_no_space(exc):
                        raise no_space(self.path, exc.strerror) from None
                    raise
                os.unlink(self._plain)
        self.fd = None

    _errors = ""

    def _read_errors(self) -> str:
        if not self.process.stderr.closed:
            self._errors = self.process.stderr.read().decode(errors="replace").strip()
            self.process.stderr.close()
        return self._errors

    def abort(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            self.process.wait()
            if not self.process.stdin.closed:
                try:
                    self.process.stdin.close()
                except OSError:
                    pass  # a broken pipe: the compressor is gone anyway
            self._read_errors()
        elif self.process is None and self.fd is not None:
            os.close(self.fd)
        self.fd = None


class Spill:
    """A CPU's raw pages in a file of their own, opened for each write: it holds no
    file descriptor between writes, so a host with hundreds of CPUs does not run out
    of them. Compressed after the window (`pack_spills`)."""

    is_pipe = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.raw_bytes = 0
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY)
        os.lseek(fd, 0, os.SEEK_END)  # splice(2) refuses O_APPEND files
        return fd

    @contextlib.contextmanager
    def _appending(self) -> Iterator[int]:
        """The spill file open for one append; a full disk says so by name."""
        fd = self._open()
        try:
            yield fd
        except OSError as exc:
            if _is_no_space(exc):
                raise no_space(self.path, exc.strerror) from None
            raise
        finally:
            os.close(fd)

    def write(self, data: bytes) -> None:
        with self._appending() as fd:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        self.raw_bytes += len(data)

    def take(self, pipe_out: int, count: int) -> None:
        with self._appending() as fd:
            left = count
            while left:
                left -= os.splice(pipe_out, fd, left)  # novermin (only where os.splice exists)
        self.raw_bytes += count


def pack_spills(method: str, spills: list, path: str) -> tuple[list, float]:
    """The parts that hold the spilled CPUs' pages, in order, and the compressor's CPU
    seconds: with compression, one stream (zstd with a thread per core) fed each spill
    in turn, each removed once fed; without, the spills themselves."""
    if not spills:
        return [], 0.0
    if method == "none":
        return [spill.path for spill in spills], 0.0
    stream = Stream(method, path, threads=True)
    try:
        for spill in spills:
            stream.copy_from(spill.path)
            os.unlink(spill.path)
        stream.finish()
    finally:
        stream.abort()
    return [path], stream.cpu_seconds


def finish_all(streams: list) -> None:
    """Finish several streams; their compressors wind down side by side."""
    for stream in streams:
        if stream.process is not None:
            stream.process.stdin.close()
    for stream in streams:
        stream.finish()


def concatenate(parts: list, target: str) -> None:
    """Make `target` the parts one after the other, consuming them: the first part is
    renamed to `target` (all in one directory tree on one filesystem) and each other
    part is appended (in the kernel where copy_file_range(2) works) and removed, so
    the disk never holds the capture twice."""
    os.rename(parts[0], target)
    with open(target, "r+b", buffering=0) as out:
        out.seek(0, os.SEEK_END)  # not O_APPEND: copy_file_range(2) refuses it
        for part in parts[1:]:
            with open(part, "rb") as source:
                left = os.fstat(source.fileno()).st_size
                try:
                    while left > 0:
                        copied = os.copy_file_range(source.fileno(), out.fileno(), left)
                        if not copied:
                            break
                        left -= copied
                except (AttributeError, OSError) as exc:
                    if isinstance(exc, OSError) and _is_no_space(exc):
                        raise no_space(target, exc.strerror) from None
                if left > 0:
                    source.seek(-left, os.SEEK_END)
                    try:
                        shutil.copyfileobj(source, out, CHUNK)
                    except OSError as exc:
                        if _is_no_space(exc):
                            raise no_space(target, exc.strerror) from None
                        raise
            os.unlink(part)


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
