"""The model's tokens in the editor: hover shows the alternatives, choosing one rewrites from there
and carries on; the context viewer shows what the model read; world info and instruct mode.
The last test runs a real (tiny, random-weight) GPT-2 in the window."""

from __future__ import annotations

from PySide6.QtCore import Qt

from studio.bench.tiny_models import build_tiny_gpt2
from studio.core.story import WorldInfoEntry
from studio.state.jobs import JobHandle, JobState


def generate(qtbot, ws, tokens: int = 4) -> JobHandle:
    ws.max_tokens.setValue(tokens)
    qtbot.mouseClick(ws.continue_button, Qt.MouseButton.LeftButton)
    job = ws.session.job
    assert job is not None
    qtbot.waitUntil(lambda: not ws.is_running(), timeout=20_000)
    assert job.state is JobState.FINISHED, job.message
    return job


def start_with(ws, text: str) -> None:
    ws.editor.setPlainText(text)
    ws.editor.moveCursor(ws.editor.textCursor().MoveOperation.End)


def test_hovering_a_generated_word_shows_its_alternatives(qtbot, window):
    ws = window.write
    start_with(ws, "Rain")
    generate(qtbot, ws)
    text = ws.document.text
    second = text.index(" ", len("Rain") + 1)  # the second generated word starts here
    token = ws.session.token_at(second + 1)  # on its first letter (a word may be one letter long)
    assert token is not None and token.start == second
    assert token.record.text == text[second : second + len(token.record.text)]
    html = ws._hover_text(second + 1)
    assert "50.0 %" in html and "<b>" in html  # the fake model's chosen word, in bold
    assert ws.session.token_at(1) is None  # the writer's own word has no alternatives
    # Once the writer edits a word, the model's record no longer speaks for it.
    cursor = ws.editor.textCursor()
    cursor.setPosition(second + 1)
    cursor.insertText("X")
    assert ws.session.token_at(second + 1) is None


def test_choosing_an_alternative_rewrites_from_there_and_continues(qtbot, window):
    ws = window.write
    start_with(ws, "Rain")
    generate(qtbot, ws, tokens=6)
    original = ws.document.text
    token = ws.session.token_at(len("Rain") + 1)  # the first generated word
    alternative = token.record.alternatives[1][0]
    menu = ws.editor.context_menu(ws.editor.cursorRect(cursor_at(ws, token.start + 1)).center())
    labels = [a.text() for a in menu.actions()]
    assert any(label.startswith(alternative.replace(" ", "·")) and "30.0 %" in label for label in labels)

    job = ws.choose_alternative(token.start, 1)
    assert job is not None
    spec = job.spec
    assert spec.story.text == "Rain" + alternative  # the model reads on from the chosen word
    qtbot.waitUntil(lambda: not ws.is_running(), timeout=10_000)
    rewritten = ws.document.text
    assert rewritten.startswith("Rain" + alternative) and len(rewritten) > len("Rain" + alternative)
    assert rewritten != original
    assert ws.alternative_label.text() == "2 / 2"
    chosen = ws.session.token_at(len("Rain") + 1)
    assert chosen.record.text == alternative  # its own alternatives are still there to hover
    ws.step_alternative(-1)
    assert ws.document.text == original  # the first sample is one click away


def cursor_at(ws, pos: int):
    cursor = ws.editor.textCursor()
    cursor.setPosition(pos)
    return cursor


def test_the_context_viewer_shows_memory_world_info_and_story(qtbot, window):
    ws = window.write
    ws.panel.memory.setPlainText("Mara is a captain.")
    ws.document.world_info.append(WorldInfoEntry(("harbour",), "The harbour is frozen."))
    ws.panel.set_document(ws.document)
    start_with(ws, "They reached the harbour at dawn.")
    viewer = ws.show_context_viewer()
    qtbot.waitUntil(lambda: viewer.context is not None, timeout=10_000)
    context = viewer.context
    assert context.prompt == "Mara is a captain.\nThe harbour is frozen.\nThey reached the harbour at dawn."
    assert [r for r, *_ in context.parts] == ["memory", "world_info", "story"]
    assert viewer.text.toPlainText() == context.prompt
    assert "world info: harbour" in viewer.summary.text() and "tokens" in viewer.summary.text()
    assert ws.panel.world_info.triggered() == [0]

    # Typing moves the story on, and the open viewer follows.
    ws.editor.moveCursor(ws.editor.textCursor().MoveOperation.End)
    qtbot.keyClicks(ws.editor, " Ice")
    qtbot.waitUntil(lambda: viewer.context.prompt.endswith("dawn. Ice"), timeout=10_000)
    # A generation reports what its model read, assembled the same way.
    generate(qtbot, ws, tokens=2)
    assert ws.session.last_context.prompt == context.prompt + " Ice"


def test_instruct_mode_is_offered_only_for_a_model_with_a_chat_template(qtbot, window):
    ws = window.write
    assert not ws.instruct.isEnabled() and not ws.instruct_on()


def test_a_real_gpt2_writes_in_the_window(qtbot, fake_models, make_window):
    """The tiny GPT-2 (random weights: the words are noise) through the real engine thread: its
    tokens stream into the editor, carry real probabilities, and the context viewer's count is
    its tokenizer's."""
    build_tiny_gpt2(fake_models / "tiny-gpt2")
    window = make_window()
    ws = window.write
    window.tabs.setCurrentWidget(ws)
    ws.models.setCurrentIndex(ws.models.findData("tiny-gpt2"))
    ws.random_seed.setChecked(False)
    ws.seed.setValue(7)
    start_with(ws, "The quiet river")
    generate(qtbot, ws, tokens=10)
    first = ws.document.text
    assert first.startswith("The quiet river") and len(first) > len("The quiet river")
    records = ws.session.tokens.records(ws.session.last_generation, 0)
    assert records and all(0 < sum(p for _, p in r.alternatives) <= 1.0 + 1e-6 for r in records)
    assert "".join(r.text for r in records) == first[len("The quiet river") :]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(fake_models / "tiny-gpt2"), local_files_only=True)
    assert ws.session.last_context.tokens == len(tokenizer("The quiet river")["input_ids"])

    ws.retry()  # same fixed seed: the same words again, as a second sample
    qtbot.waitUntil(lambda: not ws.is_running(), timeout=20_000)
    assert ws.document.text == first and ws.alternative_label.text() == "2 / 2"


def test_the_context_viewer_names_a_memory_past_the_limit_instead_of_failing(qtbot, window):
    from studio.core.story import MAX_SIDE_CHARS

    ws = window.write
    ws.document.memory = "m" * (MAX_SIDE_CHARS + 1)
    start_with(ws, "Hello")
    viewer = ws.show_context_viewer()
    assert viewer.context is None and "memory" in viewer.summary.text()
