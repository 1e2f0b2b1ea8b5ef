from __future__ import annotations

import fcntl
import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _fstab
from ansible_collections.tracefleet.ftrace.plugins.module_utils._fstab import (
    NEW_FILE_MODE,
    FstabEntry,
    FstabError,
    canonical,
    entries_for,
    escape,
    lines_of,
    parse_line,
    policy_entry,
    printable,
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
    with pytest.raises(FstabError, match="fstab=%s is not a regular file" % tmp_path):
        read(str(tmp_path))
    with pytest.raises(FstabError, match="cannot write it"):
        write(str(tmp_path / "missing-dir" / "fstab"), BASE)


# -- #12.13: one mount point however it is spelled; other filesystems' lines left alone


@pytest.mark.parametrize(
    "spelling",
    ["/sys/kernel/tracing/", "//sys/kernel/tracing", "/sys/kernel/./tracing", "/sys//kernel/tracing//"],
)
def test_a_mount_point_spelled_otherwise_is_the_same(spelling):
    assert canonical(spelling) == "/sys/kernel/tracing"
    existing = BASE + "tracefs %s tracefs nosuid 0 0\n" % spelling
    text, changed = update(existing, "/sys/kernel/tracing", WANTED)
    assert changed and text == BASE + LINE + "\n"  # replaced in place, not duplicated
    assert [e.mount_point for e in entries_for(existing, "/sys/kernel/tracing")] == [spelling]
    same = BASE + "tracefs %s tracefs nosuid,nodev,noexec,gid=100,mode=0750 0 0\n" % spelling
    assert update(same, "/sys/kernel/tracing", WANTED) == (same, False)  # the admin's spelling kept
    assert update(same, "/sys/kernel/tracing", None, "tracefs") == (BASE, True)


def test_canonical_leaves_non_paths_alone():
    assert canonical("none") == "none" and canonical("swap") == "swap"


def test_another_filesystems_entry_is_not_ours():
    ext4 = "/dev/sdb1 /sys/kernel/tracing ext4 defaults 0 2\n"
    with pytest.raises(FstabError, match="line 2 mounts ext4 on /sys/kernel/tracing; not adding a tracefs entry"):
        update("# x\n" + ext4, "/sys/kernel/tracing", WANTED)
    assert update(ext4, "/sys/kernel/tracing", None, "tracefs") == (ext4, False)
    both = ext4 + LINE + "\n"
    assert update(both, "/sys/kernel/tracing", None, "tracefs") == (ext4, True)
    assert entries_for(both, "/sys/kernel/tracing", "tracefs")[0].render() == LINE


# -- #12.11: bytes that are not UTF-8, and odd line breaks, kept byte for byte


def test_non_utf8_bytes_round_trip_exactly(tmp_path):
    path = tmp_path / "fstab"
    raw = b"# caf\xe9 (latin-1)\nUUID=\xff\xfe /mnt/\xe9t\xe9 ext4 defaults 0 2\n"
    path.write_bytes(raw)
    text = read(str(path))
    new, changed = update(text, "/sys/kernel/tracing", WANTED)
    assert changed
    write(str(path), new)
    assert path.read_bytes() == raw + LINE.encode() + b"\n"
    write(str(path), update(read(str(path)), "/sys/kernel/tracing", None, "tracefs")[0])
    assert path.read_bytes() == raw


def test_a_managed_line_with_odd_bytes_is_shown_escaped():
    text = "tracefs /sys/kernel/tracing tracefs nosuid,x\udce9 0 0\n"
    [entry] = entries_for(text, "/sys/kernel/tracing")
    assert printable(entry.render()) == "tracefs /sys/kernel/tracing tracefs nosuid,x\\xe9 0 0"
    assert printable("a\nb\x1b") == "a\\nb\\x1b"


@pytest.mark.parametrize("odd", ["\x0c", "\x85", "\u2028", "\r", "\x1c", "\x0b"])
def test_lines_end_at_newline_only(odd):
    existing = "# a comment with %s tracefs /sys/kernel/tracing tracefs nosuid 0 0\n" % odd
    assert lines_of(existing) == [existing]
    text, changed = update(existing, "/sys/kernel/tracing", WANTED)
    assert changed and text == existing + LINE + "\n"


def test_fields_split_at_spaces_and_tabs_only():
    entry = parse_line("tracefs\t/sys/kernel/tracing  tracefs nosuid 0 0\r\n")
    assert (entry.mount_point, entry.options, entry.passno) == ("/sys/kernel/tracing", ["nosuid"], "0")
    assert parse_line("tracefs\xa0/sys/kernel/tracing\xa0tracefs\xa0nosuid") is None  # one field for libmount


def test_lines_of():
    assert lines_of("") == []
    assert lines_of("a\nb") == ["a\n", "b"]
    assert lines_of("a\n\n") == ["a\n", "\n"]


# -- #12.11, #12.13: the file itself: a regular file only, written without leftovers


def test_read_refuses_a_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "fstab"
    os.mkfifo(fifo)
    with pytest.raises(FstabError, match="is not a regular file"):
        read(str(fifo))


def test_read_refuses_a_character_device():
    with pytest.raises(FstabError, match="fstab=/dev/zero is not a regular file"):
        read("/dev/zero")


def test_read_refuses_a_huge_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_fstab, "MAX_SIZE", 10)
    path = tmp_path / "fstab"
    path.write_text(BASE)
    with pytest.raises(FstabError, match="is %d bytes, more than any fstab" % len(BASE)):
        read(str(path))


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "fstab"
    path.write_text(BASE)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(FstabError, match=r"^fstab=%s: cannot write it: \[Errno 28\] No space left" % path):
        write(str(path), BASE + LINE + "\n")
    assert path.read_text() == BASE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fstab"]


