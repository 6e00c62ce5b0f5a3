"""Loaded models stay resident, keyed by (model id, path, runtime, device, dtype), least-recently-used out."""

from __future__ import annotations

import collections
import contextlib
import logging
from typing import Any, Callable, Hashable, Iterator

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 8 * 1024**3


def _size(value: Any) -> int:
    return int(getattr(value, "memory_bytes", 0) or 0)


class ModelCache:
    """An LRU of loaded backends under a memory budget (bytes, as estimated by each backend).

    Room is made before a load (from the model's size on disk), so switching between two large
    models never needs both resident. Pinned entries (models a running job is using) are never
    evicted; the newest entry is kept even alone over budget: a model needed now must stay."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.budget_bytes = budget_bytes
        self._entries: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._pins: collections.Counter[Hashable] = collections.Counter()

    def get(self, key: Hashable, load: Callable[[], Any], expected_bytes: int = 0) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        self._evict(room_for=expected_bytes)
        value = load()
        self._entries[key] = value
        self._evict()
        return value

    @contextlib.contextmanager
    def pinned(self, key: Hashable) -> Iterator[None]:
        """Keep `key` resident while a job uses it."""
        self._pins[key] += 1
        try:
            yield
        finally:
            self._pins[key] -= 1
            if not self._pins[key]:
                del self._pins[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    @property
    def used_bytes(self) -> int:
        return sum(_size(v) for v in self._entries.values())

    def release_others(self, key: Hashable) -> None:
        """Unload every model but `key` that no running job is using (after running out of memory)."""
        for other in [k for k in self._entries if k != key and k not in self._pins]:
            self._drop(other)

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def _evict(self, room_for: int = 0) -> None:
        newest = next(reversed(self._entries), None) if not room_for else None
        while self.used_bytes + room_for > self.budget_bytes:
            victim = next((k for k in self._entries if k not in self._pins and k != newest), None)
            if victim is None:
                return
            self._drop(victim)

    def _drop(self, key: Hashable) -> None:
        value = self._entries.pop(key)
        log.info("model cache: unloading %s", key)
        close = getattr(value, "close", None)
        if callable(close):
            close()
