"""Fetching the packages the training data comes from, once, into a cache folder.

`npm pack NAME@VERSION` and `apt-get download NAME` both work without root and without installing
anything; we unpack the archives ourselves. Versions are pinned where the registry allows it, so a
recipe run next year trains on the same bytes. Every fetch is skipped when its result is cached."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import platformdirs

from studio.core.errors import StudioError

log = logging.getLogger(__name__)


class FetchError(StudioError):
    """A package could not be fetched or unpacked; the message is one sentence."""


def cache_dir() -> Path:
    """Where fetched packages and prepared datasets live; STUDIO_TRAINING_CACHE overrides it."""
    value = os.environ.get("STUDIO_TRAINING_CACHE")
    path = Path(value).expanduser() if value else Path(platformdirs.user_cache_dir("studio")) / "training-data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(command: list[str], cwd: Path, what: str) -> None:
    if shutil.which(command[0]) is None:
        raise FetchError(f"{what} needs the `{command[0]}` command, which is not installed.")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise FetchError(f"{what} failed: {detail[-1] if detail else 'exit ' + str(result.returncode)}.")


def npm_package(name: str, version: str) -> Path:
    """The unpacked folder of an npm package (its `package/` directory)."""
    root = cache_dir() / "npm" / f"{name.replace('/', '_')}-{version}"
    done = root / ".unpacked"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        log.info("fetching npm package %s@%s", name, version)
        _run(["npm", "pack", "--silent", f"{name}@{version}"], root, f"npm pack {name}@{version}")
        archives = sorted(root.glob("*.tgz"))
        if not archives:
            raise FetchError(f"npm pack {name}@{version} wrote no archive.")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(root, filter="data")
        archives[0].unlink()
        done.touch()
    return root / "package"


def debian_package(name: str) -> Path:
    """The unpacked file tree of a Debian package (fetched with `apt-get download`)."""
    root = cache_dir() / "deb" / name
    done = root / ".unpacked"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        log.info("fetching Debian package %s", name)
        _run(["apt-get", "download", name], root, f"apt-get download {name}")
        debs = sorted(root.glob("*.deb"))
        if not debs:
            raise FetchError(f"apt-get download {name} wrote no .deb file.")
        _run(["dpkg-deb", "-x", str(debs[0]), str(root / "tree")], root, f"unpacking {debs[0].name}")
        debs[0].unlink()
        done.touch()
    return root / "tree"
