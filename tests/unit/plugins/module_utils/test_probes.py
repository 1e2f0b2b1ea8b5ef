from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _probes


@pytest.fixture
def tree(fake_host):
    fake_host.mount_tracefs(
        {
            "available_filter_functions": "do_sys_openat2\nvfs_read\nnfs_open [nfs]\n",
            "dynamic_events": "",
            "error_log": "",
        }
    )
    return fake_host.tracing


@pytest.fixture
def tracing(fake_host, tree):
    return fake_host.tracing_dir()


@pytest.fixture
def control(tracing, monkeypatch, tmp_path):
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(
        "0000000000000000 T do_sys_openat2\n0000000000000000 t notrace_fn\n0000000000000000 D some_data\n"
    )
    real = _probes.kprobe_target
    monkeypatch.setattr(
        _probes, "kprobe_target", lambda control, kind, target: real(control, kind, target, str(kallsyms))
    )
    return tracing


@pytest.fixture
def binary(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    source = tmp_path / "t.c"
    source.write_text("int target_fn(int x) { return x + 1; }\nint main(void) { return target_fn(1); }\n")
    path = tmp_path / "t"
    subprocess.run(["gcc", "-O0", "-o", str(path), str(source)], check=True)
    return str(path)


def test_kprobe_definition(control):
    definition = _probes.build(control, "kprobe", "tracefleet", "open", "do_sys_openat2", ["filename=+0($arg2):string"])
    assert definition.line() == "p:tracefleet/open do_sys_openat2 filename=+0($arg2):string"


def test_kretprobe_and_kallsyms_only_symbol(control):
    definition = _probes.build(control, "kretprobe", "g", "ret", "notrace_fn", ["ret=$retval"])
    assert definition.line() == "r:g/ret notrace_fn ret=$retval"


def test_uprobe_by_symbol_and_by_offset(control, binary):
    by_symbol = _probes.build(control, "uprobe", "g", "u", binary + ":target_fn", [])
    offset = int(by_symbol.target.rsplit(":", 1)[1], 16)
    by_offset = _probes.build(control, "uprobe", "g", "u", "%s:0x%x" % (binary, offset), [])
    assert by_symbol.key() == by_offset.key()
    assert _probes.build(control, "uretprobe", "g", "u", binary + ":target_fn", ["r=$retval"]).kind == "r"


@pytest.mark.parametrize(
    "kernel_line, written",
    [
        ("r10:tracefleet/ret do_sys_openat2 ret=$retval", "r:tracefleet/ret do_sys_openat2 ret=$retval"),
        ("p:g/open do_sys_openat2 f=+0($arg2):string", "p:g/open do_sys_openat2+0 f=+0($arg2):string"),
        ("p:g/open do_sys_openat2+16", "p:g/open do_sys_openat2+0x10"),
        ("p:g/u /usr/bin/bash:0x00000000000a1b20", "p:g/u /usr/bin/bash:0xa1b20"),
    ],
)
def test_kernel_read_back_compares_equal(kernel_line, written):
    assert _probes.parse_line(kernel_line).key() == _probes.parse_line(written).key()


@pytest.mark.parametrize(
    "kernel_line, written",
    [
        ("p:g/open do_sys_openat2 f=+0($arg2):string", "p:g/open do_sys_openat2 f=+0($arg2):ustring"),
        ("p:g/open do_sys_openat2", "r:g/open do_sys_openat2"),
        ("p:g/u /usr/bin/bash:0x0000000000000010", "p:g/u /usr/bin/bash:0x20"),
    ],
)
def test_different_definitions_differ(kernel_line, written):
    assert _probes.parse_line(kernel_line).key() != _probes.parse_line(written).key()


def test_parse_ignores_other_dynamic_events():
    assert _probes.parse_line("s:synthetic/lat u64 lat") is None


def test_read_definitions(tree, tracing):
    (tree / "dynamic_events").write_text("p:tracefleet/open do_sys_openat2\nr10:other/ret vfs_read ret=$retval\n")
    found = _probes.ProbeSet(tracing).definitions()
    assert set(found) == {("tracefleet", "open"), ("other", "ret")}
    assert found[("other", "ret")][1] == "r10:other/ret vfs_read ret=$retval"


def test_enabled_in_top_and_instances(tree, tracing):
    for base in ("", "instances/a/", "instances/b/"):
        event = tree / (base + "events/tracefleet/open")
        event.mkdir(parents=True)
        (event / "enable").write_text("1\n" if base != "instances/b/" else "0\n")
    assert _probes.ProbeSet(tracing).enabled_in("tracefleet", "open") == [None, "a"]


BAD = [
    ({"target": "no_such_symbol_xyz"}, "kernel symbol 'no_such_symbol_xyz' does not exist"),
    ({"target": "some_data"}, "kernel symbol 'some_data' does not exist"),
    ({"target": ""}, "target is empty"),
    ({"target": "   "}, "target is empty"),
    ({"target": "do-sys"}, "is not SYMBOL[+OFFSET]"),
    ({"type": "kretprobe", "target": "do_sys_openat2+4"}, "only be placed at a function's entry"),
    ({"type": "tracepoint"}, "type='tracepoint'"),
    ({"name": ""}, "name='' is not a valid event name"),
    ({"name": "has space"}, "name='has space' is not a valid event name"),
    ({"name": "a/b"}, "name='a/b' is not a valid event name"),
    ({"group": "9group"}, "group='9group' is not a valid event name"),
    ({"fetchargs": ["$arg1"]}, "must be NAME=FETCHARG"),
    ({"fetchargs": ["bad-name=$arg1"]}, "has an invalid name"),
    ({"fetchargs": ["a=$arg1", "a=$arg2"]}, "must be unique"),
    ({"fetchargs": ["x="]}, "empty fetcharg"),
    ({"fetchargs": ["ret=$retval"]}, "$retval is only available to kretprobes"),
    ({"type": "uprobe", "target": "/bin/true"}, "a uprobe target is PATH:SYMBOL or PATH:0xOFFSET"),
    ({"type": "uprobe", "target": "relative/bin:main"}, "must be absolute"),
    ({"type": "uprobe", "target": "/no/such/file:main"}, "does not exist"),
]


@pytest.mark.parametrize("overrides, message", BAD)
def test_bad_definitions(control, overrides, message):
    args = dict(probe_type="kprobe", group="tracefleet", name="p", target="do_sys_openat2", fetchargs=[])
    for key, value in overrides.items():
        args["probe_type" if key == "type" else key] = value
    with pytest.raises(_probes.ProbeError) as failure:
        _probes.build(control, **args)
    assert message in str(failure.value)


def test_bad_uprobe_files(control, binary, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    cases = [
        (str(script) + ":main", "is not an ELF file"),
        (binary + ":no_such_symbol", "no function symbol 'no_such_symbol'"),
        (binary + ":0x7fffffff", "beyond the end"),
        (binary + ":0x0", "not in executable code"),
        (str(tmp_path) + ":main", "is a directory"),
    ]
    for target, message in cases:
        with pytest.raises(_probes.ProbeError) as failure:
            _probes.build(control, "uprobe", "g", "u", target, [])
        assert message in str(failure.value), target


# Every field that reaches a probe line, with what the kernel would do to it.
INJECTIONS = [
    ({"name": "open\n"}, "name='open\\n' is not a valid event name"),
    ({"name": "open\n-:other/probe"}, "is not a valid event name"),
    ({"group": "tracefleet\n"}, "group='tracefleet\\n' is not a valid event name"),
    ({"name": "a#b"}, "name='a#b' is not a valid event name"),
    ({"target": "do_sys_openat2\n"}, r"target='do_sys_openat2\n': '\n' at position 14 cannot be part"),
    ({"target": "do_sys_openat2\n-:other/probe"}, "cannot be part of a probe definition"),
    ({"target": "do_sys_openat2#x"}, "'#' at position 14 cannot be part"),
    ({"target": "do_sys_openat2 x=%di"}, "' ' at position 14 cannot be part"),
    ({"target": "do_sys_openat2\t"}, "cannot be part of a probe definition"),
    ({"fetchargs": ["x=%di#note"]}, "fetchargs[0]='x=%di#note': '#' at position 5"),
    ({"fetchargs": ["x=%di\n-:other/probe"]}, "fetchargs[0]="),
    ({"fetchargs": ["x=%di y=%si"]}, "fetchargs[0]='x=%di y=%si': ' ' at position 5"),
    ({"fetchargs": ["ok=%di", " x=%si"]}, "fetchargs[1]"),
    ({"fetchargs": ["x=%di\n"]}, "fetchargs[0]"),
    ({"fetchargs": ["x=+0($arg2):string\x00"]}, "fetchargs[0]"),
    ({"fetchargs": ["x=\u00e0"]}, "printable ASCII"),
    ({"fetchargs": ["x\n=%di"]}, "fetchargs[0]"),
]


@pytest.mark.parametrize("overrides, message", INJECTIONS)
def test_nothing_reaches_a_probe_line_that_the_kernel_would_split_or_cut(control, overrides, message):
    args = dict(probe_type="kprobe", group="tracefleet", name="p", target="do_sys_openat2", fetchargs=[])
    args.update(overrides)
    with pytest.raises(_probes.ProbeError) as failure:
        _probes.build(control, **args)
    assert message in str(failure.value)


@pytest.mark.parametrize(
    "target, message",
    [
        ("vfs_read+08", "the offset '08' must be hexadecimal with 0x"),
        ("vfs_read+010", "the kernel would read a leading 0 as octal"),
        ("vfs_read+0x", "the offset '0x' must be"),
        ("vfs_read+", "the offset '' must be"),
        ("vfs_read+-1", "the offset '-1' must be"),
        ("vfs_read+1+2", "the offset '1+2' must be"),
        ("vfs_read+0b1", "the offset '0b1' must be"),
    ],
)
def test_kprobe_offsets_that_the_kernel_reads_otherwise_are_refused(control, target, message):
    with pytest.raises(_probes.ProbeError, match="target=") as failure:
        _probes.build(control, "kprobe", "g", "p", target, [])
    assert message in str(failure.value)


@pytest.mark.parametrize(
    "target, line", [("vfs_read+0x10", "vfs_read+16"), ("vfs_read+16", "vfs_read+16"), ("vfs_read+0", "vfs_read")]
)
def test_kprobe_offsets_taken(control, target, line):
    assert _probes.build(control, "kprobe", "g", "p", target, []).target == line


def test_uprobe_offsets_that_the_kernel_reads_otherwise_are_refused(control, binary):
    for location in ("0100", "target_fn+010", "target_fn+08", "0x", "target_fn+x"):
        with pytest.raises(_probes.ProbeError, match="the offset .* must be hexadecimal with 0x"):
            _probes.build(control, "uprobe", "g", "u", "%s:%s" % (binary, location), [])


def test_uprobe_path_is_checked_after_resolving_links(control, binary, tmp_path):
    hostile = tmp_path / "x\n-:tracefleet\nb"
    hostile.write_bytes(open(binary, "rb").read())
    link = tmp_path / "clean"
    link.symlink_to(hostile)
    with pytest.raises(_probes.ProbeError) as failure:
        _probes.build(control, "uprobe", "g", "u", str(link) + ":target_fn", [])
    assert "the path resolves to %r" % str(hostile) in str(failure.value)
    assert "'\\n'" in str(failure.value)
    spaced = tmp_path / "My App"
    spaced.mkdir()
    (spaced / "x").write_bytes(open(binary, "rb").read())
    with pytest.raises(_probes.ProbeError, match="' ' at position"):
        _probes.build(control, "uprobe", "g", "u", str(spaced / "x") + ":target_fn", [])


def test_the_built_line_must_parse_back_to_the_same_definition():
    good = _probes.Definition("p", "g", "e", "vfs_read", ["x=%di"])
    assert good.checked_line() == "p:g/e vfs_read x=%di"
    for bad in (
        _probes.Definition("p", "g", "e", "vfs_read\n-:g/other", []),
        _probes.Definition("p", "g", "e", "vfs_read x=%di", []),
        _probes.Definition("p", "g", "e", "", []),
        _probes.Definition("p", "g/h", "e", "vfs_read", []),
        _probes.Definition("p", "g", "e", "vfs_read", ["x=%di y=%si"]),
    ):
        with pytest.raises(_probes.ProbeError, match="does not read back as the one probe definition"):
            bad.checked_line()


@pytest.mark.parametrize("line", ["p:g/e vfs_read\n-:g/x", "p:g/e\nvfs_read", "p:g/e vfs_read\x00"])
def test_parse_line_takes_one_line_only(line):
    assert _probes.parse_line(line) is None


@pytest.mark.parametrize("value", ["x\n", "x\nb", "1x", "a b", "a#b", "", "a/b"])
def test_identifier_validator_is_a_full_match(value):
    with pytest.raises(_probes.ProbeError, match="is not a valid event name"):
        _probes.validate_identifier("name", value)


def test_removal_line_is_validated():
    assert _probes.removal_line("g", "e") == "-:g/e"
    with pytest.raises(_probes.ProbeError):
        _probes.removal_line("g", "e\n-:other/x")


def test_a_bad_offset_is_named_before_the_symbol_is_looked_up(control, tmp_path):
    stripped = tmp_path / "stripped"
    stripped.write_bytes(open("/bin/true", "rb").read())
    with pytest.raises(_probes.ProbeError, match="the offset '010' must be"):
        _probes.build(control, "uprobe", "g", "u", str(stripped) + ":no_such_symbol+010", [])


def test_uprobes_on_devices_and_fifos_are_refused_at_once(control, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    for target, message in (
        ("/dev/zero:0x10", "/dev/zero is a character device, not an ELF file"),
        (str(fifo) + ":main", "fifo is a FIFO, not an ELF file"),
    ):
        with pytest.raises(_probes.ProbeError, match="target=.*" + message):
            _probes.build(control, "uprobe", "g", "u", target, [])
