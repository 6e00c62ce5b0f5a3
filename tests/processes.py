"""Which child processes a test left running (the engine process, a converter...)."""

from __future__ import annotations

import psutil


def running_children() -> list[psutil.Process]:
    """This process's children that are still running (zombies, already dead, do not count)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive
