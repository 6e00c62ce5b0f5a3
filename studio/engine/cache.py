"""Loaded models stay resident, keyed by (model id, runtime, device, dtype), least-recently-used out."""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Hashable

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 8 * 1024**3


def _size(value: Any) -> int:
    return int(getattr(value, "memory_bytes", 0) or 0)


class ModelCache:
    """An LRU of loaded backends under a memory budget (bytes, as estimated by each backend).

    The newest entry is always kept, even alone over budget: a model that is needed now must stay."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.budget_bytes = budget_bytes
        self._entries: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = load()
        self._entries[key] = value
        self._evict()
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    @property
    def used_bytes(self) -> int:
        return sum(_size(v) for v in self._entries.values())

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def _evict(self) -> None:
        while len(self._entries) > 1 and self.used_bytes > self.budget_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        value = self._entries.pop(key)
        log.info("model cache: unloading %s", key)
        close = getattr(value, "close", None)
        if callable(close):
            close()
