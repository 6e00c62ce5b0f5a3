"""ExploreSession: what the Explore tab does with jobs, without widgets.

The tab's widgets hand it plain values (a latent, a prompt and seed, a map's cells) and paint what
its signals bring (numpy arrays; ui/images.py makes QImages of them). It holds a handle per job it
is following and nothing else of the engine's:

- The canvas, newest wins. A slider's decode (or a diffusion model's preview) is asked for on
  every move; the engine's interactive lane replaces one still waiting, so a fast drag runs only
  the decodes the engine can keep up with. The handles still on their way are kept oldest first:
  a result paints only if it is newer than the picture on the canvas, and it makes every older
  one out of date, so a superseded or overtaken decode never paints over a newer point.
- While nothing for the canvas is on its way, `idle` says it is time for work a person is not
  waiting on: the map's grid (`decode_map`) or a keyframe's missing thumbnail (`draw_thumbnail`),
  one at a time. The interactive lane keeps one waiting request, and a slider's must not be
  replaced by such work.
- Pictures encoded into keyframes (`encode`), and the morphs (`morphs`, a MorphSession).
- Choosing another model (`set_model`) cancels the previous model's work: nobody will see it."""

from __future__ import annotations

import zlib
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from studio.core.events import ImageResult, LatentResult
from studio.core.jobs import ImageJob, LatentBatchJob, LatentDecodeJob, LatentEncodeJob
from studio.state.explore_morphs import MorphSession
from studio.state.follow import follow
from studio.state.jobs import JobHandle, JobList


def travel_latent(key: dict) -> tuple[float, float]:
    """What tells a diffusion keyframe apart in the keyframe list (which keeps a vector per key):
    its seed and a checksum of its prompt. Never decoded; the morph uses the prompt and seed."""
    return float(key["seed"]), float(zlib.crc32(key["prompt"].encode("utf-8")))