def test_check_writable(tmp_path, monkeypatch):
    _fstab.check_writable(str(tmp_path / "fstab"))
    with pytest.raises(FstabError, match="is not a directory"):
        _fstab.check_writable(str(tmp_path / "missing" / "fstab"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(FstabError, match=r"fstab=%s/fstab: cannot write it: %s is not writable" % (tmp_path, tmp_path)):
        _fstab.check_writable(str(tmp_path / "fstab"))


# -- #12.13: a lock against concurrent editors


def test_lock_file_is_root_only_and_stays(tmp_path):
    path = str(tmp_path / "fstab")
    with _fstab.locked(path):
        assert os.stat(path + ".lock").st_mode & 0o7777 == 0o600
    assert os.path.exists(path + ".lock")


def test_a_held_lock_times_out_with_a_clear_error(tmp_path):
    path = str(tmp_path / "fstab")
    other = os.open(path + ".lock", os.O_RDONLY | os.O_CREAT, 0o600)  # another editor
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(
            FstabError, match="another editor has held %s.lock for 0.2 s; nothing was changed" % path
        ), _fstab.locked(path, timeout=0.2):
            pytest.fail("entered a lock another editor holds")
    finally:
        os.close(other)
    with _fstab.locked(path, timeout=0.2):  # free again
        pass


def test_lock_is_taken_and_released(tmp_path):
    path = str(tmp_path / "fstab")
    with _fstab.locked(path):
        probe = os.open(path + ".lock", os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    probe = os.open(path + ".lock", os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(probe)


def test_lock_never_follows_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    os.symlink(victim, tmp_path / "fstab.lock")
    with pytest.raises(FstabError, match="cannot open its lock file"), _fstab.locked(str(tmp_path / "fstab")):
        pass
    assert not victim.exists()


def test_lock_refuses_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "fstab.lock")
    with pytest.raises(FstabError, match="lock file .* is not a regular file"), _fstab.locked(str(tmp_path / "fstab")):
        pass
