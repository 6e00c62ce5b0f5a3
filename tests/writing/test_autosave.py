"""Autosave: drafts land atomically in the documents folder, and a run that did not close
cleanly leaves a draft the next run offers back."""

import os
from pathlib import Path

import pytest

from studio.core.errors import DocumentError
from studio.writing import autosave
from studio.writing.autosave import Autosaver, dismiss, documents_dir, free_name, recoverable, safe_name
from studio.writing.document import Document
from studio.writing.storage import load_document


@pytest.fixture
def next_run(monkeypatch):
    """Make the code believe it is a later run of the studio (a new session id)."""

    def start():
        monkeypatch.setattr(autosave, "SESSION", "a-later-run")

    return start


def test_drafts_go_to_the_documents_folder_in_the_data_dir():
    assert documents_dir() == Path(os.environ["STUDIO_DATA_DIR"]) / "documents"
    saver = Autosaver("My Novel")
    path = saver.save_now(Document("Call me Ishmael."))
    assert path == documents_dir() / "My Novel.studio-doc.json"
    assert load_document(path).text == "Call me Ishmael."
    assert saver.marker_path.exists()


def test_a_draft_not_marked_clean_is_offered_for_recovery(next_run):
    doc = Document("Unsaved chapter.")
    saver = Autosaver("Crashed")
    saver.save_now(doc)
    doc.insert(len(doc.text), " More.")
    saver.save_now(doc)
    assert recoverable() == [], "a draft this run still has open is not a crash"
    next_run()
    assert recoverable() == [saver.path]
    assert load_document(saver.path) == doc
    dismiss(saver.path)
    assert recoverable() == [] and saver.path.exists(), "dismissing keeps the draft itself"


def test_a_clean_close_is_not_offered(next_run):
    saver = Autosaver("Closed")
    saver.save_now(Document("Done for today."))
    saver.mark_clean()
    saver.mark_clean()  # twice is harmless
    next_run()
    assert recoverable() == []
    assert saver.path.exists()


def test_several_crashed_drafts_newest_first_and_unreadable_markers_still_count(tmp_path, next_run):
    old, new = Autosaver("old", tmp_path), Autosaver("new", tmp_path)
    old.save_now(Document("a"))
    new.save_now(Document("b"))
    os.utime(old.path, (1_000_000, 1_000_000))
    new.marker_path.write_bytes(b"\x00garbage")
    next_run()
    assert recoverable(tmp_path) == [new.path, old.path]
    assert recoverable(tmp_path / "missing") == []


def test_the_previous_draft_survives_when_writing_a_new_one_fails(monkeypatch, next_run):
    saver = Autosaver("Precious")
    saver.save_now(Document("Version one."))
    before = saver.path.read_bytes()

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(autosave, "write_atomic", disk_full)
    with pytest.raises(DocumentError) as info:
        saver.save_now(Document("Version two."))
    message = info.value.message
    assert message == ("Could not autosave “Precious” (No space left on device); the last autosaved draft is kept.")
    assert saver.path.read_bytes() == before
    next_run()
    assert load_document(recoverable()[0]).text == "Version one."


def test_a_write_that_fails_midway_leaves_the_old_draft_and_no_temp_file(monkeypatch):
    saver = Autosaver("Midway")
    saver.save_now(Document("Version one."))
    before = saver.path.read_bytes()
    real_fsync = os.fsync

    def fail_after_data_written(fd):  # the new bytes are in the temp file; the rename never comes
        real_fsync(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("studio.core.atomic.os.fsync", fail_after_data_written)
    with pytest.raises(DocumentError, match="Input/output error"):
        saver.save_now(Document("Version two, much longer than the first one."))
    monkeypatch.undo()
    assert saver.path.read_bytes() == before
    assert sorted(p.name for p in saver.folder.iterdir()) == ["Midway.studio-doc.json", "Midway.studio-doc.open"]


def test_a_document_with_bad_settings_is_not_autosaved_over_the_last_draft():
    saver = Autosaver("Settings")
    doc = Document("Text.")
    saver.save_now(doc)
    doc.sampler["top_p"] = 5
    with pytest.raises(DocumentError, match="top_p"):
        saver.save_now(doc)
    assert load_document(saver.path).sampler["top_p"] == 1.0


@pytest.mark.parametrize(
    "name, safe",
    [
        ("My Novel", "My Novel"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("a/b\\c:d*e?", "a_b_c_d_e_"),
        ("", "Untitled"),
        ("...", "Untitled"),
        ("CON", "CON_"),
        ("Chapitre été", "Chapitre été"),
        ("x" * 300, "x" * 120),
    ],
)
def test_document_names_become_safe_file_names(name, safe):
    assert safe_name(name) == safe
    assert Autosaver(name).path.parent == documents_dir()


def test_free_name_never_reuses_a_draft(tmp_path):
    assert free_name("Untitled", tmp_path) == "Untitled"
    Autosaver("Untitled", tmp_path).save_now(Document())
    assert free_name("Untitled", tmp_path) == "Untitled 2"
    Autosaver("Untitled 2", tmp_path).save_now(Document())
    assert free_name("Untitled", tmp_path) == "Untitled 3"


def test_a_draft_whose_folder_is_a_symlink_is_saved_in_the_real_folder(tmp_path):
    real = tmp_path / "real-documents"
    real.mkdir()
    (tmp_path / "documents").symlink_to(real)
    saver = Autosaver("Linked", tmp_path / "documents")
    saver.save_now(Document("Kept."))
    assert load_document(real / "Linked.studio-doc.json").text == "Kept."
    assert (tmp_path / "documents").is_symlink()


@pytest.mark.timeout(20)
def test_a_named_pipe_where_the_draft_goes_is_one_sentence_not_a_hang(tmp_path):
    saver = Autosaver("Piped", tmp_path)
    os.mkfifo(saver.path)
    with pytest.raises(DocumentError, match="named pipe"):
        saver.save_now(Document("Text."))
    assert saver.path.is_fifo()
