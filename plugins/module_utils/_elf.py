# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Just enough ELF to place a uprobe: find a function symbol and turn its address
into the file offset the kernel's uprobe_events wants.

Reads the ELF header, the program headers (PT_LOAD segments and their flags), the
section headers, and of the sections only the symbol tables (.symtab and .dynsym)
and their string tables, for 32- and 64-bit files of either byte order, PIE or not.
No objdump, no readelf.

The target runs as root and the path comes from a playbook, so the file is handled
as hostile: only a regular file is opened (checked with stat before the open, so a
device or a FIFO is never opened, and with fstat after it), nothing follows a
symlink swapped in meanwhile, every table is read with pread at its offset (never
the whole file: a 2 GiB debug library costs its symbol tables, not 2 GiB), and every
offset, count and size a header gives is checked against the file's size and a
sanity limit before anything is read, so a truncated or lying header is an
`ElfError`, not a traceback or a huge allocation.

file offset = symbol value - segment p_vaddr + segment p_offset, for the PT_LOAD
segment that contains the value; the offset must fall in that segment's file
bytes, and the segment must be executable.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from typing import Iterator

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

PT_LOAD = 1
PF_X = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_DYNSYM = 11
STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
ET_EXEC = 2
ET_DYN = 3
PN_XNUM = 0xFFFF

# Sanity limits on what a header can make us read.
MAX_HEADER_TABLE = 8 << 20  # the program or section header table
MAX_TABLE = 256 << 20  # one symbol table or string table
SYMBOLS_PER_READ = 4096

# (struct format, size) per ELF class: header (from byte 16), program header,
# section header, symbol.
_FORMATS = {
    False: ("HHIIIIIHHHHHH", "IIIIIIII", "IIIIIIIIII", "IIIBBH"),
    True: ("HHIQQQIHHHHHH", "IIQQQQQQ", "IIQQQQIIQQ", "IBBHQQ"),
}


class ElfError(TracefleetError):
    """Not an ELF file we can use, or no such symbol/offset in it."""


class Segment:
    __slots__ = ("offset", "vaddr", "filesz", "memsz", "flags")

    def __init__(self, offset: int, vaddr: int, filesz: int, memsz: int, flags: int) -> None:
        self.offset = offset
        self.vaddr = vaddr
        self.filesz = filesz
        self.memsz = memsz
        self.flags = flags

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


class Symbol:
    __slots__ = ("name", "value", "size", "kind", "table")

    def __init__(self, name: str, value: int, size: int, kind: int, table: str) -> None:
        self.name = name
        self.value = value
        self.size = size
        self.kind = kind
        self.table = table


class Section:
    __slots__ = ("type", "offset", "size", "link", "entsize")

    def __init__(self, fields: tuple) -> None:
        # name, type, flags, addr, offset, size, link, info, addralign, entsize
        self.type = fields[1]
        self.offset = fields[4]
        self.size = fields[5]
        self.link = fields[6]
        self.entsize = fields[9]


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: str, mode: int) -> ElfError:
    kind = next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")
    return ElfError("%s is %s, not an ELF file (only regular files are read)" % (path, kind))


def _open_regular(path: str) -> tuple[int, int]:
    """(fd, size) of the regular file `path`. A device, FIFO or socket is refused
    before it is opened (opening one can block or have effects); the open follows no
    symlink and does not block, and fstat confirms what stat saw."""
    real = os.path.realpath(path)
    try:
        before = os.stat(real)
    except FileNotFoundError:
        raise ElfError("%s does not exist" % path) from None
    except OSError as exc:
        raise ElfError("cannot read %s: %s" % (path, exc.strerror)) from None
    if not stat.S_ISREG(before.st_mode):
        raise _not_regular(path, before.st_mode)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ElfError("%s was replaced by a symlink while it was read" % path) from None
        raise ElfError("cannot read %s: %s" % (path, exc.strerror)) from None
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        if not stat.S_ISREG(after.st_mode):
            raise _not_regular(path, after.st_mode)
        raise ElfError("%s was replaced while it was read" % path)
    return fd, after.st_size


