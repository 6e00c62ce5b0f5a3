"""Following a job's handle without keeping it alive.

PySide holds a connected Python callable strongly, from the sender's C++ side. A lambda that
names the handle whose signal it is connected to therefore keeps that handle alive from its own
connection, a cycle Python's collector cannot see: every slider decode would stay in memory.
`follow` connects through a weak reference instead, so a handle goes once nobody else holds it."""

from __future__ import annotations

import weakref
from typing import Any, Callable

from PySide6.QtCore import SignalInstance

from studio.state.jobs import JobHandle


def follow(job: JobHandle, signal: SignalInstance, slot: Callable[..., Any], *args: Any) -> None:
    """Connect `signal` (one of `job`'s) so that it calls `slot(job, *args, *the signal's values)`."""
    handle = weakref.ref(job)

    def relay(*values: Any) -> None:
        live = handle()
        if live is not None:  # it is: only a live handle emits; a dead one has nothing to say
            slot(live, *args, *values)

    signal.connect(relay)
