"""Saving a document over what the writer already has: a symlink stays a link, a named pipe or a
device is refused in one sentence (never opened, never replaced), a private file stays private,
and a file changed on disk since it was opened is not overwritten."""

import os
import stat

import pytest

from studio.core.errors import DocumentError
from studio.writing.document import Document
from studio.writing.storage import (
    DocumentChanged,
    export_text,
    load_document,
    read_document,
    save_document,
)


def one_sentence(message: str) -> bool:
    return message.endswith(".") and ". " not in message.rstrip(".") and "\n" not in message


def test_a_document_saved_through_a_symlink_updates_its_target(tmp_path):
    real = tmp_path / "drafts" / "novel.studio-doc.json"
    real.parent.mkdir()
    save_document(Document("Old text."), real)
    link = tmp_path / "novel.studio-doc.json"
    link.symlink_to(real)
    document, stamp = read_document(link)
    document.insert(len(document.text), " New text.", "typed")
    save_document(document, link, unchanged_since=stamp)
    assert link.is_symlink()
    assert load_document(real).text == "Old text. New text."


@pytest.mark.timeout(20)
def test_a_named_pipe_is_neither_opened_nor_replaced(tmp_path):
    fifo = tmp_path / "story.md"
    os.mkfifo(fifo)
    with pytest.raises(DocumentError) as opened:  # reading it would block until a writer came
        load_document(fifo)
    with pytest.raises(DocumentError) as saved:
        export_text(Document("Text."), fifo)
    for error in (opened.value, saved.value):
        assert one_sentence(error.message) and "named pipe" in error.message
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.timeout(20)
def test_a_device_is_refused_in_one_sentence_and_stays_a_device(tmp_path):
    link = tmp_path / "story.txt"
    link.symlink_to("/dev/null")
    with pytest.raises(DocumentError) as caught:
        export_text(Document("Text."), link)
    assert one_sentence(caught.value.message)
    assert caught.value.message.startswith(f"Could not save {link}") and "device" in caught.value.message
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode) and link.is_symlink()


def test_a_private_document_stays_private(tmp_path):
    path = tmp_path / "journal.studio-doc.json"
    save_document(Document("Dear diary."), path)
    path.chmod(0o600)
    document, stamp = read_document(path)
    save_document(document, path, unchanged_since=stamp)
    export = tmp_path / "journal.md"
    export.write_text("private")
    export.chmod(0o600)
    export_text(document, export)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(export.stat().st_mode) == 0o600


def test_two_saves_of_one_opened_document_do_not_both_succeed(tmp_path):
    path = tmp_path / "story.studio-doc.json"
    save_document(Document("Once upon a time"), path)
    first, first_stamp = read_document(path)  # two windows (or two `studio write`) open it
    second, second_stamp = read_document(path)
    first.add_generation(len(first.text), " there was a fox.")
    second.add_generation(len(second.text), " there was a crow.")
    save_document(first, path, unchanged_since=first_stamp)
    with pytest.raises(DocumentChanged) as caught:
        save_document(second, path, unchanged_since=second_stamp)
    assert one_sentence(caught.value.message) and "story.studio-doc.json changed on disk" in caught.value.message
    assert load_document(path).text == "Once upon a time there was a fox."


def test_each_save_returns_the_stamp_for_the_next(tmp_path):
    path = tmp_path / "story.md"
    document, stamp = read_document(path, missing_ok=True)
    assert document.text == "" and not stamp.exists
    for word in ("One.", " Two.", " Three."):
        document.insert(len(document.text), word, "typed")
        stamp = export_text(document, path, unchanged_since=stamp)
    assert path.read_text() == "One. Two. Three."


def test_a_file_made_by_someone_else_after_it_was_missing_is_kept(tmp_path):
    path = tmp_path / "story.md"
    document, stamp = read_document(path, missing_ok=True)
    path.write_text("Someone else's story.")
    with pytest.raises(DocumentChanged):
        export_text(Document("Mine."), path, unchanged_since=stamp)
    assert path.read_text() == "Someone else's story."