class ElfFile:
    """An ELF file on disk, read a table at a time. Use it as a context manager (or
    call `close`) to release the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._fd, self.size = _open_regular(path)
        try:
            self._read_header()
            self.segments = self._read_segments()
        except BaseException:
            self.close()
            raise
        self._sections: list[Section] | None = None

    # -- the file ---------------------------------------------------------------------
    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ElfFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def read_at(self, offset: int, size: int, what: str = "data") -> bytes:
        """`size` bytes at `offset`, all of them: a table that the file does not hold
        (a truncated file, or a header that lies) is an ElfError."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ElfError(
                "%s is truncated or damaged: its %s (%d bytes at offset %d) lies beyond the end of the file "
                "(%d bytes)" % (self.path, what, size, offset, self.size)
            )
        if self._fd is None:
            raise ElfError("%s is closed" % self.path)
        chunks = []
        remaining = size
        while remaining:
            try:
                chunk = os.pread(self._fd, remaining, offset + size - remaining)
            except OSError as exc:
                raise ElfError("cannot read %s: %s" % (self.path, exc.strerror)) from None
            if not chunk:
                raise ElfError("%s is truncated: it ended while its %s was read" % (self.path, what))
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _table(self, offset: int, count: int, entsize: int, minimum: int, limit: int, what: str) -> bytes:
        """A table of `count` entries of `entsize` bytes, after checking the header's
        numbers: entries at least as large as the structure they hold, the table
        within the file and within `limit`."""
        if count and entsize < minimum:
            raise ElfError(
                "%s is damaged: its %s entries are %d bytes, less than the %d an entry needs"
                % (self.path, what, entsize, minimum)
            )
        total = count * entsize
        if total > limit:
            raise ElfError(
                "%s: its %s is %d bytes, more than the %d MiB tracefleet reads" % (self.path, what, total, limit >> 20)
            )
        return self.read_at(offset, total, what)

    # -- headers ------------------------------------------------------------------------
    def _read_header(self) -> None:
        ident = self.read_at(0, 16, "ELF header") if self.size >= 16 else b""
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise ElfError("%s is not an ELF file" % self.path)
        elf_class, encoding = ident[4], ident[5]
        if elf_class not in (1, 2) or encoding not in (1, 2):
            raise ElfError("%s has an unknown ELF class or byte order" % self.path)
        self.is64 = elf_class == 2
        self.endian = "<" if encoding == 1 else ">"
        header, self._phdr, self._shdr, self._sym = (self.endian + fmt for fmt in _FORMATS[self.is64])
        size = struct.calcsize(header)
        if self.size < 16 + size:
            raise ElfError("%s is not an ELF file (too short for an ELF header)" % self.path)
        (
            self.type,
            _machine,
            _version,
            _entry,
            self.phoff,
            self.shoff,
            _flags,
            _ehsize,
            self.phentsize,
            self.phnum,
            self.shentsize,
            self.shnum,
            self.shstrndx,
        ) = struct.unpack(header, self.read_at(16, size, "ELF header"))
        if self.type not in (ET_EXEC, ET_DYN):
            raise ElfError("%s is not an executable or shared library (ELF type %d)" % (self.path, self.type))
        if self.phnum == PN_XNUM:
            raise ElfError("%s has more program headers than tracefleet reads" % self.path)

    def _read_segments(self) -> list[Segment]:
        entry = struct.calcsize(self._phdr)
        table = self._table(self.phoff, self.phnum, self.phentsize, entry, MAX_HEADER_TABLE, "program header table")
        segments = []
        for index in range(self.phnum):
            fields = struct.unpack_from(self._phdr, table, index * self.phentsize)
            if self.is64:
                (p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align) = fields
            else:
                (p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_flags, _align) = fields
            if p_type == PT_LOAD:
                segments.append(Segment(p_offset, p_vaddr, p_filesz, p_memsz, p_flags))
        return segments

    def _read_sections(self) -> list[Section]:
        if self._sections is not None:
            return self._sections
        entry = struct.calcsize(self._shdr)
        count = self.shnum
        if count == 0 and self.shoff:
            # Extended numbering: section 0's sh_size holds the count.
            first = self._table(self.shoff, 1, self.shentsize, entry, MAX_HEADER_TABLE, "section header table")
            count = Section(struct.unpack_from(self._shdr, first)).size
        table = self._table(self.shoff, count, self.shentsize, entry, MAX_HEADER_TABLE, "section header table")
        self._sections = [
            Section(struct.unpack_from(self._shdr, table, index * self.shentsize)) for index in range(count)
        ]
        return self._sections

    # -- symbols --------------------------------------------------------------------------
    def _symbol_tables(self) -> Iterator[tuple[str, Section, bytes]]:
        """(name, section, its string table) of .symtab and .dynsym, in file order."""
        sections = self._read_sections()
        for section in sections:
            if section.type not in (SHT_SYMTAB, SHT_DYNSYM):
                continue
            table = ".symtab" if section.type == SHT_SYMTAB else ".dynsym"
            if section.link >= len(sections) or sections[section.link].type != SHT_STRTAB:
                raise ElfError("%s is damaged: the string table of its %s is missing" % (self.path, table))
            strings = sections[section.link]
            yield table, section, self._table(strings.offset, 1, strings.size, 0, MAX_TABLE, table + " string table")

    def _functions(self, table: str, section: Section) -> Iterator[tuple[int, int, int, int]]:
        """(st_name, value, size, kind) of the defined function symbols of a table,
        read a slice at a time."""
        entry = struct.calcsize(self._sym)
        if not section.entsize:
            return
        count = section.size // section.entsize
        if count * section.entsize > MAX_TABLE:
            raise ElfError(
                "%s: its %s is %d bytes, more than the %d MiB tracefleet reads"
                % (self.path, table, count * section.entsize, MAX_TABLE >> 20)
            )
        for first in range(0, count, SYMBOLS_PER_READ):
            number = min(SYMBOLS_PER_READ, count - first)
            data = self._table(
                section.offset + first * section.entsize, number, section.entsize, entry, MAX_TABLE, table
            )
            for index in range(number):
                fields = struct.unpack_from(self._sym, data, index * section.entsize)
                if self.is64:
                    st_name, st_info, _other, st_shndx, st_value, st_size = fields
                else:
                    st_name, st_value, st_size, st_info, _other, st_shndx = fields
                kind = st_info & 0xF
                if kind in (STT_FUNC, STT_GNU_IFUNC) and st_shndx != SHN_UNDEF and st_value:
                    yield st_name, st_value, st_size, kind

    @staticmethod
    def _name(strings: bytes, index: int) -> str:
        if index >= len(strings):
            return ""
        end = strings.find(b"\0", index)
        return strings[index : end if end >= 0 else len(strings)].decode("utf-8", "replace")

    def symbols(self) -> list[Symbol]:
        """Every defined function symbol of .symtab and .dynsym (for small files and
        tests; `find_symbol` does not build this list)."""
        return [
            Symbol(self._name(strings, st_name), value, size, kind, table)
            for table, section, strings in self._symbol_tables()
            for st_name, value, size, kind in self._functions(table, section)
        ]

    def find_symbol(self, name: str) -> Symbol:
        """The function `name`: an exact match first (.symtab before .dynsym, as the
        file orders them), else a versioned one (`name@VERSION`)."""
        versioned: Symbol | None = None
        functions = 0
        for table, section, strings in self._symbol_tables():
            for st_name, value, size, kind in self._functions(table, section):
                functions += 1
                found = self._name(strings, st_name)
                if found == name:
                    return Symbol(found, value, size, kind, table)
                if versioned is None and found.split("@", 1)[0] == name:
                    versioned = Symbol(found, value, size, kind, table)
        if versioned is not None:
            return versioned
        if not functions:
            raise ElfError("%s has no function symbols (stripped, and no .dynsym entry)" % self.path)
        raise ElfError("%s has no function symbol %r" % (self.path, name))

    # -- offsets ----------------------------------------------------------------------------
    def segment_for_address(self, address: int) -> Segment | None:
        for segment in self.segments:
            if segment.vaddr <= address < segment.vaddr + segment.memsz:
                return segment
        return None

    def segment_for_offset(self, offset: int) -> Segment | None:
        for segment in self.segments:
            if segment.offset <= offset < segment.offset + segment.filesz:
                return segment
        return None

    def symbol_offset(self, name: str) -> int:
        """File offset of function `name`, as uprobe_events wants it."""
        symbol = self.find_symbol(name)
        segment = self.segment_for_address(symbol.value)
        if segment is None or not segment.executable:
            raise ElfError(
                "%s: symbol %r (0x%x) is not in an executable load segment" % (self.path, name, symbol.value)
            )
        offset = symbol.value - segment.vaddr + segment.offset
        if offset >= segment.offset + segment.filesz:
            raise ElfError("%s: symbol %r lies beyond the file bytes of its segment" % (self.path, name))
        return offset

    def check_offset(self, offset: int) -> None:
        """The kernel accepts any offset; refuse one outside executable code."""
        if offset >= self.size:
            raise ElfError("offset 0x%x is beyond the end of %s (%d bytes)" % (offset, self.path, self.size))
        segment = self.segment_for_offset(offset)
        if segment is None or not segment.executable:
            raise ElfError(
                "offset 0x%x of %s is not in executable code (no executable load "
                "segment covers it)" % (offset, self.path)
            )
