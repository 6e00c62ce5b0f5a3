"""A deterministic, deliberately slow backend for UI tests and demos (format "fake" in studio.json).

It needs no ML library: images are smooth seeded patterns that sharpen step by step, text is seeded
words, latents decode to colour fields. Its `step_seconds` manifest field sets how slow it is."""

from __future__ import annotations

import ctypes
import os
import time
from typing import Union

import numpy as np

from studio.core.events import ContextResult, ImageResult, RunInfo, TextResult
from studio.core.jobs import ContextJob, ImageJob, TextJob
from studio.core.kinds import Device
from studio.engine.backends.helpers import to_uint8_image
from studio.engine.backends.job_context import JobContext
from studio.engine.backends.text.prompt_context import build_context

FAKE_CONTEXT = 4096  # "tokens": words
WORDS = ("the", "quiet", "river", "ran", "under", "a", "lantern", "moon", "and", "she", "laughed", "softly")


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the runner recognises by name."""


class FakeBackend:
    def __init__(
        self,
        kind: str,
        step_seconds: float,
        latent_dim: int,
        image_size: int,
        fail_at_step: int = 0,
        crash_at_step: int = 0,
        crash: str = "abort",
        oom_at_step: int = 0,
        oom: str = "once",
    ):
        self.kind = kind
        self.fail_at_step = fail_at_step  # > 0: raise at that step, to exercise failure handling
        # > 0: misbehave as native code can at that step (abort / segfault / exit / hang / cuda-assert)
        self.crash_at_step, self.crash = crash_at_step, crash
        # > 0: run out of memory at that step; "once" recovers with memory saving on, "always" never
        self.oom_at_step, self.oom = oom_at_step, oom
        self.memory_saving: list[str] = []
        self.step_seconds = step_seconds
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.memory_bytes = 1024
        self.info = RunInfo(device=Device.CPU, runtime="fake")

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        return Device.CPU, "float32"

    @classmethod
    def load(cls, model, device: str, dtype: str) -> "FakeBackend":
        m = model.manifest
        return cls(
            kind=model.kind,
            step_seconds=float(m.get("step_seconds", 0.02)),
            latent_dim=int(m.get("latent_dim", 8)),
            image_size=int(m.get("image_size", 64)),
            fail_at_step=int(m.get("fail_at_step", 0)),
            crash_at_step=int(m.get("crash_at_step", 0)),
            crash=str(m.get("crash", "abort")),
            oom_at_step=int(m.get("oom_at_step", 0)),
            oom=str(m.get("oom", "once")),
        )

    def use_less_memory(self) -> list[str]:
        """The runner's out-of-memory retry: what this backend turned on (nothing left: [])."""
        if self.memory_saving:
            return []
        self.memory_saving = ["one image at a time (simulated)"]
        return list(self.memory_saving)

    def _misbehave(self, step: int) -> None:
        if step == self.fail_at_step:
            raise RuntimeError(f"simulated failure at step {step}")
        if step == self.crash_at_step:
            if self.crash == "segfault":
                ctypes.string_at(0)  # reads address 0: SIGSEGV, as a broken driver would
            elif self.crash == "exit":
                os._exit(3)
            elif self.crash == "hang":  # native code that never returns to a step boundary
                time.sleep(3600)
            elif self.crash == "cuda-assert":  # survivable in Python, fatal to the CUDA context
                raise RuntimeError("CUDA error: device-side assert triggered (simulated)")
            os.abort()
        if step == self.oom_at_step and (self.oom == "always" or not self.memory_saving):
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    def generate_image(self, spec: ImageJob, ctx: JobContext) -> ImageResult:
        images = []
        total = spec.steps * spec.count
        for index in range(spec.count):  # seeds seed, seed+1, ... as the real backends do
            rng = np.random.default_rng(spec.seed + index)
            final = self._pattern(rng, spec.height, spec.width)
            noise = rng.random((spec.height, spec.width, 3), dtype=np.float32)
            for step in range(1, spec.steps + 1):
                time.sleep(self.step_seconds)
                self._misbehave(step)
                t = step / spec.steps
                ctx.step(
                    index * spec.steps + step, total, preview=lambda t=t: to_uint8_image(noise * (1 - t) + final * t)
                )
            images.append(to_uint8_image(final))
        return ImageResult(tuple(images), self.info)

    def context(self, spec: Union[TextJob, ContextJob]) -> ContextResult:
        """Assembled as the real backends do, counting a word (and its space) as a token."""
        return build_context(
            spec,
            _count_words,
            FAKE_CONTEXT,
            (lambda system, user: f"<sys>{system}</sys><user>{user}</user><bot>") if spec.instruct else None,
        )

    def generate(self, spec: TextJob, ctx: JobContext) -> TextResult:
        ctx.context_used(self.context(spec))
        rng = np.random.default_rng(spec.seed)
        pieces, ids = [], []
        for _ in range(spec.max_new_tokens):
            time.sleep(self.step_seconds)
            self._misbehave(len(pieces) + 1)
            token_id = int(rng.integers(len(WORDS)))
            piece = " " + WORDS[token_id]
            # Seeded "probabilities" so the token view has something to show: the chosen word and
            # two others, best first.
            others = [WORDS[(token_id + k) % len(WORDS)] for k in (3, 7)]
            alternatives = ((piece, 0.5), (" " + others[0], 0.3), (" " + others[1], 0.2))
            ctx.token(piece, token_id, alternatives)
            pieces.append(piece)
            ids.append(token_id)
        return TextResult("".join(pieces), tuple(ids), self.info)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        n = latents.shape[0]
        size = self.image_size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
        out = np.empty((n, size, size, 3), np.float32)
        for i, z in enumerate(latents):
            a, b, c = (np.tanh(z[:3]) + 1) / 2 if z.shape[0] >= 3 else (0.5, 0.5, 0.5)
            out[i, ..., 0] = a * x + (1 - a) * y
            out[i, ..., 1] = b
            out[i, ..., 2] = c * (1 - x)
        time.sleep(self.step_seconds)
        return to_uint8_image(out)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> (N, D): each colour's mean, through the inverse of decode's tanh,
        in the first three numbers (so a green picture's second number is high); the rest zero."""
        means = np.clip(images.reshape(images.shape[0], -1, 3).mean(axis=1) / 255.0, 0.01, 0.99)
        latents = np.zeros((images.shape[0], self.latent_dim), np.float32)
        k = min(3, self.latent_dim)
        latents[:, :k] = np.arctanh(2 * means[:, :k] - 1)
        time.sleep(self.step_seconds)
        return latents

    @staticmethod
    def _pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        freq = rng.uniform(0.02, 0.12, size=(3, 2))
        phase = rng.uniform(0, 2 * np.pi, size=3)
        chans = [0.5 + 0.5 * np.sin(freq[c, 0] * x + freq[c, 1] * y + phase[c]) for c in range(3)]
        return np.stack(chans, axis=-1).astype(np.float32)


def _count_words(text: str) -> int:
    return len(text.split())
