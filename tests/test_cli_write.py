"""`studio write` with documents: --file (native, .txt), --memory, --note, the document's own
sampler settings, sampler flags and --alternatives, on the embedded prose model."""

import json

import pytest

from studio.cli import main
from studio.models import paths
from studio.writing import Document, load_document, save_document


@pytest.fixture(autouse=True)
def embedded_models(monkeypatch):
    monkeypatch.setenv("STUDIO_EMBEDDED_MODELS_DIR", str(paths.EMBEDDED_MODELS_DIR))  # the shipped prose


def write(capsys, *args):
    code = main(["write", "--model", "prose", "--no-progress", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_text_file_is_continued_with_memory_and_a_note_and_saved(tmp_path, capsys):
    story = tmp_path / "story.txt"
    story.write_text("It was a dark and stormy night. The rain fell.\n\nShe opened the door")
    code, out, err = write(
        capsys,
        "--file",
        str(story),
        "--memory",
        "Elizabeth is a detective in Bath.",
        "--note",
        "Style: terse.",
        "--max-tokens",
        "12",
        "--seed",
        "3",
        "--echo",
    )
    assert code == 0, err
    assert out.startswith("Elizabeth is a detective in Bath.\n")  # memory first, as the model saw it
    assert "Style: terse." in out
    continuation = out.rstrip("\n").split("She opened the door", 1)[1]
    assert continuation.strip()
    assert story.read_text() == "It was a dark and stormy night. The rain fell.\n\nShe opened the door" + continuation


def test_alternatives_are_kept_in_a_native_document_and_each_is_its_own_seed(tmp_path, capsys):
    doc_path = tmp_path / "novel.studio-doc.json"
    code, out, err = write(
        capsys, "--file", str(doc_path), "Mr. Darcy said", "--max-tokens", "8", "--seed", "5", "--alternatives", "2"
    )
    assert code == 0, err
    assert "--- alternative 1 (seed 5) ---" in out and "--- alternative 2 (seed 6) ---" in out
    doc = load_document(doc_path)
    (generation,) = doc.generations()
    first, second = doc.alternatives(generation)
    assert doc.text == "Mr. Darcy said" + first
    assert ("typed" in {o for *_, o in doc.spans()}) and ("generated" in {o for *_, o in doc.spans()})
    code, alone, _ = write(capsys, "Mr. Darcy said", "--max-tokens", "8", "--seed", "6")
    assert alone.rstrip("\n") == second


def test_a_document_keeps_its_own_sampler_settings(tmp_path, capsys):
    doc = Document("The river ran under a lantern moon, and")
    doc.sampler.update(temperature=0.0, max_new_tokens=6)
    path = tmp_path / "river.studio-doc.json"
    save_document(doc, path)
    texts = []
    for seed in ("1", "2"):  # greedy, as the document says: the seed cannot matter
        save_document(doc, path)
        code, out, err = write(capsys, "--file", str(path), "--seed", seed)
        assert code == 0, err
        texts.append(out)
    assert texts[0] == texts[1] and texts[0].strip()
    saved = json.loads(path.read_text())
    assert saved["sampler"]["temperature"] == 0.0


def test_a_stop_sequence_and_a_ban_from_the_command_line(capsys):
    code, free, _ = write(
        capsys, "It was a dark and stormy night", "--max-tokens", "40", "--seed", "2", "--temperature", "0"
    )
    assert code == 0 and "," in free
    code, stopped, _ = write(
        capsys,
        "It was a dark and stormy night",
        "--max-tokens",
        "40",
        "--seed",
        "2",
        "--temperature",
        "0",
        "--stop",
        ",",
    )
    assert code == 0 and "," not in stopped and free.startswith(stopped.rstrip("\n"))
    word = free.split()[0]
    code, banned, _ = write(
        capsys,
        "It was a dark and stormy night",
        "--max-tokens",
        "40",
        "--seed",
        "2",
        "--temperature",
        "0",
        "--ban",
        word,
    )
    assert code == 0 and word.lower() not in banned.lower()


def test_no_prompt_and_no_document_is_one_sentence(capsys):
    code, _, err = write(capsys)
    assert code == 2 and err.strip() == "studio: give a prompt, or --file DOC to continue a document."


def test_instruct_mode_on_a_model_without_a_chat_template_is_one_sentence(capsys):
    code, out, err = write(capsys, "Hello", "--instruct", "--max-tokens", "4")
    assert code == 2 and "`instruct`" in err and "chat template" in err
    assert len(err.strip().splitlines()) == 1
