"""GIF and MP4 export of morphs: readable by the usual decoders, written whole or not at all."""

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import SpecError
from studio.latent import write_gif, write_mp4

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 255, 255)]


def solid_frames(height=24, width=32, n=len(COLOURS)):
    """Distinct frames (identical neighbours would be merged by a GIF writer), each with a
    gradient so they are not just one colour."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i] = COLOURS[i % len(COLOURS)]
        frames[i, : height // 2, : width // 2] = (i * 40) % 256
    return frames


def test_gif_reads_back_with_every_frame_and_its_delay(tmp_path):
    frames = solid_frames()
    seen = []
    path = write_gif(frames, tmp_path / "morph.gif", fps=10, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i + 1, len(frames)) for i in range(len(frames))]
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == len(frames) and gif.size == (32, 24)
        assert gif.info["loop"] == 0
        for i in range(gif.n_frames):
            gif.seek(i)
            assert gif.info["duration"] == 100
            assert np.array_equal(np.asarray(gif.convert("RGB")), frames[i])
    assert [p.name for p in tmp_path.iterdir()] == ["morph.gif"]


def test_gif_that_plays_once_and_a_fast_rate(tmp_path):
    path = write_gif(solid_frames(n=3), tmp_path / "once.gif", fps=100, loop=False)
    with Image.open(path) as gif:
        assert "loop" not in gif.info
        assert gif.info["duration"] == 20  # GIF's fastest delay that browsers honour


def test_mp4_is_h264_that_decodes_to_every_frame(tmp_path):
    import av

    frames = solid_frames(n=12)
    seen = []
    path = write_mp4(frames, tmp_path / "morph.mp4", fps=24, progress=lambda d, t: seen.append(d))
    assert seen == list(range(1, 13))
    data = path.read_bytes()
    assert data[4:8] == b"ftyp"
    assert data.find(b"moov") < data.find(b"mdat"), "index at the front (faststart)"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 24
        # Tagged BT.709 so players do not guess the colour matrix from the frame size.
        assert (stream.codec_context.colorspace, stream.codec_context.color_primaries) == (1, 1)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 12
    for got, want in zip(decoded, frames):
        assert got.shape == want.shape
        assert np.mean(np.abs(got.astype(int) - want)) < 8  # lossy, but the same picture
    red = decoded[0][-4, -4]  # away from the grey corner that shares its chroma blocks
    assert np.all(np.abs(red.astype(int) - (255, 0, 0)) <= 4), red


def test_mp4_pads_odd_sizes_to_even(tmp_path):
    import av

    frames = solid_frames(height=23, width=31, n=3)
    path = write_mp4(frames, tmp_path / "odd.mp4", fps=12.5)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (32, 24)
        assert stream.average_rate == 12.5
        assert sum(1 for _ in container.decode(stream)) == 3


@pytest.mark.parametrize("write", [write_gif, write_mp4])
def test_cancel_from_progress_leaves_nothing_and_keeps_the_old_file(tmp_path, write):
    class Cancelled(Exception):
        pass

    def cancel_at_three(done, total):
        if done == 3:
            raise Cancelled

    suffix = ".gif" if write is write_gif else ".mp4"
    with pytest.raises(Cancelled):
        write(solid_frames(), tmp_path / f"new{suffix}", fps=10, progress=cancel_at_three)
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / f"old{suffix}"
    old.write_bytes(b"precious")
    with pytest.raises(Cancelled):
        write(solid_frames(), old, fps=10, progress=cancel_at_three)
    assert old.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == [old.name]


@pytest.mark.parametrize("write", [write_gif, write_mp4])
@pytest.mark.parametrize(
    "frames, fps, words",
    [
        (np.zeros((2, 4, 4, 3), np.float32), 10, "`frames` must be 8-bit (uint8) RGB pixels, not float32."),
        (np.zeros((2, 4, 4), np.uint8), 10, "`frames` must have shape (frames, height, width, 3)"),
        (np.zeros((0, 4, 4, 3), np.uint8), 10, "`frames` must hold at least one frame"),
        (np.zeros((2, 4, 4, 3), np.uint8), 0, "`fps` must be more than 0"),
        (np.zeros((2, 4, 4, 3), np.uint8), float("nan"), "`fps` must be more than 0"),
    ],
)
def test_bad_input_is_refused_in_one_sentence(tmp_path, write, frames, fps, words):
    with pytest.raises(SpecError) as info:
        write(frames, tmp_path / "x", fps=fps)
    assert str(info.value).startswith(words) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
