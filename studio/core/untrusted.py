"""Reading what a download or a hand edit put on disk: JSON files, paths with `~`, names and
fields shown in a terminal. Each way such input breaks becomes one sentence naming the file (a
StudioError of the caller's kind), never an exception from deep inside the standard library.

Standard library only: the settings, the model registry and the CLI all use it."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO, Callable

from studio.core.errors import StudioError

# Terminal control characters (escape sequences, carriage returns, bidi overrides) in untrusted
# text could rewrite what a command shows (or, through OSC 52, the clipboard); they are replaced
# before printing. Tabs and line breaks are kept unless the text must stay on one line.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LINE_BREAKS = re.compile("[\t\n\u2028\u2029]")


def printable(text: str, one_line: bool = False) -> str:
    """`text` with every terminal control character replaced by U+FFFD (and, with `one_line`,
    tabs and line breaks too, so a file name cannot fake a row of a table)."""
    text = CONTROL.sub("\ufffd", text)
    return LINE_BREAKS.sub("\ufffd", text) if one_line else text


def file_kind(mode: int) -> str:
    """What a stat mode that is not a regular file is, for a sentence ("a named pipe")."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "something else"


def not_regular(name: "str | Path", mode: int) -> str:
    """The sentence for a name under which something other than a regular file sits."""
    return f"{name} cannot be read (it is {file_kind(mode)}, not a regular file): put the real file there."


def open_regular(path: Path, error: type[StudioError] = StudioError, name: "str | Path | None" = None) -> BinaryIO:
    """`path` opened for reading, refused with one sentence (naming it `name`, else its path)
    unless it is a regular file. Opened without blocking and checked on the open file, so a named
    pipe put there (even between a check and the open) can never hang the studio on a writer."""
    name = path if name is None else name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise error(f"{name} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise error(f"{name} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(not_regular(name, mode))
    return os.fdopen(fd, "rb")


def check_regular(path: Path, error: type[StudioError] = StudioError) -> None:
    """One sentence if something other than a regular file (a named pipe, a device, a socket)
    sits at `path`; nothing when the path holds a regular file or nothing at all. Stat only."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise error(not_regular(path, mode))


def read_json(path: Path, limit: int, error: type[StudioError] = StudioError, what: str = "a config file") -> Any:
    """The JSON value in a small file, or one sentence naming the file when it is not a regular
    file, larger than `limit` bytes, not UTF-8, not JSON, nested too deeply for the parser, or
    holding a number too long for Python to read (over 4300 digits)."""
    with open_regular(path, error) as f:
        try:
            raw = f.read(limit + 1)  # read to the limit, not to the size: the file may grow meanwhile
        except OSError as exc:
            raise error(f"{path} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if len(raw) > limit:
        raise error(f"{path} is larger than {limit:,} bytes, too large to be {what}.")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path} is not valid JSON (it is not UTF-8 text).") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc}).") from None
    except RecursionError:
        raise error(f"{path} is not valid JSON (it is nested too deeply to read).") from None
    except ValueError:  # int() refuses more than 4300 digits
        raise error(f"{path} is not valid JSON (it holds a number too long to read).") from None


def expand_user(path: "str | os.PathLike[str]", error: Callable[[str], Exception] = StudioError) -> Path:
    """`path` with a leading `~` or `~user` expanded; one sentence when there is no such user (or
    no home folder), where Path.expanduser raises RuntimeError. `error` makes the exception from
    that sentence (an exception class, or e.g. a lambda naming a SpecError's field)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        user = Path(path).parts[0] if Path(path).parts else str(path)
        raise error(
            f"{printable(str(path), one_line=True)} starts with {printable(user, one_line=True)}, "
            "but this system has no such user (or no home folder) to put in its place."
        ) from None
