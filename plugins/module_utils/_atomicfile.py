# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way tracefleet replaces a regular file (fstab, the ledger, manifests,
the run's reports and archives, whole or written as a stream).

A temp file in the same directory, written, fsync'd, given its mode, renamed over
the target, and the directory fsync'd: a reader sees the old file or the new one,
never half of either, and a crash leaves one of the two on disk. The temp file is
removed on any failure.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile


def _mode_for(path: str, mode: int | None) -> int:
    """The mode asked for; else the existing file's; else 0666 less the umask."""
    if mode is not None:
        return mode
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


def _owner_of(path: str) -> tuple[int, int] | None:
    """The existing file's owner, to keep when root replaces it (None: nothing to keep)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_uid, info.st_gid


class Pending:
    """A replacement being written: `stream` is the temporary file (seekable);
    `cancel()` leaves the target as it is and removes the temporary file."""

    def __init__(self, stream, temporary: str) -> None:
        self.stream, self.temporary, self.cancelled = stream, temporary, False

    def cancel(self) -> None:
        self.cancelled = True


@contextlib.contextmanager
def replacing(path: str, mode: int | None = None):
    """`replace` for content written as a stream: yields a Pending whose `stream` the
    caller writes; when the block ends normally (and was not cancelled) the file
    replaces `path` in one step. Raises OSError."""
    directory = os.path.dirname(path) or "."
    final_mode = _mode_for(path, mode)
    owner = _owner_of(path) if os.geteuid() == 0 else None
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(handle, "w+b") as stream:
            pending = Pending(stream, temporary)
            yield pending
            if not pending.cancelled:
                stream.flush()
                if owner is not None:
                    os.fchown(stream.fileno(), *owner)
                os.fchmod(stream.fileno(), final_mode)
                os.fsync(stream.fileno())
        if pending.cancelled:
            os.unlink(temporary)
            return
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def replace(path: str, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` in one step. `mode` None keeps the existing file's
    mode (or uses 0666 less the umask for a new file); the existing owner is kept when
    the caller can set it (root). Raises OSError."""
    with replacing(path, mode) as pending:
        pending.stream.write(data)


def replace_text(path: str, text: str, mode: int | None = None) -> None:
    """`replace` for UTF-8 text."""
    replace(path, text.encode("utf-8"), mode)
