"""The one atomic file writer: content, mode, owner, and no temp file left behind."""

from __future__ import annotations

import os

import pytest

from ansible_collections.tracefleet.ftrace.plugins.module_utils import _atomicfile


def test_new_file_gets_the_mode_asked_for(tmp_path):
    target = tmp_path / "ledger.json"
    _atomicfile.replace(str(target), b"{}\n", mode=0o600)
    assert target.read_bytes() == b"{}\n"
    assert target.stat().st_mode & 0o7777 == 0o600


def test_existing_mode_is_kept(tmp_path):
    target = tmp_path / "fstab"
    target.write_text("old\n")
    target.chmod(0o640)
    _atomicfile.replace_text(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o7777 == 0o640


def test_new_file_without_mode_follows_the_umask(tmp_path):
    mask = os.umask(0o027)
    try:
        _atomicfile.replace(str(tmp_path / "f"), b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f").stat().st_mode & 0o7777 == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_existing_owner_is_kept_by_root(tmp_path):
    target = tmp_path / "fstab"
    target.write_text("old\n")
    os.chown(target, 4242, 4343)
    _atomicfile.replace_text(str(target), "new\n")
    assert (target.stat().st_uid, target.stat().st_gid) == (4242, 4343)


def test_failure_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "fstab"
    target.write_text("old\n")

    def broken_replace(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        _atomicfile.replace_text(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fstab"]


def test_data_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    """#12.13: a crash after the rename must not leave an empty fstab."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if os.path.isdir("/proc/self/fd/%d" % fd) else "fsync-file")
        real_fsync(fd)

    def replace(source, destination):
        events.append("rename")
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    _atomicfile.replace_text(str(tmp_path / "fstab"), "new\n")
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "fstab"
    target.write_text("old\n")

    def interrupted(fd, mode):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fchmod", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _atomicfile.replace_text(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fstab"]


def test_a_streamed_replacement_can_seek_back_and_lands_whole(tmp_path):
    target = tmp_path / "perfetto.tar"
    target.write_bytes(b"old")
    with _atomicfile.replacing(str(target), mode=0o600) as pending:
        pending.stream.write(b"header??body")
        assert target.read_bytes() == b"old"
        pending.stream.seek(6)
        pending.stream.write(b"!!")
    assert target.read_bytes() == b"header!!body"
    assert target.stat().st_mode & 0o7777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perfetto.tar"]


def test_a_cancelled_or_failed_stream_leaves_the_target_alone(tmp_path):
    target = tmp_path / "perfetto.tar"
    target.write_bytes(b"old")
    with _atomicfile.replacing(str(target)) as pending:
        pending.stream.write(b"same as before")
        pending.cancel()
    with pytest.raises(ValueError), _atomicfile.replacing(str(target)) as pending:
        pending.stream.write(b"half")
        raise ValueError("the writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perfetto.tar"]
