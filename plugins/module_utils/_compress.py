# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Streaming compression for capture files, on both sides of the transfer.

Two uses. A file that travels compressed (a version 6 trace.dat, text): the traced
host compresses it (trace_capture's module) and the controller decompresses it (its
action plugin), with zstd through the `zstd` program when there is one, gzip through
the `gzip` program or, failing that, Python's gzip module. And the compression
inside a version 7 trace.dat, which travels and is stored as it is: zstd (the
program) or zlib (Python's zlib module, so it works with nothing installed), each
chunk or section its own zstd frame or zlib stream, which trace-cmd decompresses
one at a time.
Files are streamed; nothing holds a whole capture in memory.
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
import struct
import subprocess
import sys
import time
import zlib
from typing import Any, Callable, Iterator

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
# The compression inside a version 7 trace.dat, by trace-cmd's name for it.
INSIDE = ("zstd", "zlib", "none")
CHUNK = 1 << 20
ZLIB_CHUNK = 1 << 20  # pages per zlib chunk of a CPU's data (whole pages of any size up to 1 MiB)
ZLIB_LEVEL = 1
PIPE_SIZE = 1 << 18  # what a compressor may have left to do when the window closes
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in Python 3.10+


class CompressError(TracefleetError):
    """A compressor that failed, or a compressed file that is damaged."""


def available(method: str) -> bool:
    if method == "zstd":
        return shutil.which("zstd") is not None
    return method in ("gzip", "zlib", "none")


def zstd_version() -> str:
    """The zstd program's version (what a version 7 trace.dat names with its
    compression), or "" when it does not say."""
    try:
        proc = subprocess.run(["zstd", "-qqV"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    text = proc.stdout.decode(errors="replace").strip().lstrip("v")
    return text if proc.returncode == 0 and text.replace(".", "").isdigit() else ""


def choose(requested: str, peer_has_zstd: bool = True, inside: bool = False) -> str:
    """How a file travels: `auto` -> zstd when this side (and the peer) can, else
    gzip. With `inside`, the compression inside a version 7 trace.dat instead: `auto`
    -> zstd when this host has the program, else zlib (Python's own); the peer never
    unpacks it. gzip and zlib are the same deflate: each names the other where only
    one of them applies. Raises CompressError when the method asked for cannot be
    used here."""
    if inside:
        method = {"auto": "zstd" if available("zstd") else "zlib", "gzip": "zlib"}.get(requested, requested)
        if method not in INSIDE:
            raise CompressError("compress=%r: use one of auto, %s" % (requested, ", ".join(INSIDE)))
        if method == "zstd" and not available("zstd"):
            raise CompressError("compress=zstd: there is no zstd program on this host; use compress=auto or zlib")
        return method
    if requested == "zlib":
        requested = "gzip"
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
        self.stored_bytes = 0  # with zlib: the bytes written to `path`
        self.chunks = 0  # with zlib: the chunks written to `path`
        self._pending = bytearray()
        # A Popen with stdin and stderr pipes (Any: typeshed has both Optional).
        self.process: Any = None
        self._plain = ""  # the uncompressed file, without a compressor program
        self.fd: int | None
        if method == "zlib":
            # In this process: whole-page chunks of ZLIB_CHUNK bytes, each a zlib stream
            # with its sizes in front ([u32 compressed][u32 size], a version 7 chunk).
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self.is_pipe = False
        elif method == "zstd" or (method == "gzip" and shutil.which("gzip")):
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
        if self.method == "zlib":
            self._pending += data
            self.raw_bytes += len(data)
            while len(self._pending) >= ZLIB_CHUNK:
                self._zlib_chunk(bytes(self._pending[:ZLIB_CHUNK]))
                del self._pending[:ZLIB_CHUNK]
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise self.failed(exc) from None
        self.raw_bytes += len(data)

    def _zlib_chunk(self, data: bytes) -> None:
        started = time.process_time()
        packed = zlib.compress(data, ZLIB_LEVEL)
        self.cpu_seconds += time.process_time() - started
        record = struct.pack("<II" if sys.byteorder == "little" else ">II", len(packed), len(data)) + packed
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self.fd, view) :]  # type: ignore[arg-type]
        except OSError as exc:
            raise self.failed(exc) from None
        self.stored_bytes += len(record)
        self.chunks += 1

    def take(self, pipe_out: int, count: int) -> None:
        """Move `count` bytes waiting in the pipe `pipe_out` into this stream (splice(2))."""
        if self.fd is None:
            raise AssertionError("write after finish")
        if self.method == "zlib":
            left = count
            while left:
                data = os.read(pipe_out, min(left, CHUNK))
                if not data:
                    raise CompressError("the pipe of the ring-buffer reader ran dry")
                left -= len(data)
                self.write(data)
            return
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
            if self.method == "zlib" and self._pending:
                self._zlib_chunk(bytes(self._pending))
                self._pending = bytearray()
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

    def __init__(self, path: str, limit: int | None = None) -> None:
        """`limit`: at most that many bytes per file (a version 7 chunk); the pages then
        go on in `<path>.1`, `<path>.2`, ... (`paths` lists them, `sizes` their sizes)."""
        self.path = path
        self.raw_bytes = 0
        self.limit = limit
        self.paths = [path]
        self.sizes = [0]
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))

    def room(self) -> int:
        """Bytes the current file may still take."""
        return sys.maxsize if self.limit is None else self.limit - self.sizes[-1]

    def roll(self) -> None:
        """Go on in a new file."""
        self.path = "%s.%d" % (self.paths[0], len(self.paths))
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        self.paths.append(self.path)
        self.sizes.append(0)

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
        self.sizes[-1] += len(data)

    def take(self, pipe_out: int, count: int) -> None:
        with self._appending() as fd:
            left = count
            while left:
                left -= os.splice(pipe_out, fd, left)  # novermin (only where os.splice exists)
        self.raw_bytes += count
        self.sizes[-1] += count


