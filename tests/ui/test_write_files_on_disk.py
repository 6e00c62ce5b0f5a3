"""The Write tab's Save does not overwrite a document changed on disk since it was opened or last
saved (another window, another program): the error bar says so in one sentence, the file keeps
the other change, and Save As (where the writer confirms the overwrite) still writes."""

from __future__ import annotations

from pathlib import Path

from studio.writing.document import Document
from studio.writing.storage import load_document, save_document


def test_save_refuses_a_document_changed_on_disk_and_save_as_still_writes(window, tmp_path: Path):
    ws = window.write
    path = tmp_path / "river.studio-doc.json"
    save_document(Document("The river ran."), path)
    assert ws.files.open_path(path)
    ws.editor.setPlainText("The river ran, mine.")
    assert ws.save() and load_document(path).text == "The river ran, mine."  # our own save moves on

    save_document(Document("The river ran, theirs."), path)  # another window saves the same file
    ws.editor.setPlainText("The river ran, mine again.")
    assert not ws.save()
    message = ws.jobs.error.message
    assert message.startswith("river.studio-doc.json changed on disk since it was opened")
    assert message.endswith(".") and "\n" not in message
    assert load_document(path).text == "The river ran, theirs." and ws.files.modified

    assert ws.files.save_to(path)  # Save As over it: the writer chose this file in the dialog
    assert load_document(path).text == "The river ran, mine again." and not ws.files.modified
    assert ws.save()  # and Save goes on from the version it wrote
