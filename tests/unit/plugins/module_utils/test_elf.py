from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import subprocess

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _elf
from ansible_collections.tracefleet.ftrace.plugins.module_utils._elf import ElfError, ElfFile

SOURCE = """
int tracefleet_probe_target(int x) { return x * 3 + 1; }
static int helper(int x) { return x - 1; }
int main(int argc, char **argv) { (void)argv; return helper(tracefleet_probe_target(argc)); }
"""


def compile_program(tmp_path, flags):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    source = tmp_path / "prog.c"
    source.write_text(SOURCE)
    binary = tmp_path / ("prog" + "".join(flags).replace("-", "_"))
    subprocess.run(["gcc", "-O0", "-o", str(binary), str(source)] + flags, check=True)
    return str(binary)


def test_pie_offset_maps_through_the_executable_segment(tmp_path):
    path = compile_program(tmp_path, ["-pie", "-fPIE"])
    elf = ElfFile(path)
    symbol = elf.find_symbol("tracefleet_probe_target")
    segment = elf.segment_for_address(symbol.value)
    assert segment.executable
    offset = elf.symbol_offset("tracefleet_probe_target")
    assert offset == symbol.value - segment.vaddr + segment.offset
    # The bytes at the file offset are the function's code: the same as at its
    # address in the loaded image (address - vaddr + offset).
    with open(path, "rb") as handle:
        code = handle.read()[offset : offset + 8]
    assert code == elf.read_at(offset, 8) and len(code) == 8


def test_non_pie_offset_is_not_the_address(tmp_path):
    path = compile_program(tmp_path, ["-no-pie"])
    elf = ElfFile(path)
    symbol = elf.find_symbol("tracefleet_probe_target")
    offset = elf.symbol_offset("tracefleet_probe_target")
    assert symbol.value >= 0x400000  # linked at a fixed address
    assert (
        offset
        == symbol.value - elf.segment_for_address(symbol.value).vaddr + elf.segment_for_address(symbol.value).offset
    )
    assert offset < symbol.value


def test_static_functions_come_from_symtab(tmp_path):
    elf = ElfFile(compile_program(tmp_path, ["-pie", "-fPIE"]))
    assert elf.find_symbol("helper").table == ".symtab"


def test_stripped_binary_uses_dynsym_or_says_so(tmp_path):
    path = compile_program(tmp_path, ["-pie", "-fPIE", "-s"])
    with pytest.raises(ElfError, match="no function symbols|no function symbol"):
        ElfFile(path).find_symbol("tracefleet_probe_target")


def test_dynsym_of_a_system_library():
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    try:
        elf = ElfFile(libc)
    except ElfError:
        pytest.skip("no x86_64 libc here")
    offset = elf.symbol_offset("malloc")
    elf.check_offset(offset)
    assert elf.find_symbol("malloc").table == ".dynsym"


def test_missing_symbol(tmp_path):
    elf = ElfFile(compile_program(tmp_path, ["-pie", "-fPIE"]))
    with pytest.raises(ElfError, match="no function symbol 'no_such_function'"):
        elf.symbol_offset("no_such_function")


def test_offset_checks(tmp_path):
    elf = ElfFile(compile_program(tmp_path, ["-pie", "-fPIE"]))
    elf.check_offset(elf.symbol_offset("main"))
    with pytest.raises(ElfError, match="beyond the end"):
        elf.check_offset(elf.size + 16)
    with pytest.raises(ElfError, match="not in executable code"):
        elf.check_offset(0)  # the ELF header: a read-only segment


@pytest.mark.parametrize(
    "content, message",
    [
        (b"#!/bin/sh\necho hi\n" * 4, "is not an ELF file"),
        (b"\x7fELF" + b"\x09" * 60, "unknown ELF class"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<H", 1) + b"\0" * 46, "not an executable or shared library"),
    ],
)
def test_not_usable_files(tmp_path, content, message):
    path = tmp_path / "file"
    path.write_bytes(content)
    with pytest.raises(ElfError, match=message):
        ElfFile(str(path))


def test_missing_and_directory(tmp_path):
    with pytest.raises(ElfError, match="does not exist"):
        ElfFile(str(tmp_path / "nope"))
    with pytest.raises(ElfError, match="is a directory"):
        ElfFile(str(tmp_path))


# -- hostile files: only regular files, only the tables needed, no lying header ------------


@pytest.fixture
def no_hang():
    def timeout(*_args):
        raise AssertionError("the ELF reader blocked")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_devices_are_refused_without_being_opened(monkeypatch):
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *args: opened.append(path) or real_open(path, *args))
    with pytest.raises(ElfError, match="/dev/zero is a character device, not an ELF file"):
        ElfFile("/dev/zero")
    assert opened == []


