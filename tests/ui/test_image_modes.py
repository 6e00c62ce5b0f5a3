"""The artist's workspace end to end on a real (tiny) Stable Diffusion pipeline: img2img and
inpainting from the canvas, batches into the gallery, "use these settings", and PNGs from other
tools dropped on the canvas."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QImage

from studio.bench.tiny_models import build_tiny_diffusers
from studio.core.png import PNG_SIGNATURE, encode_png
from studio.models import paths
from studio.ui.images import to_qimage


@pytest.fixture
def ws(qtbot, window):
    build_tiny_diffusers(paths.user_models_dir() / "tiny-sd")
    window.refresh_models()
    ws = window.image
    ws.models.setCurrentIndex(ws.models.findData("tiny-sd"))
    panel = ws.panel
    panel.steps.setValue(3)
    panel.width_.setValue(64)
    panel.height_.setValue(64)
    panel.random_seed.setChecked(False)
    panel.seed.setText("5")
    panel.prompt.setPlainText("a photo of a red cat")
    return ws


def generate(qtbot, ws):
    finished = []
    ws.jobs.finished.connect(lambda job_id, result: finished.append(result))
    with qtbot.waitSignal(ws.session.writer.saved, timeout=30_000):  # on disk, then on the canvas
        qtbot.mouseClick(ws.panel.generate, Qt.MouseButton.LeftButton)
    return finished[-1]


def put_on_canvas(ws, rgb):
    mime = QMimeData()
    mime.setImageData(to_qimage(rgb))
    assert ws.canvas.take_image(mime)  # what a paste or an image drop does


def test_inpainting_repaints_only_the_brushed_area(qtbot, ws, pixels):
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    put_on_canvas(ws, picture)
    assert np.array_equal(pixels(ws.canvas.image()), picture)
    ws.panel.set_mode("inpaint")
    ws.panel.strength.setValue(1.0)

    qtbot.mouseClick(ws.panel.generate, Qt.MouseButton.LeftButton)  # no mask yet: a sentence, no job
    assert "Paint the area to repaint" in ws.jobs.error.message and len(ws.jobs) == 0

    ws.tools.set_tool("brush")
    ws.tools.brush_size.setValue(20)
    ws.canvas.actual_size()
    ws.canvas.centerOn(32, 32)
    centre = ws.canvas.mapFromScene(20, 32)
    qtbot.mousePress(ws.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(ws.canvas.viewport(), centre + QPoint(0, 10))
    qtbot.mouseRelease(ws.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre + QPoint(0, 10))
    mask = pixels(ws.canvas.mask_image())[..., 0] > 0
    assert mask.any() and not mask.all()

    result = generate(qtbot, ws)
    spec = list(ws.jobs)[-1].spec
    assert spec.mode == "inpaint" and spec.init_image and spec.mask
    out = result.images[0]
    assert np.array_equal(out[~mask], picture[~mask]), "outside the painted mask nothing changes"
    assert np.abs(out[mask].astype(int) - picture[mask]).mean() > 10
    assert np.array_equal(pixels(ws.canvas.image()), out)
    assert ws.canvas.has_mask(), "the mask stays for another try"


def test_img2img_starts_from_the_canvas(qtbot, ws, pixels):
    ws.panel.set_mode("img2img")
    qtbot.mouseClick(ws.panel.generate, Qt.MouseButton.LeftButton)
    assert "starts from the canvas" in ws.jobs.error.message

    outs = []
    for colour in ((230, 30, 30), (30, 30, 230)):
        put_on_canvas(ws, np.full((64, 64, 3), colour, np.uint8))
        ws.panel.strength.setValue(0.5)
        outs.append(generate(qtbot, ws).images[0])
        spec = list(ws.jobs)[-1].spec
        stored = QImage(spec.init_image)
        assert pixels(stored)[0, 0].tolist() == list(colour), "the job starts from exactly the canvas pixels"
    assert outs[0][..., 0].mean() > outs[1][..., 0].mean(), "a red start stays redder than a blue one"


def test_a_batch_lands_in_the_gallery_and_use_these_settings_makes_an_image_again(qtbot, ws, pixels):
    ws.panel.count.setValue(3)
    ws.panel.scheduler.setCurrentIndex(ws.panel.scheduler.findData("DPM++ 2M Karras"))
    result = generate(qtbot, ws)
    assert len(result.images) == 3
    saved = ws.strip.paths()
    assert len(saved) == 3 and all(p.endswith(".png") for p in saved)

    # Pick the second image of the batch in the strip: the canvas shows it, with its settings.
    second = [p for p in saved if p.endswith("-6.png")][0]  # seeds 5, 6, 7
    ws.show_gallery_image(second)
    assert np.array_equal(pixels(ws.canvas.image()), result.images[1])
    assert "seed 6" in ws.caption.text() and ws.use_settings.isEnabled()

    ws.panel.prompt.setPlainText("something else entirely")
    ws.panel.count.setValue(1)
    ws.panel.scheduler.setCurrentIndex(0)
    qtbot.mouseClick(ws.use_settings, Qt.MouseButton.LeftButton)
    spec = ws.panel.build_spec()
    assert (spec.prompt, spec.seed, spec.count, spec.scheduler) == ("a photo of a red cat", 6, 1, "DPM++ 2M Karras")
    again = generate(qtbot, ws)
    assert np.array_equal(again.images[0], result.images[1]), "the same settings make the same image"


def _png_with(chunks: dict[str, str]) -> bytes:
    """A PNG as another tool writes it: tEXt chunks with its own keys."""
    data = encode_png(np.full((64, 64, 3), 90, np.uint8))
    extra = b""
    for key, value in chunks.items():
        body = key.encode("latin-1") + b"\0" + value.encode("latin-1")
        extra += struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return data[:33] + extra + data[33:]  # after the signature and IHDR


def test_dropping_an_a1111_png_fills_the_panel(qtbot, ws, tmp_path):
    a1111 = (
        "a lighthouse at dusk, oil on canvas\nNegative prompt: blurry\n"
        "Steps: 12, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 424242, "
        "Size: 64x64, Model hash: 31e35c80fc, Model: sd15, Version: v1.10.1"
    )
    path = tmp_path / "from-a1111.png"
    path.write_bytes(_png_with({"parameters": a1111}))
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    assert ws.canvas.take_image(mime)
    spec = ws.panel.build_spec()
    assert spec.prompt == "a lighthouse at dusk, oil on canvas" and spec.negative_prompt == "blurry"
    assert (spec.steps, spec.guidance_scale, spec.seed, spec.scheduler) == (12, 6.5, 424242, "Euler a")
    assert "AUTOMATIC1111" in ws.caption.text()
    assert not ws.canvas.image().isNull()


def test_a_dropped_jpeg_or_webp_fills_the_panel_and_a_picture_without_settings_clears_it(qtbot, ws, tmp_path):
    """A1111, Forge and SwarmUI write the infotext into EXIF there; a picture with none must not
    leave the previous one's settings offered under it."""
    from PIL import Image

    a1111 = "a red fox\nNegative prompt: fog\nSteps: 9, Sampler: Euler a, CFG scale: 5, Seed: 18446744073709551615, Size: 64x64"

    def drop(path):
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        assert ws.canvas.take_image(mime)

    for fmt in ("JPEG", "WEBP"):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + a1111.encode("utf-16-be")
        path = tmp_path / f"from-forge.{fmt.lower()}"
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(path, fmt, exif=exif.tobytes())
        drop(path)
        spec = ws.panel.build_spec()
        assert (spec.prompt, spec.steps, spec.seed) == ("a red fox", 9, 2**64 - 1)
        assert ws.use_settings.isEnabled() and "AUTOMATIC1111" in ws.caption.text()
    plain = tmp_path / "plain.png"
    Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(plain)
    drop(plain)
    assert not ws.use_settings.isEnabled() and "plain.png" in ws.caption.text()


