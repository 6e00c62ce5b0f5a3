"""Start the studio's own Python child processes (the engine process, the pickle converter, the
bench's window probe) so that nothing in the folder they were started from is imported.

A plain `python -m module` puts the current folder first on sys.path, so a `numpy.py`, `torch.py`
or `studio/` in the folder the window was opened from would run inside the engine. Three things
keep that out:
- `-P` (Python 3.11+): neither the current folder nor a script's folder is put on sys.path;
- PYTHONPATH keeps only absolute entries: an empty entry (`:/x`, a trailing `:`) or a relative one
  means the current folder again;
- the child starts in the folder that holds the studio package, not the caller's, so a library
  that reads a file from its working folder finds only the studio's own files there. Paths handed
  to a child are made absolute first (`absolute_env`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Mapping, Optional

# The folder holding the `studio` package: on the path so the child imports this very studio
# (a source checkout is not always installed), and the child's working folder.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# Environment variables that name files or folders the child reads or writes (the studio's
# overrides, the XDG folders platformdirs reads): made absolute against the caller's working
# folder before the child starts in another one.
PATH_PREFIXES = ("STUDIO_", "XDG_")
PATH_SUFFIXES = ("_DIR", "_HOME", "_CACHE", "_CLASSIFIER")


def python_command(module: str, *args: str) -> list[str]:
    """`python -P -m module args…` with the interpreter running the studio now."""
    return [sys.executable, "-P", "-m", module, *args]


def child_env(base: Optional[Mapping[str, str]] = None, drop: Iterable[str] = ()) -> dict[str, str]:
    """The environment for a child: `base` (os.environ by default) less `drop`, its PYTHONPATH
    the package root followed by the caller's absolute entries only, and its path variables
    absolute."""
    env = dict(os.environ if base is None else base)
    for name in drop:
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(safe_python_path(env.get("PYTHONPATH", "")))
    return absolute_env(env)


def safe_python_path(value: str) -> list[str]:
    """The package root, then the absolute entries of a PYTHONPATH value, each once."""
    entries = [str(PACKAGE_ROOT)]
    for entry in value.split(os.pathsep):
        if entry and os.path.isabs(entry) and entry not in entries:
            entries.append(entry)
    return entries


def shareable_path(path: Iterable[str]) -> list[str]:
    """The entries of a parent's sys.path that a child may take over: absolute ones other than the
    current folder (which `python -m` or an interactive parent puts first)."""
    here = os.path.realpath(os.getcwd())
    return [entry for entry in path if entry and os.path.isabs(entry) and os.path.realpath(entry) != here]


def absolute_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the paths it names (PATH_PREFIXES + PATH_SUFFIXES) made absolute against the
    current folder."""
    for name, value in env.items():
        if not (name.startswith(PATH_PREFIXES) and name.endswith(PATH_SUFFIXES)):
            continue
        if value and not value.startswith("~") and not os.path.isabs(value):
            env[name] = os.path.abspath(value)
    return env