class Chunked:
    """A CPU's pages for a version 7 trace.dat, through the zstd program: one Stream
    (one zstd frame: one chunk of the file) per `limit` bytes of pages. When one is
    full (`room` below a page), `roll` closes its input (it finishes on its own) and
    starts the next, telling `started` its pid."""

    is_pipe = True

    def __init__(self, path: str, limit: int, started: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.limit = limit
        self.started = started
        self.streams = [Stream("zstd", path + ".0")]

    @property
    def fd(self) -> int | None:
        return self.streams[-1].fd

    @property
    def raw_bytes(self) -> int:
        return sum(stream.raw_bytes for stream in self.streams)

    @raw_bytes.setter
    def raw_bytes(self, value: int) -> None:
        # What a reader spliced straight into the current stream's pipe.
        self.streams[-1].raw_bytes += value - self.raw_bytes

    @property
    def process(self):
        return self.streams[-1].process

    def room(self) -> int:
        return self.limit - self.streams[-1].raw_bytes

    def roll(self) -> None:
        self.streams[-1].process.stdin.close()
        stream = Stream("zstd", "%s.%d" % (self.path, len(self.streams)))
        self.streams.append(stream)
        if self.started is not None:
            self.started(stream.process.pid)

    def write(self, data: bytes) -> None:
        self.streams[-1].write(data)

    def take(self, pipe_out: int, count: int) -> None:
        self.streams[-1].take(pipe_out, count)

    def failed(self, exc: OSError) -> Exception:
        return self.streams[-1].failed(exc)

    @property
    def pids(self) -> list:
        return [stream.process.pid for stream in self.streams]


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


def compress_block(method: str, data: bytes) -> tuple[bytes, float]:
    """`data` as one compressed block of a version 7 trace.dat section (zlib, in this
    process), and the CPU seconds it took."""
    if method != "zlib":
        raise CompressError("compress_block is for zlib, not %r" % method)
    started = time.process_time()
    packed = zlib.compress(data, ZLIB_LEVEL)
    return packed, time.process_time() - started


def compress_files(method: str, paths: list) -> tuple[list, float]:
    """Compress each file on its own (one zstd frame, or one zlib stream, per file),
    in one zstd process for all of them: returns the compressed files (each path with
    SUFFIX, the originals removed) and the compressors' CPU seconds."""
    if not paths:
        return [], 0.0
    if method == "zlib":
        cpu = 0.0
        for path in paths:
            with open(path, "rb") as source:
                packed, seconds = compress_block("zlib", source.read())
            cpu += seconds
            _write_new(path + ".zz", packed)
            os.unlink(path)
        return [path + ".zz" for path in paths], cpu
    if method != "zstd":
        raise CompressError("compress_files is for zstd or zlib, not %r" % method)
    process = subprocess.Popen(
        ["zstd", "-q", "-1", "-f", "--rm", "--"] + list(paths), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    stderr: Any = process.stderr
    errors = stderr.read().decode(errors="replace").strip()  # until zstd exits
    stderr.close()
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
    if process.returncode != 0:
        if "No space left" in errors or "Disk quota" in errors:
            raise no_space(paths[0], errors)
        raise CompressError("zstd failed (rc %d): %s" % (process.returncode, errors))
    return [path + ".zst" for path in paths], usage.ru_utime + usage.ru_stime


def _write_new(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as out:
            out.write(data)
    except OSError as exc:
        if _is_no_space(exc):
            raise no_space(path, exc.strerror) from None
        raise


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
            _append(out, part, target)
            os.unlink(part)


def assemble(parts: list, target: str) -> int:
    """Write `target` from `parts` in order: bytes as they are, and part files (paths)
    appended (in the kernel where copy_file_range(2) works) and removed once
    appended, so the disk holds the capture about once. Returns the file's size."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "r+b", buffering=0) as out:
        for part in parts:
            if isinstance(part, bytes):
                try:
                    view = memoryview(part)
                    while view:
                        view = view[out.write(view) :]
                except OSError as exc:
                    if _is_no_space(exc):
                        raise no_space(target, exc.strerror) from None
                    raise
                continue
            _append(out, part, target)
            os.unlink(part)
        return out.tell()


def _append(out, part: str, target: str) -> None:
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
