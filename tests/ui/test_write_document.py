"""The writer's editor over a studio.writing.Document: who wrote what, Retry with ◀ / ▶, one undo
step per generation, memory in the prompt, autosave and recovery, Open / Save."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from writing.test_autosave_kill import autosave_and_kill, version

from studio.state.jobs import JobState
from studio.writing import autosave
from studio.writing.storage import load_document


def put_cursor(editor, position: int) -> None:
    cursor = editor.textCursor()
    cursor.setPosition(position)
    editor.setTextCursor(cursor)


def generate(qtbot, ws, tokens: int = 4, button=None):
    ws.max_tokens.setValue(tokens)
    qtbot.mouseClick(button or ws.continue_button, Qt.MouseButton.LeftButton)
    job = ws.session.job
    assert job is not None
    qtbot.waitUntil(lambda: not ws.is_running(), timeout=10_000)
    assert job.state is JobState.FINISHED
    return job


def test_typed_text_stays_typed_and_the_model_text_is_marked_generated(qtbot, window):
    ws = window.write
    ws.editor.setFocus()
    qtbot.keyClicks(ws.editor, "The lantern")
    generate(qtbot, ws)
    text = ws.editor.toPlainText()
    assert ws.document.text == text
    assert ws.document.spans() == [(0, 11, "typed"), (11, len(text), "generated")]

    # Typing inside the model's sentence makes that part "edited"; the rest keeps its origin.
    put_cursor(ws.editor, 14)
    qtbot.keyClicks(ws.editor, "XY")
    assert ws.document.text == ws.editor.toPlainText()
    assert "edited" in [o for _, _, o in ws.document.spans()]
    assert [s for s in ws.document.spans() if s[2] == "edited"] == [(14, 16, "edited")]
    # Typing after the end is the writer's own again.
    ws.editor.moveCursor(ws.editor.textCursor().MoveOperation.End)
    qtbot.keyClicks(ws.editor, " Done")
    assert ws.document.spans()[-1][2] == "typed"

    # The tint can be turned off.
    layout = ws.editor.document().firstBlock().layout()
    assert any(r.format.background().color().alpha() > 0 for r in layout.formats())
    ws.show_origins.setChecked(False)
    assert not ws.editor.document().firstBlock().layout().formats()


def test_one_undo_removes_a_whole_generation_and_redo_brings_it_back_as_generated(qtbot, window):
    ws = window.write
    ws.editor.setFocus()
    qtbot.keyClicks(ws.editor, "Once")
    generate(qtbot, ws, tokens=6)
    spans = ws.document.spans()
    ws.editor.undo()
    assert ws.editor.toPlainText() == "Once" == ws.document.text
    ws.editor.redo()
    assert ws.document.spans() == spans and ws.editor.toPlainText() == ws.document.text
    # Ctrl+Z from the keyboard does the same.
    qtbot.keyClick(ws.editor, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert ws.editor.toPlainText() == "Once"


def test_retry_keeps_the_first_sample_reachable(qtbot, window):
    ws = window.write
    ws.editor.setPlainText("Rain fell")
    ws.editor.moveCursor(ws.editor.textCursor().MoveOperation.End)
    generate(qtbot, ws)
    first = ws.editor.toPlainText()
    assert ws.alternative_label.text() == "1 / 1"
    job = generate(qtbot, ws, button=ws.retry_button)
    assert job.spec.story.text == "Rain fell"  # the text before the generation
    second = ws.editor.toPlainText()
    assert second.startswith("Rain fell") and second != first  # a new seed, a new sample
    assert ws.alternative_label.text() == "2 / 2"
    assert not ws.next_button.isEnabled()
    qtbot.mouseClick(ws.previous_button, Qt.MouseButton.LeftButton)
    assert ws.editor.toPlainText() == first == ws.document.text
    assert ws.alternative_label.text() == "1 / 2"
    qtbot.mouseClick(ws.next_button, Qt.MouseButton.LeftButton)
    assert ws.editor.toPlainText() == second
    assert ws.document.spans()[-1][2] == "generated"


def test_memory_from_the_panel_is_at_the_top_of_the_prompt(qtbot, window):
    ws = window.write
    ws.panel.memory.setPlainText("A story about a lighthouse keeper.")
    assert ws.document.memory == "A story about a lighthouse keeper."
    ws.panel.top_k.setValue(40)
    assert ws.document.sampler["top_k"] == 40
    ws.editor.setPlainText("The lamp")
    ws.editor.moveCursor(ws.editor.textCursor().MoveOperation.End)
    job = generate(qtbot, ws, tokens=2)
    spec = job.spec
    assert (spec.story.memory, spec.story.text) == ("A story about a lighthouse keeper.", "The lamp")
    assert spec.top_k == 40 and spec.max_new_tokens == 2
    # Assembled on the engine, which reported what the model read.
    assert ws.session.last_context.prompt == "A story about a lighthouse keeper.\nThe lamp"
    assert [role for role, *_ in ws.session.last_context.parts] == ["memory", "story"]


def test_autosave_writes_the_draft_and_a_new_window_offers_it(qtbot, fake_models, make_window, monkeypatch):
    first = make_window()
    ws = first.write
    ws.editor.setFocus()
    qtbot.keyClicks(ws.editor, "Lost words")
    assert ws.files.autosave_timer.isActive()
    ws.files.autosave_timer.timeout.emit()  # as if the few seconds had passed
    draft = ws.files.autosaver.path
    assert load_document(draft).text == "Lost words"

    # A later run of the studio (another session) finds the draft the first one never closed.
    monkeypatch.setattr(autosave, "SESSION", "a later run")
    second = make_window()
    second.tabs.setCurrentWidget(second.write)
    bar = second.write.recovery_bar
    assert bar.isVisible() and "Untitled" in bar.label.text()
    qtbot.mouseClick(bar.restore_button, Qt.MouseButton.LeftButton)
    assert second.write.editor.toPlainText() == "Lost words"
    assert second.write.document.spans() == [(0, 10, "typed")]
    assert not bar.isVisible()
    assert autosave.recoverable() == []


def test_a_clean_close_leaves_nothing_to_recover(qtbot, fake_models, make_window, monkeypatch):
    first = make_window()
    qtbot.keyClicks(first.write.editor, "Kept")
    first.write.files.autosave_now()
    first.close()
    monkeypatch.setattr(autosave, "SESSION", "a later run")
    assert autosave.recoverable() == []
    second = make_window()
    assert second.write.recovery_bar.isHidden()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_draft_left_by_a_studio_killed_mid_autosave_is_offered_and_restored(qtbot, fake_models, make_window):
    # A real crash: another process autosaves into the documents folder and is killed with SIGKILL.
    announced = autosave_and_kill(autosave.documents_dir(), random.Random(3), lines=50)

    window = make_window()
    window.tabs.setCurrentWidget(window.write)
    bar = window.write.recovery_bar
    assert bar.isVisible() and "“Novel”" in bar.label.text()
    qtbot.mouseClick(bar.restore_button, Qt.MouseButton.LeftButton)
    saved = int(window.write.document.memory.split()[1])
    assert saved in (announced, announced + 1)
    assert window.write.editor.toPlainText() == version(saved, 50).text
    assert window.write.document.spans() == version(saved, 50).spans()
    assert autosave.recoverable() == [] and not bar.isVisible()


def test_save_and_open_round_trip_a_native_document_and_text(qtbot, window, tmp_path: Path):
    ws = window.write
    ws.editor.setPlainText("Dawn")
    ws.editor.moveCursor(ws.editor.textCursor().MoveOperation.End)
    ws.panel.authors_note.setPlainText("Keep it quiet.")
    generate(qtbot, ws, tokens=3)
    spans, text = ws.document.spans(), ws.document.text
    assert ws.files.save_to(tmp_path / "dawn")
    saved = tmp_path / "dawn.studio-doc.json"
    assert saved.is_file() and not ws.files.modified
    assert ws.files.export_to(tmp_path / "dawn.txt")

    ws.new_document()
    assert ws.editor.toPlainText() == "" and ws.document.text == ""
    assert ws.files.open_path(saved)
    assert ws.editor.toPlainText() == text and ws.document.spans() == spans
    assert ws.panel.authors_note.toPlainText() == "Keep it quiet."
    assert ws.alternative_label.text() == "1 / 1" or ws.alternative_label.text() == ""

    assert ws.files.open_path(tmp_path / "dawn.txt")
    assert ws.editor.toPlainText() == text
    assert ws.document.spans() == [(0, len(text), "typed")]
    assert ws.files.path is None  # Save asks where: a .txt keeps no spans


def test_file_menu_has_the_document_commands(window):
    assert set(window.document_actions) == {"new", "open", "save", "save_as", "export"}
    window.tabs.setCurrentWidget(window.image)
    window.write.editor.setPlainText("")
    window.document_actions["new"].trigger()
    assert window.tabs.currentWidget() is window.write


def test_offsets_stay_right_past_characters_outside_the_bmp(qtbot, window):
    ws = window.write
    ws.editor.setPlainText("😀 a")
    ws.editor.moveCursor(ws.editor.textCursor().MoveOperation.End)
    qtbot.keyClicks(ws.editor, "b")
    assert ws.document.text == "😀 ab" == ws.editor.toPlainText()
    generate(qtbot, ws, tokens=2)
    assert ws.document.text == ws.editor.toPlainText()
    assert ws.document.spans()[0] == (0, 4, "typed")
