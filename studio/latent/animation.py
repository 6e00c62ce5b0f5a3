"""Write a morph's frames as an animated GIF or an H.264 MP4.

Both writers take the frames as one uint8 array (N, H, W, 3) of RGB, or as a sequence of (H, W, 3)
frames that they read one at a time (`ResizedFrames` scales each as it is read, so a morph written
at 4096 px never holds all its large frames at once). They build the whole file (in memory, or for
MP4 in a private scratch folder) and hand its bytes to `studio.core.atomic.write_atomic` (temp
file in the same folder, fsync, replace): a crash, a full disk or a cancel never leaves a
half-written animation, and an older file of the same name survives until the new one is
complete. What a writer holds is estimated up front by `writer_bytes`, so a caller can refuse a
morph too large for the machine before rendering it.

`progress(done, total)` is called after each frame is encoded; it may raise (JobCancelled, say)
to stop, and then nothing is written.

Encoders: GIF with Pillow. MP4 with PyAV (`av`), whose wheels bundle FFmpeg's libraries with
libx264, so it needs no system ffmpeg and no network. Both are imported only when a file is
written, so `import studio.latent` stays light (docs/DESIGN.md §1).
"""

from __future__ import annotations

import io
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, overload

import numpy as np

from studio.core.atomic import write_atomic
from studio.core.errors import SpecError, StudioError

Progress = Callable[[int, int], object]

# GIF stores delays in hundredths of a second, and browsers play delays under 20 ms as 100 ms:
# so a GIF can show at most 50 frames a second.
GIF_MIN_DELAY_MS = 20
MAX_FPS = 240.0
# H.264 quality: constant rate factor 18 is visually lossless for most content, and a morph's
# smooth frames compress well at it.
MP4_CRF = 18
# The H.264 encoders tried, best first: libx264 (in PyAV's wheels), else OpenH264.
H264Encoder = Literal["libx264", "libopenh264"]
H264_ENCODERS: tuple[H264Encoder, ...] = ("libx264", "libopenh264")
MIN_SIZE, MAX_SIZE = 8, 4096  # a resized morph's longer side, in pixels
# What a writer holds, per pixel of every frame: a GIF keeps every frame palettised (1 byte) until
# Pillow writes the file, then the file and its copy as bytes (LZW codes, at most about 1.5 bytes a
# pixel in all, usually far less); an MP4 only its file, well under a byte a pixel at CRF 18.
WRITER_BYTES_PER_PIXEL = {".gif": 3, ".mp4": 1}


def writer_bytes(count: int, width: int, height: int, suffix: str) -> int:
    """About the most memory writing `count` frames of width x height as `suffix` (".gif" or
    ".mp4") takes, besides the frames handed to it."""
    return count * width * height * WRITER_BYTES_PER_PIXEL[suffix.lower()]


def gif_delay_ms(fps: float) -> int:
    """A GIF frame's delay for `fps`: GIF stores hundredths of a second, and players treat
    delays under 20 ms as slow (browsers play them at 100 ms), so 20 ms is the floor."""
    return max(GIF_MIN_DELAY_MS, int(round(100.0 / check_fps(fps))) * 10)


def gif_fps(fps: float) -> float:
    """The rate a GIF written at `fps` really plays at (24 → 25, 30 → 33.3, 60 → 50)."""
    return 1000.0 / gif_delay_ms(fps)


def write_gif(frames, path, fps: float, loop: bool = True, progress: Progress | None = None) -> Path:
    """Write `frames` (uint8 RGB, shape (N, H, W, 3), or a sequence of (H, W, 3) frames) as an
    animated GIF at `fps` frames a second and return the path.

    Each frame gets its own 256-colour palette (Pillow's adaptive palette). The per-frame delay
    is 1000/fps ms rounded to GIF's 10 ms steps and at least 20 ms (see GIF_MIN_DELAY_MS), so
    fps above 50 play at 50. `loop=True` loops forever; `loop=False` plays once."""
    from PIL import Image

    total, _, frames = _frame_source(frames)
    fps = check_fps(fps)
    path = Path(path)
    delay = gif_delay_ms(fps)
    images = []
    for i, frame in enumerate(frames):
        images.append(Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE, colors=256))
        _report(progress, i + 1, total)
    buffer = io.BytesIO()
    options = {"loop": 0} if loop else {}
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=delay,
        disposal=1,
        optimize=False,
        **options,
    )
    write_atomic(path, buffer.getvalue())
    return path


