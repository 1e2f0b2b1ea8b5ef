from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

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
    assert code == elf.data[offset : offset + 8] and len(code) == 8


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
        elf.check_offset(len(elf.data) + 16)
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
