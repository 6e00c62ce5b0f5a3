"""LoRA files on a loaded diffusion pipeline: each is loaded once (as a peft adapter, through
diffusers, which also reads A1111/Kohya key layouts) and stays; each job says which are on and how
strongly, which is a cheap re-weighting rather than a reload."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from studio.core.errors import ModelFileError, SpecError, first_line
from studio.models.hashes import lora_hash
from studio.models.safe_files import check_safetensors

log = logging.getLogger(__name__)


class LoraSet:
    def __init__(self, pipe: Any):
        self.pipe = pipe
        self._names: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> adapter name
        self._active = False

    def apply(self, loras: tuple[tuple[str, float], ...]) -> dict[str, str]:
        """Turn on exactly these (path, weight) LoRAs; returns {file stem: A1111 LoRA hash}."""
        if not loras:
            # Whenever any adapter was ever loaded: peft may have re-activated one on its own
            # (deleting a failed adapter activates another).
            if self._names or self._active:
                self.pipe.disable_lora()
                self._active = False
            return {}
        names, weights, hashes = [], [], {}
        for path_text, weight in loras:
            path = Path(path_text)
            name = self._load(path)
            if name in names:
                raise SpecError("loras", f"names {path.name} twice; give it once with the weight you want.")
            names.append(name)
            weights.append(float(weight))
            hashes[path.stem] = lora_hash(path)
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=weights)
        self._active = True
        return hashes

    def _load(self, path: Path) -> str:
        if path.suffix.lower() != ".safetensors":
            raise SpecError("loras", f"names {path.name}; the studio loads LoRAs only from .safetensors files.")
        try:
            stat = path.stat()
        except OSError:
            raise SpecError("loras", f"names {path}, which does not exist.") from None
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in self._names:
            return self._names[key]
        check_safetensors(path)
        from safetensors.torch import load_file

        name = f"lora_{len(self._names)}"
        failure = None
        try:
            # The tensors themselves, not a path: diffusers must not go looking for a hub repo.
            with warnings.catch_warnings():  # peft warns that a second adapter is a second adapter
                warnings.filterwarnings("ignore", message=".*multiple adapters.*")
                self.pipe.load_lora_weights(load_file(str(path)), adapter_name=name)
        except Exception as exc:  # noqa: BLE001 - any library error becomes one sentence
            failure = exc
        if failure is not None:
            log.warning("LoRA %s failed to load", path, exc_info=failure)
            try:  # a half-loaded adapter would change the next image
                self.pipe.delete_adapters(name)
            except Exception:  # noqa: BLE001
                pass
            self._active = True  # peft may have switched another adapter on: the next job resets
            raise ModelFileError(f"{path.name} is not a LoRA this model can use ({first_line(failure, 160)}).")
        self._names[key] = name
        return name
