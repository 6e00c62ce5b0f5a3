"""Write user files so that a crash never leaves a half-written one: temp file, fsync, replace.

What is at the path belongs to the user, so a write never loses or widens it: a symlink stays a
link and its target is written; a device, named pipe, socket or folder is refused, never replaced
by a regular file; an existing file keeps its mode (and owner, where allowed). A caller that read
the file earlier can pass the FileStamp it took then: the write is refused if the file changed on
disk since (another program, or a second studio saving the same document)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from studio.core.untrusted import file_kind

try:
    import fcntl
except ImportError:  # Windows: no flock; the stamp check still runs, only unlocked
    fcntl = None  # type: ignore[assignment]


class NotAFileError(OSError):
    """The path names something that is not a regular file; `strerror` says what it is."""


class FileChangedError(OSError):
    """The file changed on disk since the caller's stamp was taken; nothing was written."""

    def __str__(self) -> str:  # no errno fits, so not "[Errno None] ..."
        return f"{self.filename}: {self.strerror}"


@dataclasses.dataclass(frozen=True)
class FileStamp:
    """Which version of a file a caller read. Every atomic save makes a new inode, and an edit in
    place changes the size or the mtime, so any other save shows up as a different stamp."""

    exists: bool
    device: int = 0
    inode: int = 0
    size: int = 0
    mtime_ns: int = 0

    @classmethod
    def of(cls, info: Optional[os.stat_result]) -> "FileStamp":
        if info is None:
            return cls(False)
        return cls(True, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def file_stamp(path: Path) -> FileStamp:
    """The stamp of the file at `path` now (through symlinks); take it before reading the file, so
    a change made while reading shows up as a change later."""
    return FileStamp.of(_regular_or_none(_real(path)))


def write_atomic(path: Path, data: bytes, unchanged_since: Optional[FileStamp] = None) -> FileStamp:
    """Replace the file at `path` (through symlinks) with `data`, whole or not at all, and return
    the stamp of the file written. NotAFileError when the path is not a regular file;
    FileChangedError when `unchanged_since` is given and the file is no longer that version."""
    target = _real(path)
    existing = _regular_or_none(target)  # before anything is written: /dev/full gets no temp file
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        _take_over_owner_and_mode(fd, existing)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            written = FileStamp.of(os.fstat(f.fileno()))  # a rename keeps the inode and mtime
        with _folder_locked(target.parent):
            # Checked at the last moment, under the lock, so two saves cannot both pass.
            now = _regular_or_none(target)
            if unchanged_since is not None and FileStamp.of(now) != unchanged_since:
                raise FileChangedError(None, "it changed on disk since it was read", str(path))
            os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _sync_folder(target.parent)
    return written


def write_text_atomic(path: Path, text: str) -> FileStamp:
    return write_atomic(path, text.encode("utf-8"))


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _real(path: Path) -> Path:
    # realpath, not Path.resolve: a symlink loop then fails in os.stat as an OSError (ELOOP).
    return Path(os.path.realpath(path))


def _regular_or_none(path: Path) -> Optional[os.stat_result]:
    """The file's stat, None when nothing is there; NotAFileError for anything but a regular file.
    Only stat: opening a named pipe would block until someone writes to it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise NotAFileError(
            _not_a_file_errno(info.st_mode), f"it is {file_kind(info.st_mode)}, not a regular file", str(path)
        )
    return info


def _not_a_file_errno(mode: int) -> int:
    return errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL


def _take_over_owner_and_mode(fd: int, existing: Optional[os.stat_result]) -> None:
    """The new file gets the old one's mode (a 0600 file stays private), or for a new file the
    mode any newly created file would get (mkstemp makes it owner-only)."""
    if existing is None:
        os.fchmod(fd, 0o666 & ~current_umask())
        return
    if hasattr(os, "fchown") and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        try:  # root saving someone's file, or a file of another group: keep who owns it
            os.fchown(fd, existing.st_uid, existing.st_gid)
        except OSError:
            pass
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))  # after chown, which clears set-id bits


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder while one save checks and replaces, so a second studio
    saving there waits for it; best effort (some filesystems and platforms have no such lock)."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; not every platform lets a directory be opened."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
