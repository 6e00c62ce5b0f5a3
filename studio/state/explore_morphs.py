"""The explorer's morphs, without widgets: Play renders a MorphJob of the keyframes and then loops
its frames until another action stops it; Export renders one and hands its frames on to be
written (ui/morph_export.MorphWriter writes the GIF or MP4: the encoders live in studio.latent,
which state/ does not import).

ExploreSession owns one MorphSession and keeps its `model` current; the Explore tab's widgets ask
it to play, stop and export, and paint what its signals say."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from PySide6.QtCore import QObject, QTimer, Signal

from studio.core.events import ImageResult
from studio.core.jobs import MorphJob
from studio.state.follow import follow
from studio.state.jobs import JobHandle, JobList


@dataclass(frozen=True)
class MorphKeys:
    """A morph as the keyframe panel holds it: the keys' latents (a diffusion model's keys carry a
    prompt and a seed as their payloads, and their latents only tell them apart), the morph's
    frames, spacing and method, and a diffusion model's shared image settings."""

    latents: tuple[tuple[float, ...], ...]
    payloads: tuple[Optional[dict], ...] = ()
    settings: dict = field(default_factory=dict)  # frames, spacing, method (MorphJob fields)
    travel: dict = field(default_factory=dict)  # negative_prompt, steps, guidance_scale, width, height


def morph_spec(model: str, keys: MorphKeys) -> MorphJob:
    """The MorphJob of `keys` on `model`: latents for a latent model, travel for a diffusion one."""
    if not keys.payloads or keys.payloads[0] is None:
        return MorphJob(model=model, latents=keys.latents, **keys.settings)
    payloads = [payload for payload in keys.payloads if payload is not None]  # all of them, on such a model
    return MorphJob(model=model, **travel_keys(payloads), **keys.travel, **keys.settings)


def travel_keys(payloads: list[dict]) -> dict:
    """A diffusion morph's keyframes as MorphJob fields: seed travel under one prompt when every
    key has the same prompt, prompt travel from one seed when every key has the same seed, and
    both together otherwise."""
    prompts = [p["prompt"] for p in payloads]
    seeds = [int(p["seed"]) for p in payloads]
    if len(set(prompts)) == 1:
        return {"seeds": tuple(seeds), "prompt": prompts[0]}
    if len(set(seeds)) == 1:
        return {"prompts": tuple(prompts), "seed": seeds[0]}
    return {"prompts": tuple(prompts), "seeds": tuple(seeds)}


