import errno
import os
import stat

import pytest

from studio.core.atomic import FileChangedError, NotAFileError, file_stamp, write_atomic


def test_atomic_write_replaces_whole_and_uses_the_normal_file_mode(tmp_path):
    path = tmp_path / "sub" / "doc.txt"
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["doc.txt"], "no temp file left behind"


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "doc.txt"
    write_atomic(path, b"precious")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(path, b"half")
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.txt"]


# --- what is at the path belongs to the user: never lost, never widened -------------------------


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_symlink_stays_a_link_and_its_target_is_written(tmp_path):
    real = tmp_path / "real" / "story.md"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "story.md"
    link.symlink_to(real)
    write_atomic(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"
    assert leftovers(tmp_path) == [] and leftovers(real.parent) == []


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "story.md"
    link.symlink_to(tmp_path / "elsewhere.md")
    write_atomic(link, b"first")
    assert link.is_symlink() and (tmp_path / "elsewhere.md").read_bytes() == b"first"


@pytest.mark.timeout(20)
def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    for path in (fifo, link):  # opening the pipe would block this test until the timeout
        with pytest.raises(NotAFileError) as caught:
            write_atomic(path, b"data")
        assert caught.value.strerror == "it is a named pipe, not a regular file"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    assert leftovers(tmp_path) == []


@pytest.mark.timeout(20)
def test_a_device_behind_a_symlink_is_refused_and_stays_a_device(tmp_path):
    link = tmp_path / "out.png"
    link.symlink_to("/dev/null")
    with pytest.raises(NotAFileError) as caught:
        write_atomic(link, b"data")
    assert caught.value.strerror == "it is a device, not a regular file"
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert leftovers(tmp_path) == []


def test_a_folder_is_refused_as_a_folder(tmp_path):
    folder = tmp_path / "doc.txt"
    folder.mkdir()
    with pytest.raises(NotAFileError) as caught:
        write_atomic(folder, b"data")
    assert caught.value.errno == errno.EISDIR and "folder" in caught.value.strerror
    assert folder.is_dir() and leftovers(tmp_path) == []


def test_an_existing_file_keeps_its_private_mode(tmp_path):
    path = tmp_path / "diary.txt"
    path.write_bytes(b"secret")
    path.chmod(0o600)
    write_atomic(path, b"more secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o640)
    write_atomic(path, b"shared with the group")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_write_is_refused_when_the_file_changed_since_its_stamp(tmp_path):
    path = tmp_path / "story.md"
    path.write_bytes(b"as opened")
    opened = file_stamp(path)
    write_atomic(path, b"saved by someone else")  # another studio, saving the same story
    with pytest.raises(FileChangedError) as caught:
        write_atomic(path, b"mine", unchanged_since=opened)
    assert "changed on disk" in str(caught.value)
    assert path.read_bytes() == b"saved by someone else" and leftovers(tmp_path) == []


def test_an_edit_in_place_is_a_change_too(tmp_path):
    path = tmp_path / "story.md"
    path.write_bytes(b"as opened")
    opened = file_stamp(path)
    with open(path, "ab") as f:  # an editor that writes into the same file
        f.write(b", and then some")
    with pytest.raises(FileChangedError):
        write_atomic(path, b"mine", unchanged_since=opened)
    assert path.read_bytes() == b"as opened, and then some"


def test_the_stamp_a_write_returns_lets_the_next_save_through(tmp_path):
    path = tmp_path / "story.md"
    stamp = write_atomic(path, b"one", unchanged_since=file_stamp(path))  # a new file: nothing there
    assert stamp == file_stamp(path)
    stamp = write_atomic(path, b"two", unchanged_since=stamp)
    write_atomic(path, b"three", unchanged_since=stamp)
    assert path.read_bytes() == b"three"


def test_a_file_that_appeared_since_it_was_missing_is_not_overwritten(tmp_path):
    path = tmp_path / "new.md"
    missing = file_stamp(path)
    assert not missing.exists
    path.write_bytes(b"written first by another studio")
    with pytest.raises(FileChangedError):
        write_atomic(path, b"mine", unchanged_since=missing)
    assert path.read_bytes() == b"written first by another studio"
