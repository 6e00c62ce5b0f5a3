"""The writer's tab: Continue streams the model's words in at the cursor; Stop ends it; one Undo."""

from __future__ import annotations

from PySide6.QtCore import Qt

from studio.state.jobs import JobState

from fake_models import write_fake_model


def put_cursor(editor, position: int) -> None:
    cursor = editor.textCursor()
    cursor.setPosition(position)
    editor.setTextCursor(cursor)


def test_continue_streams_tokens_and_stop_ends_it_and_undo_removes_it(qtbot, fake_models, make_window):
    write_fake_model(fake_models / "slow-text", "text", step_seconds=0.03)
    window = make_window()
    window.tabs.setCurrentWidget(window.write)
    ws = window.write
    ws.models.setCurrentIndex(ws.models.findData("slow-text"))
    ws.max_tokens.setValue(500)
    ws.editor.setFocus()
    qtbot.keyClicks(ws.editor, "The lantern")
    original = ws.editor.toPlainText()

    qtbot.mouseClick(ws.continue_button, Qt.MouseButton.LeftButton)
    job = ws.session.job
    assert job is not None and ws.stop_button.isEnabled() and not ws.continue_button.isEnabled()
    assert job.spec.story.text == "The lantern"
    qtbot.waitUntil(lambda: len(ws.editor.toPlainText()) > len(original) + 10, timeout=10_000)
    grown = ws.editor.toPlainText()
    assert grown.startswith(original)
    qtbot.waitUntil(lambda: len(ws.editor.toPlainText()) > len(grown), timeout=5_000)  # still streaming

    qtbot.mouseClick(ws.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not ws.is_running(), timeout=2_000)
    record = job
    assert record.state is JobState.CANCELLED
    final = ws.editor.toPlainText()
    qtbot.wait(150)
    assert ws.editor.toPlainText() == final  # nothing arrives after Stop
    assert ws.continue_button.isEnabled() and not ws.stop_button.isEnabled()

    ws.editor.undo()
    assert ws.editor.toPlainText() == original  # the whole generation was one undo step
    ws.editor.redo()
    assert ws.editor.toPlainText() == final


def test_continue_uses_the_text_before_the_cursor_and_inserts_there(qtbot, window):
    ws = window.write
    window.tabs.setCurrentWidget(ws)
    ws.editor.setPlainText("First line\nsecond line. THE END")
    put_cursor(ws.editor, len("First line\nsecond line."))
    ws.max_tokens.setValue(5)
    qtbot.mouseClick(ws.continue_button, Qt.MouseButton.LeftButton)
    record = ws.session.job
    qtbot.waitUntil(lambda: not ws.is_running(), timeout=10_000)
    assert record.state is JobState.FINISHED
    assert record.spec.story.text == "First line\nsecond line."
    text = ws.editor.toPlainText()
    assert text.startswith("First line\nsecond line. ") and text.endswith(" THE END")
    generated = text[len("First line\nsecond line.") : -len(" THE END")]
    assert len(generated.split()) == 5  # five fake words, in order, at the cursor


def test_tokens_are_batched_into_few_document_edits(qtbot, fake_models, make_window):
    write_fake_model(fake_models / "fast-text", "text", step_seconds=0.0005)
    window = make_window()
    ws = window.write
    ws.models.setCurrentIndex(ws.models.findData("fast-text"))
    ws.max_tokens.setValue(300)
    edits = []
    ws.editor.document().contentsChange.connect(lambda *args: edits.append(args))
    qtbot.mouseClick(ws.continue_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not ws.is_running(), timeout=10_000)
    assert len(ws.editor.toPlainText().split()) == 300
    assert len(edits) < 100  # one edit per ~33 ms flush, not one per token