def test_a_fifo_is_refused_at_once(tmp_path, no_hang):
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    with pytest.raises(ElfError, match="is a FIFO, not an ELF file"):
        ElfFile(str(fifo))
    link = tmp_path / "innocent"
    link.symlink_to(fifo)
    with pytest.raises(ElfError, match="innocent is a FIFO"):
        ElfFile(str(link))


def test_a_socket_is_refused(tmp_path):
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(path)
        with pytest.raises(ElfError, match="is a socket"):
            ElfFile(path)
    finally:
        server.close()


def test_a_huge_file_is_not_read_whole(tmp_path, monkeypatch):
    path = compile_program(tmp_path, ["-pie", "-fPIE"])
    with open(path, "r+b") as handle:
        handle.truncate(2 << 30)  # sparse: a 2 GiB "debug library"
    read = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, size, offset: read.append(size) or real_pread(fd, size, offset))
    with ElfFile(path) as elf:
        assert elf.size == 2 << 30
        elf.check_offset(elf.symbol_offset("tracefleet_probe_target"))
    assert sum(read) < 1 << 20


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt) :]


def test_truncated_files_are_clear_errors(tmp_path):
    data = open(compile_program(tmp_path, ["-pie", "-fPIE"]), "rb").read()
    target = tmp_path / "cut"
    for size in (4, 16, 40, 63, 64, 100, 400, len(data) // 2, len(data) - 100):
        target.write_bytes(data[:size])
        try:
            ElfFile(str(target)).symbol_offset("tracefleet_probe_target")
        except ElfError as exc:
            assert str(target) in str(exc)


@pytest.mark.parametrize(
    "offset, fmt, value, message",
    [
        (0x38, "<H", 0xFFFE, "program header table .* lies beyond the end"),  # e_phnum
        (0x36, "<H", 8, "program header table entries are 8 bytes, less than the 56"),  # e_phentsize
        (0x20, "<Q", 1 << 62, "program header table .* lies beyond the end"),  # e_phoff
        (0x28, "<Q", 1 << 62, "section header table .* lies beyond the end"),  # e_shoff
        (0x3A, "<H", 4, "section header table entries are 4 bytes"),  # e_shentsize
        (0x3C, "<H", 0xFFFE, "section header table .* lies beyond the end"),  # e_shnum
    ],
)
def test_lying_headers_are_clear_errors(tmp_path, offset, fmt, value, message):
    data = open(compile_program(tmp_path, ["-pie", "-fPIE"]), "rb").read()
    target = tmp_path / "liar"
    target.write_bytes(_patched(data, offset, fmt, value))
    with pytest.raises(ElfError, match=message):
        ElfFile(str(target)).symbol_offset("tracefleet_probe_target")


def test_lying_symbol_tables_are_clear_errors(tmp_path):
    path = compile_program(tmp_path, ["-pie", "-fPIE"])
    data = open(path, "rb").read()
    with ElfFile(path) as elf:
        sections = elf._read_sections()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    index = next(i for i, section in enumerate(sections) if section.type == _elf.SHT_SYMTAB)
    base = shoff + index * 64
    target = tmp_path / "liar"
    for field, value, message in (
        (base + 0x20, 1 << 40, "its .symtab is .* more than the 256 MiB"),  # sh_size
        (base + 0x18, 1 << 40, "lies beyond the end"),  # sh_offset
        (base + 0x38, 3, "entries are 3 bytes"),  # sh_entsize
    ):
        target.write_bytes(_patched(data, field, "<Q", value))
        with pytest.raises(ElfError, match=message):
            ElfFile(str(target)).find_symbol("tracefleet_probe_target")
    target.write_bytes(_patched(data, base + 0x28, "<I", 0xFFFF))  # sh_link
    with pytest.raises(ElfError, match="the string table of its .symtab is missing"):
        ElfFile(str(target)).find_symbol("tracefleet_probe_target")


def test_random_damage_is_never_a_traceback(tmp_path):
    data = bytearray(open(compile_program(tmp_path, ["-pie", "-fPIE"]), "rb").read())
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    regions = [(0, 64), (64, 64 + 56 * 13), (shoff, len(data))]
    generator = random.Random(12)
    target = tmp_path / "damaged"
    for _attempt in range(300):
        damaged = bytearray(data)
        for _byte in range(generator.randint(1, 6)):
            start, end = generator.choice(regions)
            damaged[generator.randrange(start, min(end, len(data)))] = generator.randrange(256)
        target.write_bytes(bytes(damaged))
        try:
            with ElfFile(str(target)) as elf:
                elf.check_offset(elf.symbol_offset("tracefleet_probe_target"))
        except ElfError:
            pass