def test_small_previews_are_enlarged_to_the_job_so_the_mask_stays(qtbot, ws, pixels, monkeypatch):
    from studio.core.jobs import ImageJob, Lane
    from studio.state.jobs import JobHandle

    put_on_canvas(ws, np.full((64, 64, 3), 200, np.uint8))
    mask = QImage(64, 64, QImage.Format.Format_Grayscale8)
    mask.fill(0)
    for x in range(10, 20):
        mask.setPixel(x, 10, 0xFFFFFFFF)
    ws.canvas.set_mask(mask)
    spec = ImageJob(model="tiny-sd", width=64, height=64)
    job = JobHandle(99, spec, Lane.BATCH, ws.jobs)
    monkeypatch.setattr(ws.jobs, "submit_or_report", lambda _spec: job)  # a job this test drives itself
    ws.session.generate(spec, "txt2img")
    job.preview.emit(np.zeros((8, 8, 3), np.uint8))  # a latent-resolution preview
    assert (ws.canvas.image().width(), ws.canvas.image().height()) == (64, 64)
    assert ws.canvas.has_mask()


def test_a_cancelled_job_puts_back_the_picture_its_previews_covered(qtbot, window, fake_models, pixels):
    from fake_models import write_fake_model

    write_fake_model(fake_models / "slow", "image", step_seconds=0.05)
    window.refresh_models()
    ws = window.image
    ws.models.setCurrentIndex(ws.models.findData("slow"))
    picture = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    put_on_canvas(ws, picture)
    ws.panel.set_mode("img2img")
    ws.panel.steps.setValue(100)
    with qtbot.waitSignal(ws.session.preview_shown, timeout=10_000):
        qtbot.mouseClick(ws.panel.generate, Qt.MouseButton.LeftButton)
    job = list(window.jobs)[-1]
    qtbot.waitUntil(lambda: not np.array_equal(pixels(ws.canvas.image()), picture), timeout=5_000)
    job.cancel()
    qtbot.waitUntil(lambda: job.state.value == "cancelled", timeout=10_000)
    assert np.array_equal(pixels(ws.canvas.image()), picture)


