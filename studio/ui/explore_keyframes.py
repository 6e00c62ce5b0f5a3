"""The explorer's keyframe sources beyond "Add current": a diffusion model's prompt-and-seed keys
(with their previews), pictures encoded by a latent model's encoder, crossbreeds of keyframes,
and keyframe files (Save/Open).

A mixin of ExploreWorkspace: it uses the workspace's jobs, canvas, caption, panel, travel panel
and keyframes, and the job maps set up in its __init__."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QStandardPaths, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog

from studio.core.errors import StudioError
from studio.core.events import ImageResult, LatentResult
from studio.core.jobs import ImageJob, LatentEncodeJob
from studio.ui.images import from_qimage, to_qimage
from studio.latent.keyframes_file import read_keyframes, write_keyframes
from studio.state.inputs import store_input
from studio.ui.crossbreed_dialog import CrossbreedDialog


class KeyframeSources:
    # -- a diffusion model: keyframes are a prompt and a seed ----------------------------------------

    def _preview_spec(self, key: dict) -> ImageJob:
        return ImageJob(model=self.models.model_id(), prompt=key["prompt"], seed=key["seed"], **self.travel.settings())

    @Slot()
    def request_preview(self) -> Optional[int]:
        """Generate the travel panel's prompt and seed on the canvas."""
        key = self.travel.key()
        if not key["prompt"]:
            self.caption.setText("Write a prompt first.")
            return None
        self._stop_playback()
        for older in list(self._preview_jobs):  # newest wins: a Random clicked five times runs once
            self.jobs.cancel(older)
        job_id = self.jobs.submit_or_report(self._preview_spec(key))
        if job_id is not None:
            self._preview_jobs[job_id] = key
            self.caption.setText("Generating the preview…")
        return job_id

    def _on_preview(self, job_id: int, key: dict, result: object) -> None:
        self._schedule_idle_work()
        if not isinstance(result, ImageResult) or not result.images or job_id < self.shown_job:
            return
        qimage = to_qimage(result.images[0])
        self.keyframes.offer_thumbnail(travel_latent(key), qimage)
        if self.is_playing():
            return
        self.shown_job = job_id
        self._shown_key = key
        self.canvas.set_image(qimage)
        self.caption.setText(f"{key['prompt']} · seed {key['seed']}")

    def _add_travel_key(self) -> Optional[str]:
        key = self.travel.key()
        if not key["prompt"]:
            self.jobs.error.show("Write a prompt for the keyframe first.")
            return None
        self._stop_playback()
        thumbnail = self.canvas.image() if self._shown_key == key else None
        short = key["prompt"] if len(key["prompt"]) <= 24 else key["prompt"][:23] + "…"
        name = self.keyframes.add_keyframe(travel_latent(key), thumbnail, name=f"{short} · {key['seed']}", payload=key)
        self._schedule_idle_work()  # a key added before its preview gets one
        return name

    @Slot(object)
    def _on_key_selected(self, latent) -> None:
        key = self.keyframes.payload_of(latent)
        if key is None:
            self.panel.set_latent(latent)
            return
        self.travel.set_key(key)
        self.request_preview()

    # -- pictures as keyframes ------------------------------------------------------------------------

    @Slot(QImage, str)
    def _on_picture_dropped(self, image: QImage, path: str) -> None:
        if path:
            self.add_picture(path)
            return
        try:  # a pasted picture has no file: keep it as one, as the image tab keeps its inputs
            stored = store_input(from_qimage(image))
        except StudioError as exc:
            self.jobs.error.show(exc.message)
            return
        self.add_picture(str(stored), "Pasted picture")

    @Slot(str)
    def add_picture(self, path: str, name: str = "") -> Optional[int]:
        """Encode a picture with the model's encoder; it arrives as a keyframe, and the sliders go
        to it (the canvas then shows the model's reconstruction of it)."""
        if self.is_diffusion():
            self.jobs.error.show("Pictures become keyframes of latent models such as emoji-vae; a diffusion "
                                 "model's keyframes are a prompt and a seed.")
            return None
        if not self.models.model_id() or self.latent_dim() is None:
            return None
        name = name or Path(path).stem
        job_id = self.jobs.submit_or_report(LatentEncodeJob(model=self.models.model_id(), image=path))
        if job_id is not None:
            self._encode_jobs[job_id] = name
            self.caption.setText(f"Encoding {name}…")
        return job_id

    def _on_picture_encoded(self, name: str, result: object) -> None:
        if not isinstance(result, LatentResult) or not result.latents:
            return
        self._stop_playback()
        self.panel.set_latent(result.latents[0])  # decodes it: the thumbnail comes from that
        self.keyframes.add_keyframe(self.panel.latent(), name=name)
        self.caption.setText(f"{name}, as the model sees it")

    # -- crossbreeding --------------------------------------------------------------------------------

    @Slot()
    def open_crossbreed(self) -> Optional[CrossbreedDialog]:
        """Mix the selected keyframes (all of them when fewer than two are selected)."""
        rows = self.keyframes.selected_rows()
        if len(rows) < 2:
            rows = list(range(len(self.keyframes.timeline)))
        if len(rows) < 2:
            return None
        self._stop_playback()
        keys = [self.keyframes.timeline[row] for row in rows]
        before = self.panel.latent()
        dialog = CrossbreedDialog([k.name for k in keys], [k.latent for k in keys], self)
        dialog.child_changed.connect(self.panel.set_latent)
        dialog.accepted.connect(lambda: self._keep_child(dialog))
        dialog.rejected.connect(lambda: self.panel.set_latent(before))
        dialog.finished.connect(dialog.deleteLater)
        self.crossbreed_dialog = dialog
        dialog.finished.connect(lambda _r: setattr(self, "crossbreed_dialog", None))
        dialog.start()
        return dialog

    def _keep_child(self, dialog: CrossbreedDialog) -> None:
        child = dialog.child()
        if child is not None:
            self.panel.set_latent(child, emit=self.panel.latent() != child)
            thumbnail = self.canvas.image() if self._shown_latent == self.panel.latent() else None
            self.keyframes.add_keyframe(self.panel.latent(), thumbnail, name=dialog.child_name())
            self._schedule_idle_work()

    # -- saving and opening keyframes -----------------------------------------------------------------

    @Slot()
    def save_keyframes(self, path: str = "") -> bool:
        if not len(self.keyframes.timeline):
            return False
        if not path:
            folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())
            path, _ = QFileDialog.getSaveFileName(self, "Save keyframes", str(Path(folder) / "keyframes.json"),
                                                  "Keyframes (*.json)")
            if not path:
                return False
        try:
            write_keyframes(Path(path), self.models.model_id(), self.keyframes.names(), self.keyframes.latents())
        except StudioError as exc:
            self.jobs.error.show(exc.message)
            return False
        self.caption.setText(f"Saved {len(self.keyframes.timeline)} keyframes to {path}")
        return True

    @Slot()
    def open_keyframes(self, path: str = "") -> bool:
        """Replace the keyframes with a saved set; a set saved for another model that is here
        switches to that model first (its latent space is the one the keys mean something in)."""
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Open keyframes", "", "Keyframes (*.json)")
            if not path:
                return False
        try:
            saved = read_keyframes(Path(path))
        except StudioError as exc:
            self.jobs.error.show(exc.message)
            return False
        if saved.model and saved.model != self.models.model_id() and self.models.findData(saved.model) >= 0:
            self.models.setCurrentIndex(self.models.findData(saved.model))
        dim = self.latent_dim()
        if dim is None or saved.latents.shape[1] != dim:
            self.jobs.error.show(f"{Path(path).name} holds latents of {saved.latents.shape[1]} numbers; "
                                 f"{self.models.model_id() or 'this model'} takes {dim}.")
            return False
        self._stop_playback()
        self.keyframes.set_keyframes(saved.names, saved.latents)
        self.panel.set_latent(saved.latents[0])
        note = f" (saved for {saved.model})" if saved.model and saved.model != self.models.model_id() else ""
        self.caption.setText(f"Opened {len(saved.names)} keyframes{note}")
        self._schedule_idle_work()
        return True


def travel_latent(key: dict) -> tuple[float, float]:
    """What tells a diffusion keyframe apart in the keyframe list (which keeps a vector per key):
    its seed and a checksum of its prompt. Never decoded; the morph uses the prompt and seed."""
    return float(key["seed"]), float(zlib.crc32(key["prompt"].encode("utf-8")))
