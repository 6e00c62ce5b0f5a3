"""Saving and opening documents: the native JSON round-trips, damaged or hostile files give one
sentence, and plain .txt / .md open as the writer's own text."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.core.errors import DocumentError, ErrorKind
from studio.writing import storage
from studio.writing.document import Document, WorldInfoEntry
from studio.writing.storage import (
    document_from_bytes,
    document_to_dict,
    export_text,
    import_text,
    load_document,
    save_document,
)


def full_document() -> Document:
    doc = Document("Chapter one.\n\nMara lit the lamp. ", name="The Lamp")
    gen = doc.add_generation(len(doc.text), "Shadows ran up the wall.")
    doc.retry(gen, "The wick hissed.")
    doc.replace(40, 44, "flame")  # an edit inside the shown sample
    doc.add_generation(len(doc.text), " Ünïcode ✓")
    doc.memory = "Mara is a lighthouse keeper."
    doc.authors_note = "[Style: quiet, tense]"
    doc.authors_note_depth = 40
    doc.world_info = [
        WorldInfoEntry(["lamp", "wick"], "The lamp is older than Mara."),
        WorldInfoEntry(("sea",), "The sea is grey.", enabled=False),
    ]
    doc.sampler.update(temperature=0.7, top_k=40, stop=["\n\n"], banned=["suddenly"], seed=1234)
    return doc


def one_sentence(message: str) -> bool:
    return message.endswith(".") and ". " not in message.rstrip(".") and "\n" not in message


def test_save_then_load_gives_the_same_document(tmp_path):
    doc = full_document()
    path = tmp_path / "lamp.studio-doc.json"
    save_document(doc, path)
    loaded = load_document(path)
    assert loaded == doc
    assert loaded.spans() == doc.spans() and loaded.text == doc.text
    gen = loaded.generations()[0]
    assert loaded.alternatives(gen) == doc.alternatives(gen)
    loaded.show_alternative(gen, 0)  # the loaded alternatives still swap
    assert "Shadows ran up the wall." in loaded.text
    data = json.loads(path.read_text("utf-8"))
    assert (data["format"], data["version"]) == ("studio-document", 1)


def test_a_saved_document_keeps_numbering_generations_after_the_loaded_ones(tmp_path):
    doc = full_document()
    save_document(doc, tmp_path / "d.studio-doc.json")
    loaded = load_document(tmp_path / "d.studio-doc.json")
    new = loaded.add_generation(0, "x")
    assert new not in doc.generations()


def test_a_document_with_bad_settings_is_not_written_over_a_good_file(tmp_path):
    path = tmp_path / "d.studio-doc.json"
    doc = full_document()
    save_document(doc, path)
    good = path.read_bytes()
    doc.sampler["temperature"] = 99
    with pytest.raises(DocumentError, match="temperature") as info:
        save_document(doc, path)
    assert one_sentence(info.value.message) and "cannot be saved" in info.value.message
    assert path.read_bytes() == good


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["type", "delete", "generate", "retry", "show"]),
        st.integers(0, 500),
        st.integers(0, 500),
        st.text(max_size=5),
    ),
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(EDITS)
def test_any_edited_document_saves_and_loads_back_equal(edits):
    """Whatever state editing reaches is one the loader accepts and rebuilds exactly."""
    doc = Document("Start. ")
    for op, a, b, text in edits:
        n = len(doc.text)
        lo, hi = sorted((a % (n + 1), b % (n + 1)))
        gens = doc.generations()
        if op == "type":
            doc.replace(lo, hi, text)
        elif op == "delete":
            doc.delete(lo, hi)
        elif op == "generate":
            doc.add_generation(lo, text)
        elif gens and op == "retry":
            doc.retry(gens[a % len(gens)], text)
        elif gens:
            gen = gens[a % len(gens)]
            doc.show_alternative(gen, b % len(doc.alternatives(gen)))
    loaded = document_from_bytes(storage.document_to_bytes(doc))
    assert loaded == doc
    for gen in doc.generations():
        assert loaded.alternatives(gen) == doc.alternatives(gen)


def valid() -> dict:
    return document_to_dict(full_document())


def changed(**fields):
    data = valid()
    data.update(fields)
    return json.dumps(data).encode()


MALFORMED = {
    "truncated": (json.dumps(valid()).encode()[:-40], "damaged or cut short"),
    "not json": (b"\x89PNG\r\n\x1a\n", "not UTF-8|damaged"),
    "a list": (b"[1, 2]", "does not hold a studio document"),
    "other format": (changed(format="something-else"), "not a studio document"),
    "newer version": (changed(version=2), "newer studio"),
    "odd version": (changed(version="1"), "version '1'"),
    "unknown field": (changed(chapters=[]), "unknown field `chapters`"),
    "missing text": (json.dumps({k: v for k, v in valid().items() if k != "text"}).encode(), "`text` is missing"),
    "text not a string": (changed(text=42), "`text` must be text"),
    "span past the end": (
        changed(text="short", spans=[[0, 3, "typed"], [3, 99, "generated"]]),
        "span 2 ends at 99, past the end",
    ),
    "gap in spans": (changed(text="short", spans=[[0, 2, "typed"], [3, 5, "typed"]]), "span 2 starts at 3"),
    "spans cover too little": (changed(text="short", spans=[[0, 2, "typed"]]), "cover 2 of the text's 5"),
    "span origin": (changed(text="ab", spans=[[0, 2, "alien"]]), "unknown origin"),
    "span offset type": (changed(text="ab", spans=[[0, "2", "typed"]]), "not whole numbers"),
    "span shape": (changed(text="ab", spans=[[0, 2]]), "triple"),
    "generation past the end": (
        changed(
            text="ab",
            spans=[[0, 2, "typed"]],
            generations=[{"id": 1, "start": 0, "end": 9, "shown": 0, "alternatives": [None]}],
        ),
        "generation 1 end",
    ),
    "shown sample not empty": (
        changed(
            text="ab",
            spans=[[0, 2, "typed"]],
            generations=[{"id": 1, "start": 0, "end": 2, "shown": 0, "alternatives": [[["ab", "generated"]]]}],
        ),
        "shown alternative",
    ),
    "note depth": (changed(authors_note_depth=-3), "authors_note_depth"),
    "memory type": (changed(memory=["a"]), "`memory` must be text"),
    "world info keys": (changed(world_info=[{"keys": [1], "content": "x"}]), "keys must all be text"),
    "world info enabled": (changed(world_info=[{"keys": [], "content": "x", "enabled": "yes"}]), "enabled"),
    "sampler value": (changed(sampler={"temperature": "hot"}), "sampler setting `temperature`"),
    "sampler name": (changed(sampler={"warmth": 1}), "`warmth` is not a sampler setting"),
    "NaN": (json.dumps(valid()).replace('"temperature": 0.7', '"temperature": NaN').encode(), "values"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "values no document has|damaged"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_give_one_sentence_naming_the_problem(tmp_path, name):
    data, expected = MALFORMED[name]
    path = tmp_path / "story.studio-doc.json"
    path.write_bytes(data)
    with pytest.raises(DocumentError, match=expected) as info:
        load_document(path)
    message = info.value.message
    assert message.startswith("story.studio-doc.json cannot be opened: ")
    assert one_sentence(message), message
    assert info.value.kind is ErrorKind.BAD_INPUT


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.studio-doc.json"
    with open(path, "wb") as f:  # sparse: 60 MB on paper, nothing on disk
        f.truncate(60 * 1024 * 1024)
    opened = []
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or pytest.fail("read a huge file"))
    with pytest.raises(DocumentError, match="60 MB, more than the 50 MB") as info:
        load_document(path)
    assert one_sentence(info.value.message) and not opened


def test_a_file_past_the_cap_in_memory_is_refused_too(monkeypatch):
    monkeypatch.setattr(storage, "MAX_BYTES", 100)
    with pytest.raises(DocumentError, match="more than"):
        document_from_bytes(json.dumps(valid()).encode())


def test_a_missing_file_or_a_folder_is_one_sentence(tmp_path):
    with pytest.raises(DocumentError, match="no such file"):
        load_document(tmp_path / "gone.studio-doc.json")
    (tmp_path / "dir.studio-doc.json").mkdir()
    with pytest.raises(DocumentError, match="folder"):
        load_document(tmp_path / "dir.studio-doc.json")


def test_a_minimal_hand_written_file_opens_with_defaults():
    doc = document_from_bytes(b'{"format": "studio-document", "version": 1, "text": "hi", "spans": [[0, 2, "typed"]]}')
    assert doc.text == "hi" and doc.memory == "" and doc.sampler == Document().sampler
    assert doc.spans() == [(0, 2, "typed")]


def test_neighbouring_spans_of_one_origin_are_merged_on_load():
    doc = document_from_bytes(
        json.dumps(
            {"format": "studio-document", "version": 1, "text": "abcd", "spans": [[0, 2, "typed"], [2, 4, "typed"]]}
        ).encode()
    )
    assert doc.spans() == [(0, 4, "typed")]


# --- plain text ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_plain_text_opens_as_typed_and_exports_text_only(tmp_path, suffix):
    path = tmp_path / f"draft{suffix}"
    path.write_bytes("\ufeff# Title\r\n\r\nIt was a dark night.\r\n".encode("utf-8"))
    doc = load_document(path)
    assert doc.text == "# Title\n\nIt was a dark night.\n"
    assert doc.spans() == [(0, len(doc.text), "typed")] and doc.name == "draft"
    assert import_text(path) == doc

    doc.add_generation(len(doc.text), "The wind rose.")
    doc.memory = "not exported"
    out = tmp_path / f"out{suffix}"
    export_text(doc, out)
    assert out.read_text("utf-8") == "# Title\n\nIt was a dark night.\nThe wind rose."


def test_a_lone_surrogate_in_the_text_still_saves_and_exports(tmp_path):
    doc = Document("bad \ud800 char é")
    save_document(doc, tmp_path / "s.studio-doc.json")
    assert load_document(tmp_path / "s.studio-doc.json") == doc
    export_text(doc, tmp_path / "s.txt")
    assert (tmp_path / "s.txt").read_text("utf-8") == "bad ? char é"


def test_binary_or_non_utf8_text_files_are_refused(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DocumentError, match="a.txt cannot be opened: it is not UTF-8 text."):
        load_document(tmp_path / "a.txt")
    (tmp_path / "b.md").write_bytes(b"abc\x00def")
    with pytest.raises(DocumentError, match="binary"):
        load_document(tmp_path / "b.md")
