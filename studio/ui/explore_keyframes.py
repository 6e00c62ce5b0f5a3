"""The explorer's keyframe sources beyond "Add current": a diffusion model's prompt-and-seed keys
(with their previews), pictures encoded by a latent model's encoder, crossbreeds of keyframes,
and keyframe files (Save/Open).

KeyframeSources is a helper the ExploreWorkspace owns (its `sources`): it reads the workspace's
panels and canvas, asks the workspace's ExploreSession for the jobs (previews, encodes) and paints
what the session brings back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from PySide6.QtCore import QStandardPaths
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog

from studio.core.errors import StudioError
from studio.latent.keyframes_file import read_keyframes, write_keyframes
from studio.state.explore_session import travel_latent
from studio.state.inputs import store_input
from studio.state.jobs import JobHandle
from studio.ui.crossbreed_dialog import CrossbreedDialog
from studio.ui.images import from_qimage, to_qimage

if TYPE_CHECKING:
    from studio.ui.explore_workspace import ExploreWorkspace


class KeyframeSources:
    def __init__(self, workspace: "ExploreWorkspace"):
        self.ws = workspace
        self.session = workspace.session
        self.crossbreed_dialog: Optional[CrossbreedDialog] = None
        workspace.canvas.image_dropped.connect(self.picture_dropped)
        workspace.travel.preview_requested.connect(self.request_preview)
        keyframes = workspace.keyframes
        keyframes.keyframe_selected.connect(self.go_to_key)
        keyframes.picture_chosen.connect(self.add_picture)
        keyframes.crossbreed_requested.connect(self.open_crossbreed)
        keyframes.save_requested.connect(self.save_keyframes)
        keyframes.open_requested.connect(self.open_keyframes)
        self.session.preview_ready.connect(self._show_preview)
        self.session.encoded.connect(self._on_picture_encoded)

    # -- a diffusion model: keyframes are a prompt and a seed ----------------------------------------

    def request_preview(self) -> Optional[JobHandle]:
        """Generate the travel panel's prompt and seed on the canvas."""
        key = self.ws.travel.key()
        if not key["prompt"]:
            self.ws.caption.setText("Write a prompt first.")
            return None
        return self.session.preview(key, self.ws.travel.settings())

    def _show_preview(self, _job: JobHandle, image, key: dict) -> None:
        qimage = to_qimage(image)
        self.ws.keyframes.offer_thumbnail(travel_latent(key), qimage)
        self.ws.canvas.set_image(qimage)
        self.ws.caption.setText(f"{key['prompt']} · seed {key['seed']}")

    def add_travel_key(self) -> Optional[str]:
        """Add the travel panel's prompt and seed as a keyframe (the preview on the canvas is its
        thumbnail when it shows that key; else one is generated)."""
        key = self.ws.travel.key()
        if not key["prompt"]:
            self.ws.jobs.error.show("Write a prompt for the keyframe first.")
            return None
        self.session.morphs.stop_playback()
        thumbnail = self.ws.canvas.image() if self.session.shown_key == key else None
        short = key["prompt"] if len(key["prompt"]) <= 24 else key["prompt"][:23] + "…"
        name = self.ws.keyframes.add_keyframe(
            travel_latent(key), thumbnail, name=f"{short} · {key['seed']}", payload=key
        )
        self.session.schedule_idle()  # a key added before its preview gets one
        return name

    def go_to_key(self, latent) -> None:
        """A keyframe was picked: the sliders go to its point, or its prompt and seed are previewed."""
        key = self.ws.keyframes.payload_of(latent)
        if key is None:
            self.ws.panel.set_latent(latent)
            return
        self.ws.travel.set_key(key)
        self.request_preview()

    # -- pictures as keyframes ------------------------------------------------------------------------

    def picture_dropped(self, image: QImage, path: str) -> None:
        if path:
            self.add_picture(path)
            return
        try:  # a pasted picture has no file: keep it as one, as the image tab keeps its inputs
            stored = store_input(from_qimage(image))
        except StudioError as exc:
            self.ws.jobs.error.show(exc.message)
            return
        self.add_picture(str(stored), "Pasted picture")

    def add_picture(self, path: str, name: str = "") -> Optional[JobHandle]:
        """Encode a picture with the model's encoder; it arrives as a keyframe, and the sliders go
        to it (the canvas then shows the model's reconstruction of it)."""
        if self.ws.is_diffusion():
            self.ws.jobs.error.show(
                "Pictures become keyframes of latent models such as emoji-vae; a diffusion "
                "model's keyframes are a prompt and a seed."
            )
            return None
        if not self.ws.models.model_id() or self.ws.latent_dim() is None:
            return None
        name = name or Path(path).stem
        job = self.session.encode(path, name)
        if job is not None:
            self.ws.caption.setText(f"Encoding {name}…")
        return job

    def _on_picture_encoded(self, name: str, latent: Optional[tuple]) -> None:
        if latent is None:  # a failure is on the error bar already
            self.ws.caption.setText("")
            return
        self.ws.panel.set_latent(latent)  # decodes it: the thumbnail comes from that
        self.ws.keyframes.add_keyframe(self.ws.panel.latent(), name=name)
        self.ws.caption.setText(f"{name}, as the model sees it")

    # -- crossbreeding --------------------------------------------------------------------------------

    def open_crossbreed(self) -> Optional[CrossbreedDialog]:
        """Mix the selected keyframes (all of them when fewer than two are selected)."""
        keyframes, panel = self.ws.keyframes, self.ws.panel
        rows = keyframes.selected_rows()
        if len(rows) < 2:
            rows = list(range(len(keyframes.timeline)))
        if len(rows) < 2:
            return None
        self.session.morphs.stop_playback()
        keys = [keyframes.timeline[row] for row in rows]
        before = panel.latent()
        dialog = CrossbreedDialog([k.name for k in keys], [k.latent for k in keys], self.ws)
        dialog.child_changed.connect(panel.set_latent)
        dialog.accepted.connect(lambda: self._keep_child(dialog))
        dialog.rejected.connect(lambda: panel.set_latent(before))
        dialog.finished.connect(dialog.deleteLater)
        self.crossbreed_dialog = dialog
        dialog.finished.connect(lambda _r: setattr(self, "crossbreed_dialog", None))
        dialog.start()
        return dialog

    def _keep_child(self, dialog: CrossbreedDialog) -> None:
        child = dialog.child()
        if child is not None:
            panel = self.ws.panel
            panel.set_latent(child, emit=panel.latent() != child)
            thumbnail = self.ws.canvas.image() if self.session.shown_latent == panel.latent() else None
            self.ws.keyframes.add_keyframe(panel.latent(), thumbnail, name=dialog.child_name())
            self.session.schedule_idle()

    # -- saving and opening keyframes -----------------------------------------------------------------

    def save_keyframes(self, path: str = "") -> bool:
        keyframes = self.ws.keyframes
        if not len(keyframes.timeline):
            return False
        if not path:
            documents = QStandardPaths.StandardLocation.DocumentsLocation
            folder = QStandardPaths.writableLocation(documents) or str(Path.home())
            path, _ = QFileDialog.getSaveFileName(
                self.ws, "Save keyframes", str(Path(folder) / "keyframes.json"), "Keyframes (*.json)"
            )
            if not path:
                return False
        try:
            write_keyframes(Path(path), self.ws.models.model_id(), keyframes.names(), keyframes.latents())
        except StudioError as exc:
            self.ws.jobs.error.show(exc.message)
            return False
        self.ws.caption.setText(f"Saved {len(keyframes.timeline)} keyframes to {path}")
        return True

    def open_keyframes(self, path: str = "") -> bool:
        """Replace the keyframes with a saved set; a set saved for another model that is here
        switches to that model first (its latent space is the one the keys mean something in)."""
        ws = self.ws
        if not path:
            path, _ = QFileDialog.getOpenFileName(ws, "Open keyframes", "", "Keyframes (*.json)")
            if not path:
                return False
        try:
            saved = read_keyframes(Path(path))
        except StudioError as exc:
            ws.jobs.error.show(exc.message)
            return False
        if saved.model and saved.model != ws.models.model_id() and ws.models.findData(saved.model) >= 0:
            ws.models.setCurrentIndex(ws.models.findData(saved.model))
        dim = ws.latent_dim()
        if dim is None or saved.latents.shape[1] != dim:
            ws.jobs.error.show(
                f"{Path(path).name} holds latents of {saved.latents.shape[1]} numbers; "
                f"{ws.models.model_id() or 'this model'} takes {dim}."
            )
            return False
        self.session.morphs.stop_playback()
        ws.keyframes.set_keyframes(saved.names, saved.latents)
        ws.panel.set_latent(saved.latents[0])
        note = f" (saved for {saved.model})" if saved.model and saved.model != ws.models.model_id() else ""
        ws.caption.setText(f"Opened {len(saved.names)} keyframes{note}")
        self.session.schedule_idle()
        return True
