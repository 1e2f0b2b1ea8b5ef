from __future__ import annotations

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils._fstab import (
    NEW_FILE_MODE,
    FstabEntry,
    FstabError,
    entries_for,
    escape,
    parse_line,
    policy_entry,
    read,
    update,
    write,
)

BASE = """\
# /etc/fstab: static file system information.
UUID=abcd / ext4 errors=remount-ro 0 1

proc /proc proc defaults 0 0
"""
WANTED = FstabEntry("tracefs", "/sys/kernel/tracing", "tracefs", ["nosuid", "nodev", "noexec", "gid=100", "mode=0750"])
LINE = "tracefs /sys/kernel/tracing tracefs nosuid,nodev,noexec,gid=100,mode=0750 0 0"


def test_render():
    assert WANTED.render() == LINE


def test_escape_round_trip():
    entry = FstabEntry("tracefs", "/mnt/trace space", "tracefs", ["nosuid"])
    assert escape("/mnt/trace space\\x") == "/mnt/trace\\040space\\134x"
    parsed = parse_line(entry.render())
    assert parsed.mount_point == "/mnt/trace space"


@pytest.mark.parametrize("line", ["", "   ", "# comment", "only three fields"])
def test_parse_line_skips(line):
    assert parse_line(line) is None


def test_parse_line_defaults_freq_pass():
    entry = parse_line("tracefs /sys/kernel/tracing tracefs nosuid")
    assert (entry.freq, entry.passno) == ("0", "0")


def test_append_when_missing():
    text, changed = update(BASE, "/sys/kernel/tracing", WANTED)
    assert changed
    assert text == BASE + LINE + "\n"


def test_append_to_file_without_trailing_newline():
    text, changed = update("proc /proc proc defaults 0 0", "/sys/kernel/tracing", WANTED)
    assert changed and text == "proc /proc proc defaults 0 0\n" + LINE + "\n"


def test_same_entry_in_other_order_is_unchanged():
    existing = BASE + "tracefs /sys/kernel/tracing tracefs mode=0750,gid=100,noexec,nodev,nosuid 0 0\n"
    text, changed = update(existing, "/sys/kernel/tracing", WANTED)
    assert not changed and text == existing


def test_replace_in_place_and_drop_duplicates():
    existing = (
        "# head\ntracefs /sys/kernel/tracing tracefs defaults 0 0\n"
        "proc /proc proc defaults 0 0\n"
        "nodev /sys/kernel/tracing tracefs nosuid 0 0\n"
    )
    text, changed = update(existing, "/sys/kernel/tracing", WANTED)
    assert changed
    assert text == "# head\n" + LINE + "\nproc /proc proc defaults 0 0\n"


def test_remove():
    existing = BASE + LINE + "\n"
    text, changed = update(existing, "/sys/kernel/tracing", None)
    assert changed and text == BASE
    text, changed = update(BASE, "/sys/kernel/tracing", None)
    assert not changed and text == BASE


def test_other_entries_untouched_byte_for_byte():
    existing = "UUID=x   /   ext4  defaults   0 1\n\t# tabbed comment\n"
    text = update(existing, "/sys/kernel/tracing", WANTED)[0]
    assert text.startswith(existing)


def test_entries_for():
    existing = BASE + LINE + "\n"
    assert [e.render() for e in entries_for(existing, "/sys/kernel/tracing")] == [LINE]
    assert entries_for(existing, "/nowhere") == []


def test_policy_entry():
    entry = policy_entry("tracefs", "/sys/kernel/tracing", ["defaults", "nosuid", "nodev", "noexec"], 100, 0o750)
    assert entry.render() == LINE
    assert policy_entry("debugfs", "/sys/kernel/debug", [], None, None).render() == (
        "debugfs /sys/kernel/debug debugfs defaults 0 0"
    )


def test_read_and_write(tmp_path):
    path = tmp_path / "fstab"
    assert read(str(path)) == ""
    write(str(path), BASE)
    assert path.read_text() == BASE and path.stat().st_mode & 0o7777 == NEW_FILE_MODE
    path.chmod(0o640)
    write(str(path), BASE + LINE + "\n")
    assert read(str(path)) == BASE + LINE + "\n" and path.stat().st_mode & 0o7777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["fstab"]


def test_read_and_write_errors(tmp_path):
    with pytest.raises(FstabError, match="fstab=%s: cannot read it" % tmp_path):
        read(str(tmp_path))
    with pytest.raises(FstabError, match="cannot write it"):
        write(str(tmp_path / "missing-dir" / "fstab"), BASE)
