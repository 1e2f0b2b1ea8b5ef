# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writing a trace-cmd trace.dat file, version 6, on the traced host.

The layout follows trace-cmd.dat.v6(5): the initial format (magic, "tracing", the
version string, endianness, long size, page size), header_page and header_event,
the ftrace and event format files, kallsyms, printk formats, saved cmdlines, the
CPU count, an options section (CPUSTAT per CPU, TRACECLOCK, UNAME), "flyrecord"
with each CPU's offset and size, then the per-CPU ring-buffer pages, copied as
the kernel handed them out of per_cpu/cpuN/trace_pipe_raw, starting at a page
boundary.

Everything is written in the host's byte order, which is what the kernel's pages
are in. The header comes in two parts, so that the first (formats and kallsyms,
most of it) can be prepared while a window is still open, and the second once the
sizes of the per-CPU data are known. Each part, and each CPU's data, can be
compressed on its own: concatenated zstd frames or gzip members unpack to the
concatenated file.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import struct
import sys

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

MAGIC = b"\x17\x08\x44tracing"
VERSION = b"6"

# Option ids (trace-cmd.dat.v7(5) lists them; version 6 uses the same ids).
OPTION_DONE = 0
OPTION_CPUSTAT = 2
OPTION_TRACECLOCK = 4
OPTION_UNAME = 5


class TraceDatError(TracefleetError):
    """Data that cannot make a valid trace.dat."""


class DatLayout:
    """What goes into one trace.dat, everything but the per-CPU pages as bytes."""

    def __init__(
        self,
        page_size: int,
        header_page: bytes,
        header_event: bytes,
        ftrace_formats: list,
        systems: list,
        kallsyms: bytes,
        printk_formats: bytes,
        cmdlines: bytes,
        cpu_stats: list,
        trace_clock: bytes,
        uname: bytes,
    ) -> None:
        self.page_size = page_size
        self.header_page = header_page
        self.header_event = header_event
        self.ftrace_formats = ftrace_formats  # [bytes]
        self.systems = systems  # [(name, [bytes])]
        self.kallsyms = kallsyms
        self.printk_formats = printk_formats
        self.cmdlines = cmdlines
        self.cpu_stats = cpu_stats  # [bytes], one per CPU, in CPU order
        self.trace_clock = trace_clock
        self.uname = uname


class _Writer:
    def __init__(self, handle, order: str) -> None:
        self.handle = handle
        self.prefix = "<" if order == "little" else ">"

    def raw(self, data: bytes) -> None:
        self.handle.write(data)

    def u16(self, value: int) -> None:
        self.raw(struct.pack(self.prefix + "H", value))

    def u32(self, value: int) -> None:
        self.raw(struct.pack(self.prefix + "I", value))

    def u64(self, value: int) -> None:
        self.raw(struct.pack(self.prefix + "Q", value))

    def sized32(self, data: bytes) -> None:
        self.u32(len(data))
        self.raw(data)

    def sized64(self, data: bytes) -> None:
        self.u64(len(data))
        self.raw(data)


def _cstring(data: bytes) -> bytes:
    return data.rstrip(b"\0") + b"\0"


def _initial(out: _Writer, layout: DatLayout, order: str, long_size: int) -> None:
    out.raw(MAGIC)
    out.raw(VERSION + b"\0")
    out.raw(bytes([0 if order == "little" else 1, long_size]))
    out.u32(layout.page_size)


def opening_bytes(
    layout: DatLayout, order: str = sys.byteorder, long_size: int = ctypes.sizeof(ctypes.c_long)
) -> bytes:
    """The file's first part, which does not change during a window: the initial
    format, header_page, header_event, the ftrace and event formats, and kallsyms."""
    buf = io.BytesIO()
    out = _Writer(buf, order)
    _initial(out, layout, order, long_size)
    out.raw(b"header_page\0")
    out.sized64(layout.header_page)
    out.raw(b"header_event\0")
    out.sized64(layout.header_event)
    out.u32(len(layout.ftrace_formats))
    for fmt in layout.ftrace_formats:
        out.sized64(fmt)
    out.u32(len(layout.systems))
    for name, formats in layout.systems:
        out.raw(_cstring(name.encode()))
        out.u32(len(formats))
        for fmt in formats:
            out.sized64(fmt)
    out.sized32(layout.kallsyms)
    return buf.getvalue()


def closing_bytes(layout: DatLayout, opening_size: int, cpu_sizes: list, order: str = sys.byteorder) -> bytes:
    """The rest of the header, known when the window has closed: printk formats, saved
    cmdlines, the CPU count, the options (per-CPU stats, trace clock, uname), the
    flyrecord table for CPUs with the given data sizes (whole pages each), the trace
    clock again (where version 6 readers look for it after the table), and the padding
    that puts the first CPU's data on a page boundary of the file."""
    buf = io.BytesIO()
    out = _Writer(buf, order)
    out.sized32(layout.printk_formats)
    out.sized64(layout.cmdlines)
    out.u32(len(cpu_sizes))
    out.raw(b"options  \0")
    options = [(OPTION_CPUSTAT, _cstring(stats)) for stats in layout.cpu_stats]
    options.append((OPTION_TRACECLOCK, _cstring(layout.trace_clock)))
    options.append((OPTION_UNAME, _cstring(layout.uname)))
    for option, data in options:
        out.u16(option)
        out.sized32(data)
    out.u16(OPTION_DONE)
    out.raw(b"flyrecord\0")
    clock = layout.trace_clock.rstrip(b"\0") + b"\n"
    table_end = opening_size + buf.tell() + 16 * len(cpu_sizes) + 8 + len(clock)
    offset = -(-table_end // layout.page_size) * layout.page_size
    padding = offset - table_end
    for size in cpu_sizes:
        out.u64(offset)
        out.u64(size)
        offset += size
    out.sized64(clock)
    buf.write(b"\0" * padding)
    return buf.getvalue()


def header_bytes(
    layout: DatLayout, cpu_sizes: list, order: str = sys.byteorder, long_size: int = ctypes.sizeof(ctypes.c_long)
) -> bytes:
    """Everything before the per-CPU data, padding included."""
    opening = opening_bytes(layout, order, long_size)
    return opening + closing_bytes(layout, len(opening), cpu_sizes, order)


def check_pages(layout: DatLayout, cpu_sizes: list) -> None:
    """Each CPU's data must be whole pages, or readers would misplace every page after
    the first short one."""
    for cpu, size in enumerate(cpu_sizes):
        if size % layout.page_size:
            raise TraceDatError(
                "cpu%d's ring-buffer data is %d bytes, not whole %d-byte pages: the kernel's pages are "
                "another size than the trace.dat would declare, so no trace.dat was written"
                % (cpu, size, layout.page_size)
            )


def write(path: str, layout: DatLayout, cpu_files: list) -> int:
    """Write the trace.dat at `path` from the layout and the per-CPU page files (one per
    CPU, in order). Returns the file's size."""
    sizes = [os.path.getsize(name) for name in cpu_files]
    check_pages(layout, sizes)
    with open(path, "wb") as handle:
        handle.write(header_bytes(layout, sizes))
        for name in cpu_files:
            with open(name, "rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)
        return handle.tell()