def test_a_huge_dropped_picture_is_scaled_evenly_to_a_multiple_of_8(qtbot, ws, tmp_path):
    big = QImage(3000, 1000, QImage.Format.Format_RGB888)
    big.fill(0x336699)
    big.save(str(tmp_path / "wide.png"))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "wide.png"))])
    assert ws.canvas.take_image(mime)
    image = ws.canvas.image()
    assert (image.width(), image.height()) == (2048, 680)
    assert (ws.panel.width_.value(), ws.panel.height_.value()) == (2048, 680)


def test_loras_named_in_an_a1111_image_are_matched_to_the_models_folder(qtbot, ws, tmp_path):
    import torch
    from safetensors.torch import save_file

    lora = paths.user_models_dir() / "ink.safetensors"
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 4),
        },
        str(lora),
    )
    ws.window().refresh_models()
    a1111 = (
        "a <b>bold</b> fox <lora:ink:0.7> <lora:glow:1>\n"
        "Steps: 12, Sampler: Euler, CFG scale: 6, Seed: 5, Size: 64x64, Model: sd15"
    )
    path = tmp_path / "with-loras.png"
    path.write_bytes(_png_with({"parameters": a1111}))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    assert ws.canvas.take_image(mime)
    assert ws.panel.loras.value() == ((str(lora), 0.7),)
    assert "glow" in ws.jobs.error.message and "not found" in ws.jobs.error.message
    assert ws.caption.textFormat() == Qt.TextFormat.PlainText  # "<b>bold</b>" shows as typed
