"""The latent decoders' memory saving, shared by the torch and ONNX Runtime backends."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class OneAtATime:
    """A latent decoder's memory saving: after running out of memory it decodes one latent at a
    time (a 9 x 9 map becomes 81 small runs instead of one large one)."""

    memory_saving: Sequence[str] = ()  # what the retry turned on, in words (backends/base.SavesMemory)

    def use_less_memory(self) -> list[str]:
        """The runner's out-of-memory retry: what was turned on ([] when it already is)."""
        if self.memory_saving:
            return []
        self.memory_saving = ["one picture at a time"]
        return list(self.memory_saving)

    def in_batches(self, run: Callable[[np.ndarray], np.ndarray], latents: np.ndarray) -> np.ndarray:
        if not self.memory_saving or len(latents) <= 1:
            return run(latents)
        return np.concatenate([run(latents[i : i + 1]) for i in range(len(latents))])