class ExploreSession(QObject):
    """The Explore tab's jobs: the canvas's decodes and previews, thumbnails, the map, encodes, morphs."""

    frame_ready = Signal(object, object, object, object)  # handle, H x W x 3 array, its latent, seconds (or None)
    preview_ready = Signal(object, object, object)  # handle, array, its key {"prompt", "seed"}
    thumbnail_ready = Signal(object, object)  # a keyframe's latent, its picture: not for the canvas
    thumbnail_failed = Signal(object)  # a keyframe's latent whose picture failed: not asked for again
    encoded = Signal(str, object)  # a picture's name, its latent (None: failed, said on the error bar)
    map_decoded = Signal(object, object, object)  # the map's pictures, its cells' latents, its key
    map_failed = Signal(object)  # the key (point, settings) a map failed for: not asked for again
    idle = Signal()  # nothing for the canvas, the map or a thumbnail is on its way
    status = Signal(str)  # a line for the caption: a preview's progress

    def __init__(self, jobs: JobList, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.jobs = jobs
        self.model = ""
        self.morphs = MorphSession(jobs, self)
        # A morph's frames own the canvas: decodes still on their way must not paint over them.
        self.morphs.rendered.connect(self._forget_canvas_jobs)
        self.morphs.frame.connect(self._on_morph_frame)
        self.shown: Optional[JobHandle] = None  # the decode or preview whose picture is on the canvas
        self.shown_latent: Optional[tuple] = None  # the point that picture shows (None: not a decode)
        self.shown_key: Optional[dict] = None  # the prompt and seed it shows (None: not a preview)
        # The canvas's decodes and previews on their way, oldest first, each with what it shows.
        self._asked: list[tuple[JobHandle, object]] = []
        self._thumbnail: Optional[JobHandle] = None
        self._map: Optional[JobHandle] = None
        self._encodes: list[JobHandle] = []

    def set_model(self, model_id: str) -> None:
        """Another model was chosen: the previous one's work is cancelled and its picture forgotten."""
        for job in [*(job for job, _ in self._asked), self._thumbnail, self._map, *self._encodes]:
            if job is not None:
                job.cancel()
        self._forget_canvas_jobs()
        self._thumbnail, self._map, self._encodes = None, None, []
        self.morphs.stop_playback()
        self.shown, self.shown_latent, self.shown_key = None, None, None
        self.model = self.morphs.model = model_id

    def is_busy(self) -> bool:
        """Whether a decode for the canvas, the map or a thumbnail is on its way."""
        return bool(self._asked) or self._thumbnail is not None or self._map is not None

    def is_decoding(self) -> bool:
        """Whether a picture for the canvas is on its way."""
        return bool(self._asked)

    # -- the canvas: newest wins ------------------------------------------------------------------

    def decode(self, latent) -> Optional[JobHandle]:
        """Decode a point for the canvas: `frame_ready` brings it, unless a newer one got there first."""
        if not self.model:
            return None
        self.morphs.stop_playback()  # a new point to look at ends a playing morph
        spec = LatentDecodeJob(model=self.model, latent=tuple(latent))
        job = self.jobs.submit_or_report(spec)
        if job is not None:
            self._ask(job, spec.latent, self._show_frame)
        return job

    def preview(self, key: dict, settings: dict) -> Optional[JobHandle]:
        """Generate a diffusion model's keyframe (a prompt and a seed) for the canvas; `settings`
        are the travel panel's shared ImageJob fields. Older previews are cancelled: newest wins, so
        a Random clicked five times runs once."""
        if not self.model:
            return None
        self.morphs.stop_playback()
        for older, _ in self._asked:
            older.cancel()
        job = self.jobs.submit_or_report(self._preview_spec(key, settings))
        if job is not None:
            self._ask(job, dict(key), self._show_preview)
            follow(job, job.changed, self._on_preview_progress)
            self.status.emit("Generating the preview…")
        return job

    def _preview_spec(self, key: dict, settings: dict) -> ImageJob:
        return ImageJob(model=self.model, prompt=key["prompt"], seed=key["seed"], **settings)

    def _ask(self, job: JobHandle, what: object, show: Callable[[JobHandle, Any, Any], None]) -> None:
        if job.is_done:
            return  # replaced while it was being queued: nothing will come
        self._asked.append((job, what))
        follow(job, job.finished, self._on_canvas_result, show)
        follow(job, job.ended, self._on_canvas_job_ended)

    def _on_canvas_result(self, job: JobHandle, show, result: object) -> None:
        place = next((i for i, (asked, _) in enumerate(self._asked) if asked is job), None)
        if place is None:
            return  # out of date: a newer picture arrived first, or a morph or another model came since
        what = self._asked[place][1]
        del self._asked[: place + 1]  # anything older still on its way is now older than the canvas
        if isinstance(result, ImageResult) and result.images:
            show(job, result, what)

    def _on_canvas_job_ended(self, job: JobHandle) -> None:
        self._asked = [(asked, what) for asked, what in self._asked if asked is not job]
        self.schedule_idle()

    def _show_frame(self, job: JobHandle, result: ImageResult, latent: tuple) -> None:
        image = result.images[0]
        if self.morphs.is_playing():
            self.thumbnail_ready.emit(latent, image)  # the morph keeps the canvas until another action
            return
        self.shown, self.shown_latent, self.shown_key = job, latent, None
        self.frame_ready.emit(job, image, latent, result.info.seconds)

    def _show_preview(self, job: JobHandle, result: ImageResult, key: dict) -> None:
        image = result.images[0]
        if self.morphs.is_playing():
            self.thumbnail_ready.emit(travel_latent(key), image)
            return
        self.shown, self.shown_latent, self.shown_key = job, None, key
        self.preview_ready.emit(job, image, key)

    def _on_preview_progress(self, job: JobHandle) -> None:
        newest = self._asked[-1][0] if self._asked else None
        if job is newest and not job.is_done and job.total:  # an older one being cancelled says nothing
            self.status.emit(f"Generating the preview… {job.step}/{job.total}")

    def _forget_canvas_jobs(self, *_args) -> None:
        self._asked = []

    def _on_morph_frame(self, _index: int) -> None:
        self.shown_latent = self.shown_key = None  # a morph frame is on the canvas, not a point

    # -- work done while nothing is asked for the canvas ------------------------------------------

    def schedule_idle(self) -> None:
        """Say `idle` soon, if nothing is on its way by then. Deferred to the event loop: this runs
        from job signals, which a submit can emit while it is still queueing a slider's decode (a
        waiting idle decode is superseded); work submitted right then would supersede that slider's
        decode before it is even recorded."""
        QTimer.singleShot(0, self._say_idle)

    def _say_idle(self) -> None:
        if self.model and not self.is_busy():
            self.idle.emit()

    def draw_thumbnail(
        self, latent, key: Optional[dict] = None, settings: Optional[dict] = None
    ) -> Optional[JobHandle]:
        """Draw a keyframe's missing thumbnail: its point decoded, or (a diffusion keyframe, `key`)
        its prompt and seed generated with the travel panel's `settings`."""
        if not self.model or self.is_busy():
            return None
        latent = tuple(latent)
        spec = (
            self._preview_spec(key, settings or {})
            if key is not None
            else LatentDecodeJob(model=self.model, latent=latent)
        )
        job = self.jobs.submit_or_report(spec)
        if job is None or job.is_done:
            return job
        self._thumbnail = job
        follow(job, job.finished, self._on_thumbnail, latent)
        follow(job, job.failed, self._on_thumbnail_failed, latent)
        follow(job, job.ended, self._on_thumbnail_ended)
        return job

    def _on_thumbnail(self, job: JobHandle, latent: tuple, result: object) -> None:
        if self._thumbnail is job and isinstance(result, ImageResult) and result.images:
            self.thumbnail_ready.emit(latent, result.images[0])

    def _on_thumbnail_failed(self, job: JobHandle, latent: tuple, _message: str) -> None:
        if self._thumbnail is job:  # said on the error bar; asking again would fail again
            self.thumbnail_failed.emit(latent)

    def _on_thumbnail_ended(self, job: JobHandle) -> None:
        if self._thumbnail is job:
            self._thumbnail = None
            self.schedule_idle()  # the next one; or this one again, if a slider's decode replaced it

    def decode_map(self, cells: list[tuple], key: object) -> Optional[JobHandle]:
        """Decode the map's grid: `cells` are its latents, `key` what it shows (point, settings)."""
        if not self.model or self.is_busy():
            return None
        job = self.jobs.submit_or_report(LatentBatchJob(model=self.model, latents=tuple(cells)))
        if job is None or job.is_done:
            return job
        self._map = job
        follow(job, job.finished, self._on_map, cells, key)
        follow(job, job.failed, self._on_map_failed, key)
        follow(job, job.ended, self._on_map_ended)
        return job

    def _on_map(self, job: JobHandle, cells: list[tuple], key: object, result: object) -> None:
        if self._map is job and isinstance(result, ImageResult) and len(result.images) == len(cells):
            self.map_decoded.emit(list(result.images), cells, key)

    def _on_map_failed(self, job: JobHandle, key: object, _message: str) -> None:
        if self._map is job:  # not again until the point or the settings change
            self.map_failed.emit(key)

    def _on_map_ended(self, job: JobHandle) -> None:
        if self._map is job:
            self._map = None
            self.schedule_idle()  # the point may have moved on meanwhile

    # -- pictures encoded into keyframes ------------------------------------------------------------

    def encode(self, path: str, name: str) -> Optional[JobHandle]:
        """Encode a picture with the model's encoder: `encoded` brings its latent, as `name`."""
        if not self.model:
            return None
        job = self.jobs.submit_or_report(LatentEncodeJob(model=self.model, image=path))
        if job is None or job.is_done:
            return job
        self._encodes.append(job)
        follow(job, job.finished, self._on_encoded, name)
        follow(job, job.failed, self._on_encode_lost, name)  # the error bar says why
        follow(job, job.cancelled, self._on_encode_lost, name)
        return job

    def _on_encoded(self, job: JobHandle, name: str, result: object) -> None:
        if job not in self._encodes:
            return  # another model was chosen meanwhile
        self._encodes.remove(job)
        if not isinstance(result, LatentResult) or not result.latents:
            self.encoded.emit(name, None)
            return
        self.morphs.stop_playback()
        self.encoded.emit(name, tuple(float(v) for v in result.latents[0]))

    def _on_encode_lost(self, job: JobHandle, name: str, _why: str) -> None:
        if job in self._encodes:
            self._encodes.remove(job)
            self.encoded.emit(name, None)