def write_mp4(frames, path, fps: float, progress: Progress | None = None) -> Path:
    """Write `frames` (uint8 RGB, shape (N, H, W, 3), or a sequence of (H, W, 3) frames, read one
    at a time) as an H.264 MP4 at `fps` frames a second and return the path.

    H.264 in yuv420p with the index (moov) at the front of the file is what every standard
    player, browser and editor opens. yuv420p stores colour at half resolution, so width and
    height must be even: an odd size is padded by one row and/or column repeating the edge
    pixels (invisible, and nothing is cropped). Fractional rates such as 29.97 are kept exact
    enough (denominator ≤ 1001)."""
    n, (height, width, _), frames = _frame_source(frames)
    fps = check_fps(fps)
    path = Path(path)
    try:
        import av
    except ImportError:
        raise StudioError("Writing MP4 needs the `av` package (PyAV); install it with pip install av.") from None

    pad_h, pad_w = height % 2, width % 2
    rate = Fraction(fps).limit_denominator(1001)
    # The muxer writes to a scratch file, not memory: moving the index (moov) to the front
    # ("faststart", so players and browsers can start before the whole file is read) is a
    # second pass that reopens the file. The scratch folder goes away however this ends.
    with tempfile.TemporaryDirectory(prefix="studio-mp4-") as scratch:
        scratch_file = os.path.join(scratch, "morph.mp4")
        container = av.open(scratch_file, mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            stream = container.add_stream(_h264(av), rate=rate)
            stream.width, stream.height = width + pad_w, height + pad_h
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(MP4_CRF)}
            _tag_bt709(stream.codec_context)
            for i, frame in enumerate(frames):
                if pad_h or pad_w:
                    frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                video.pts = i
                video.time_base = 1 / rate
                for packet in stream.encode(_to_yuv(video)):
                    container.mux(packet)
                _report(progress, i + 1, n)
            for packet in stream.encode(None):  # flush the encoder's delayed frames
                container.mux(packet)
        except BaseException:
            try:  # a cancel or an encoder error is the news, not a complaint while closing
                container.close()
            except Exception:  # noqa: BLE001 - whatever closing says, the first error is raised
                pass
            raise
        container.close()
        with open(scratch_file, "rb") as f:
            data = f.read()
    write_atomic(path, data)
    return path


# --- helpers ---------------------------------------------------------------------------------


def _h264(av) -> H264Encoder:
    """The H.264 encoder this PyAV build has: libx264 (in PyAV's wheels), else OpenH264."""
    for name in H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV's errors for an absent encoder vary by version
            continue
        return name
    raise StudioError("This PyAV build has no H.264 encoder (libx264 or OpenH264); write a GIF instead.")


def _to_yuv(video):
    """RGB to limited-range yuv420p with the BT.709 matrix: what players assume for tagged
    video, so colours come out as they went in (untagged video leaves players guessing between
    BT.601 and BT.709 by frame size, and saturated colours shift)."""
    from av.video.reformatter import ColorRange, Colorspace

    return video.reformat(
        format="yuv420p",
        dst_colorspace=Colorspace.ITU709,
        src_color_range=ColorRange.JPEG,
        dst_color_range=ColorRange.MPEG,
    )


def _tag_bt709(codec_context) -> None:
    """Say in the stream that it is BT.709, limited range (see `_to_yuv`)."""
    from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

    codec_context.colorspace = Colorspace.ITU709
    codec_context.color_primaries = ColorPrimaries.BT709
    codec_context.color_trc = ColorTrc.BT709
    codec_context.color_range = ColorRange.MPEG


def _frames(frames) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise SpecError("frames", f"must be 8-bit (uint8) RGB pixels, not {arr.dtype}.")
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise SpecError("frames", f"must have shape (frames, height, width, 3), not {arr.shape}.")
    if min(arr.shape[:3]) < 1:
        raise SpecError("frames", f"must hold at least one frame of at least 1×1 pixels, not {arr.shape}.")
    return arr


def _frame_source(frames: Any) -> tuple[int, tuple[int, ...], Iterator[np.ndarray]]:
    """(how many, the first frame's shape, the frames one at a time). An array is checked whole;
    a sequence of frames (a list, ResizedFrames) is read lazily, its first frame checked now and
    every later one as it comes (the same dtype and shape as the first)."""
    if isinstance(frames, np.ndarray) or not isinstance(frames, Sequence):
        array = _frames(frames)
        return len(array), array.shape[1:], iter(array)
    if len(frames) < 1:
        raise SpecError("frames", "must hold at least one frame.")
    items = iter(frames)
    first = _frames(np.asarray(next(items))[None])[0]

    def each() -> Iterator[np.ndarray]:
        yield first
        for index, frame in enumerate(items, start=2):
            frame = np.asarray(frame)
            if frame.dtype != first.dtype or frame.shape != first.shape:
                raise SpecError(
                    "frames",
                    f"must all be uint8 of the first frame's shape {first.shape}; frame {index} "
                    f"is {frame.dtype} of shape {frame.shape}.",
                )
            yield frame

    return len(frames), first.shape, each()


def check_size(size: Any) -> int:
    """A resized morph's longer side, or SpecError naming `size`."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise SpecError("size", f"must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, not {size!r}.")
    return size


def check_fps(fps: Any) -> float:
    """A frame rate, or SpecError naming `fps` (more than 0, at most MAX_FPS)."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise SpecError("fps", f"must be a number, not {fps!r}.") from None
    if isinstance(fps, bool) or not 0.0 < value <= MAX_FPS:
        raise SpecError("fps", f"must be more than 0 and at most {MAX_FPS:g}, not {fps!r}.")
    return value


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) of a frame scaled so its longer side is `size` pixels."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class ResizedFrames(Sequence[np.ndarray]):
    """Frames scaled so their longer side is `size` pixels (Lanczos; the studio's models are small,
    and a morph is often wanted larger than 64 px), each made when it is read: a writer reading
    them holds one large frame at a time, not all of them."""

    def __init__(self, frames: Any, size: int):
        self.frames = _frames(frames)
        self.size = check_size(size)
        height, width = self.frames.shape[1:3]
        self.height, self.width = resized_shape(height, width, self.size)

    def __len__(self) -> int:
        return len(self.frames)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        from PIL import Image

        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        image = Image.fromarray(self.frames[index]).resize((self.width, self.height), Image.Resampling.LANCZOS)
        return np.asarray(image)