class MorphSession(QObject):
    """Play's render and loop, and Export's render, each followed through its own job handle."""

    playing_changed = Signal(bool)  # a morph began, or stopped, rendering or looping for Play
    rendered = Signal(object)  # list of H x W x 3 arrays: Play's frames, about to loop
    frame = Signal(int)  # the index in `frames` of the frame to show now
    status = Signal(str)  # a line for the caption: Play's progress, or how it ended
    export_progress = Signal(int, int)  # the export's frames rendered so far, of how many
    export_rendered = Signal(object)  # list of arrays: the export's frames, to be written
    export_ended = Signal(str)  # the export's render ended without frames: the caption to show
    # ("" after a failure, which the error bar already says)

    def __init__(self, jobs: JobList, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.jobs = jobs
        self.model = ""  # kept current by the ExploreSession
        self.play_job: Optional[JobHandle] = None  # the morph rendering for Play
        self.frames: list = []  # Play's frames (arrays), once rendered
        self.index = 0  # the frame on show
        self.fps = 24
        self.timer = QTimer(self)  # runs while the frames loop
        self.timer.timeout.connect(self._next_frame)
        self.export_job: Optional[JobHandle] = None  # the morph rendering for Export
        self._export_cancelled = False
        self._playing = False

    # -- play ---------------------------------------------------------------------------------------

    def is_playing(self) -> bool:
        """Whether a morph is rendering for Play or looping: it has the canvas until another action."""
        return self.play_job is not None or self.timer.isActive()

    def play(self, keys: MorphKeys) -> Optional[JobHandle]:
        """Render the keys' morph; its frames loop once it arrives. None when nothing was queued."""
        self.stop_playback()
        if len(keys.latents) < 2 or not self.model:
            return None
        job = self.jobs.submit_or_report(morph_spec(self.model, keys))
        if job is None or job.is_done:
            return job
        self.play_job = job
        follow(job, job.changed, self._on_play_progress)
        follow(job, job.finished, self._on_play_rendered)
        follow(job, job.failed, self._on_play_ended, "")  # the error bar says why
        follow(job, job.cancelled, self._on_play_ended, "Morph cancelled.")
        self._set_playing(True)
        self.status.emit("Rendering the morph…")
        return job

    def stop(self) -> None:
        """The person's Stop: a morph still rendering is cancelled; a looping one stays on its frame."""
        was_looping = self.timer.isActive()
        self.stop_playback()
        if was_looping and self.frames:
            self.status.emit(f"Morph stopped at frame {self.index + 1} of {len(self.frames)}")

    def stop_playback(self) -> None:
        """Another action takes the canvas: the render is cancelled, the loop stops, quietly."""
        if self.play_job is not None:
            job, self.play_job = self.play_job, None  # first: its cancellation is no news
            job.cancel()
        self.timer.stop()
        self._set_playing(False)

    def set_fps(self, fps: int) -> None:
        self.fps = fps
        if self.timer.isActive():
            self.timer.setInterval(self._interval())

    def _on_play_progress(self, job: JobHandle) -> None:
        if self.play_job is job and not job.is_done and job.total:
            self.status.emit(f"Rendering the morph… {job.step}/{job.total}")

    def _on_play_rendered(self, job: JobHandle, result: object) -> None:
        if self.play_job is not job:
            return  # stopped meanwhile
        self.play_job = None
        if not isinstance(result, ImageResult) or not result.images:
            self._set_playing(False)
            return
        self.frames = list(result.images)
        self.index = -1
        self.rendered.emit(self.frames)
        self.timer.start(self._interval())
        self._next_frame()

    def _on_play_ended(self, job: JobHandle, caption: str, _why: str) -> None:
        if self.play_job is not job:
            return  # stopped by another action, which said nothing
        self.play_job = None
        self._set_playing(False)
        self.status.emit(caption)

    def _interval(self) -> int:
        return max(1, round(1000 / max(1, self.fps)))

    def _next_frame(self) -> None:
        if self.frames:
            self.index = (self.index + 1) % len(self.frames)
            self.frame.emit(self.index)

    def _set_playing(self, playing: bool) -> None:
        # Said on a change only: every slider move stops playback, and the panel need not hear it.
        if playing != self._playing:
            self._playing = playing
            self.playing_changed.emit(playing)

    # -- export -------------------------------------------------------------------------------------

    def is_exporting(self) -> bool:
        """Whether the export's frames are still rendering (writing them is the writer's business)."""
        return self.export_job is not None

    def export(self, keys: MorphKeys) -> Optional[JobHandle]:
        """Render the keys' morph for a file: `export_rendered` brings the frames, else `export_ended`."""
        job = self.jobs.submit_or_report(morph_spec(self.model, keys)) if self.model else None
        if job is None or job.is_done:
            self.export_ended.emit("")
            return None
        self.export_job = job
        self._export_cancelled = False
        follow(job, job.changed, self._on_export_progress)
        follow(job, job.finished, self._on_export_rendered)
        follow(job, job.failed, self._on_export_ended, "")  # the error bar says why
        follow(job, job.cancelled, self._on_export_ended, "Export cancelled.")
        return job

    def cancel_export(self) -> bool:
        """Cancel the export's render; False when none is rendering (its frames may be being written)."""
        if self.export_job is None:
            return False
        self._export_cancelled = True  # in case the frames arrive before the cancel lands
        self.export_job.cancel()
        return True

    def _on_export_progress(self, job: JobHandle) -> None:
        if self.export_job is job and not job.is_done and job.total:
            self.export_progress.emit(job.step, job.total)

    def _on_export_rendered(self, job: JobHandle, result: object) -> None:
        if self.export_job is not job:
            return
        self.export_job = None
        if self._export_cancelled:
            self.export_ended.emit("Export cancelled.")
        elif not isinstance(result, ImageResult) or not result.images:
            self.export_ended.emit("")
        else:
            self.export_rendered.emit(list(result.images))

    def _on_export_ended(self, job: JobHandle, caption: str, _why: str) -> None:
        if self.export_job is job:
            self.export_job = None
            self.export_ended.emit(caption)
