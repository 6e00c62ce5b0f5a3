"""What this machine has: memory and disk, for checks that refuse a job or a file before it
allocates or writes what cannot fit (a morph holds every frame it renders; a file's declared
sizes can be far beyond its real bytes), and byte counts in words for their sentences.

Standard library (psutil when it is installed): the converter's parent, the loaders and the
engine all use it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

MEMINFO = Path("/proc/meminfo")


def available_bytes() -> Optional[int]:
    """Memory a new allocation can get without swapping (free plus reclaimable cache), or None
    when the system does not say. psutil when it is installed (every OS), else Linux's own count,
    else the free pages."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def total_bytes() -> Optional[int]:
    """The machine's RAM in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def free_disk(folder: Path) -> Optional[int]:
    """Free bytes on the disk holding `folder`, or None when it cannot be asked."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def free_when_short(need: int) -> Optional[int]:
    """The bytes free now when `need` does not fit in them; None when it fits (or nobody can say)."""
    free = available_bytes()
    return free if free is not None and need > free else None


def size_words(n: float) -> str:
    """A byte count as a sentence gives it, in decimal units as system monitors show memory:
    "20 GB", "1.5 GB", "350 MB", "1.6 KB", "12 bytes"."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{n:.0f} bytes"
