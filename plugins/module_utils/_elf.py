# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Just enough ELF to place a uprobe: find a function symbol and turn its address
into the file offset the kernel's uprobe_events wants.

Reads the ELF header, the program headers (PT_LOAD segments and their flags) and
the symbol tables (.symtab and .dynsym with their string tables), for 32- and
64-bit files of either byte order, PIE or not. No objdump, no readelf.

file offset = symbol value - segment p_vaddr + segment p_offset, for the PT_LOAD
segment that contains the value; the offset must fall in that segment's file
bytes, and the segment must be executable.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import struct

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

PT_LOAD = 1
PF_X = 1
SHT_SYMTAB = 2
SHT_DYNSYM = 11
STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
ET_EXEC = 2
ET_DYN = 3


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


class ElfFile:
    """An ELF file read into memory (executables and libraries are small enough)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as handle:
                self.data = handle.read()
        except FileNotFoundError:
            raise ElfError("%s does not exist" % path) from None
        except IsADirectoryError:
            raise ElfError("%s is a directory, not an ELF file" % path) from None
        except OSError as exc:
            raise ElfError("cannot read %s: %s" % (path, exc.strerror)) from None
        if len(self.data) < 52 or self.data[:4] != b"\x7fELF":
            raise ElfError("%s is not an ELF file" % path)
        elf_class, encoding = self.data[4], self.data[5]
        if elf_class not in (1, 2) or encoding not in (1, 2):
            raise ElfError("%s has an unknown ELF class or byte order" % path)
        self.is64 = elf_class == 2
        self.endian = "<" if encoding == 1 else ">"
        try:
            self._read_header()
            self.segments = self._read_segments()
        except struct.error:
            raise ElfError("%s is a truncated ELF file" % path) from None
        self._symbols: list[Symbol] | None = None

    def _unpack(self, fmt: str, offset: int) -> tuple:
        return struct.unpack_from(self.endian + fmt, self.data, offset)

    def _read_header(self) -> None:
        if self.is64:
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
            ) = self._unpack("HHIQQQIHHHHHH", 16)
        else:
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
            ) = self._unpack("HHIIIIIHHHHHH", 16)
        if self.type not in (ET_EXEC, ET_DYN):
            raise ElfError("%s is not an executable or shared library (ELF type %d)" % (self.path, self.type))

    def _read_segments(self) -> list[Segment]:
        segments = []
        for index in range(self.phnum):
            base = self.phoff + index * self.phentsize
            if self.is64:
                (p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align) = self._unpack("IIQQQQQQ", base)
            else:
                (p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_flags, _align) = self._unpack("IIIIIIII", base)
            if p_type == PT_LOAD:
                segments.append(Segment(p_offset, p_vaddr, p_filesz, p_memsz, p_flags))
        return segments

    def _sections(self) -> list[tuple]:
        sections = []
        for index in range(self.shnum):
            base = self.shoff + index * self.shentsize
            if self.is64:
                fields = self._unpack("IIQQQQIIQQ", base)
            else:
                fields = self._unpack("IIIIIIIIII", base)
            # name, type, flags, addr, offset, size, link, info, addralign, entsize
            sections.append(fields)
        return sections

    def _string(self, table_offset: int, index: int) -> str:
        start = table_offset + index
        end = self.data.find(b"\0", start)
        return self.data[start : end if end >= 0 else len(self.data)].decode("utf-8", "replace")

    def symbols(self) -> list[Symbol]:
        """Function symbols from .symtab and .dynsym (defined ones only)."""
        if self._symbols is not None:
            return self._symbols
        found: list[Symbol] = []
        try:
            sections = self._sections()
            for section in sections:
                sh_type, sh_offset, sh_size, sh_link, sh_entsize = (
                    section[1],
                    section[4],
                    section[5],
                    section[6],
                    section[9],
                )
                if sh_type not in (SHT_SYMTAB, SHT_DYNSYM) or not sh_entsize:
                    continue
                strtab_offset = sections[sh_link][4]
                table = ".symtab" if sh_type == SHT_SYMTAB else ".dynsym"
                for index in range(sh_size // sh_entsize):
                    base = sh_offset + index * sh_entsize
                    if self.is64:
                        st_name, st_info, _other, st_shndx, st_value, st_size = self._unpack("IBBHQQ", base)
                    else:
                        st_name, st_value, st_size, st_info, _other, st_shndx = self._unpack("IIIBBH", base)
                    kind = st_info & 0xF
                    if kind not in (STT_FUNC, STT_GNU_IFUNC) or st_shndx == SHN_UNDEF:
                        continue
                    if not st_value:
                        continue
                    found.append(Symbol(self._string(strtab_offset, st_name), st_value, st_size, kind, table))
        except (struct.error, IndexError):
            raise ElfError("%s has a damaged section or symbol table" % self.path) from None
        self._symbols = found
        return found

    def find_symbol(self, name: str) -> Symbol:
        for symbol in self.symbols():
            if symbol.name == name:
                return symbol
        # Versioned dynamic symbols can carry a suffix (name@@VERSION) in some tools' eyes.
        for symbol in self.symbols():
            if symbol.name.split("@", 1)[0] == name:
                return symbol
        if not self.symbols():
            raise ElfError("%s has no function symbols (stripped, and no .dynsym entry)" % self.path)
        raise ElfError("%s has no function symbol %r" % (self.path, name))

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
        if offset >= len(self.data):
            raise ElfError("offset 0x%x is beyond the end of %s (%d bytes)" % (offset, self.path, len(self.data)))
        segment = self.segment_for_offset(offset)
        if segment is None or not segment.executable:
            raise ElfError(
                "offset 0x%x of %s is not in executable code (no executable load "
                "segment covers it)" % (offset, self.path)
            )
