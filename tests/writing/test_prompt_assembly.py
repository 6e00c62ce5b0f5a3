"""Prompt assembly with fake tokenizers (a word count and a UTF-8 byte count): no model needed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.core.errors import DocumentError
from studio.writing.document import Document, WorldInfoEntry
from studio.writing.prompt import (
    AUTHORS_NOTE,
    MEMORY,
    STORY,
    WORLD_INFO,
    assemble,
    is_sentence_start,
    note_position,
    triggered_world_info,
)


def words(text: str) -> int:
    return len(text.split())


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


TOKENIZERS = [words, utf8_bytes]


def novel(paragraphs: int = 12, sentences: int = 5) -> str:
    """Numbered sentences so a test can tell which ones survived trimming."""
    out = []
    for p in range(paragraphs):
        out.append(" ".join(f"Sentence {p}.{s} tells of the old café and the sea." for s in range(sentences)))
    return "\n".join(out)


def check_parts(result) -> None:
    """Parts tile the prompt, and story parts are exactly the document's text at their source."""
    at = 0
    for part in result.parts:
        assert part.start == at and part.end >= part.start
        at = part.end
    assert at == len(result.prompt)


def roles(result) -> list[str]:
    return [p.role for p in result.parts]


# --- what goes in ----------------------------------------------------------------------------------


def test_everything_fits_memory_then_world_info_then_the_story_before_the_cursor():
    doc = Document("The knight rode north. Later the dragon slept. AFTER THE CURSOR")
    doc.memory = "A tale of Sir Bors."
    doc.world_info = [WorldInfoEntry(["dragon"], "Dragons hoard books.")]
    cursor = doc.text.index(" AFTER")
    result = assemble(doc, cursor, words, context_length=1000, max_new_tokens=100)
    assert result.prompt == (
        "A tale of Sir Bors.\nDragons hoard books.\nThe knight rode north. Later the dragon slept."
    )
    assert roles(result) == [MEMORY, WORLD_INFO, STORY]
    assert result.parts[1].entry == 0 and result.parts[2].source == (0, cursor)
    assert result.trimmed_chars == 0 and result.story_start == 0
    assert result.tokens == words(result.prompt) and result.budget == 900
    assert "AFTER" not in result.prompt
    check_parts(result)


@pytest.mark.parametrize("count", TOKENIZERS)
@pytest.mark.parametrize("fraction", [0.1, 0.33, 0.5, 0.9])
def test_memory_and_world_info_are_kept_and_the_oldest_story_goes_first(count, fraction):
    doc = Document(novel())
    doc.memory = "Memory: the sea is cold."
    doc.world_info = [WorldInfoEntry(["café"], "The café is run by Ines.")]
    full = count(doc.memory + "\n" + "The café is run by Ines.\n" + doc.text)
    budget = int(full * fraction)
    result = assemble(doc, len(doc.text), count, context_length=budget + 64, max_new_tokens=64)
    assert result.tokens == count(result.prompt) <= budget
    assert result.prompt.startswith("Memory: the sea is cold.\nThe café is run by Ines.\n")
    assert roles(result) == [MEMORY, WORLD_INFO, STORY]
    assert result.trimmed_chars > 0
    assert result.prompt.endswith(doc.text[result.story_start :]), "the newest text is kept whole"
    check_parts(result)


@pytest.mark.parametrize("count", TOKENIZERS)
def test_trimming_cuts_at_a_paragraph_start_when_one_is_near(count):
    doc = Document(novel(paragraphs=30, sentences=2))  # paragraphs ~110 characters apart
    result = assemble(doc, len(doc.text), count, context_length=300, max_new_tokens=100)
    start = result.story_start
    assert doc.text[start - 1] == "\n" and doc.text[start:].startswith("Sentence ")
    assert result.tokens <= 200


@pytest.mark.parametrize("count", TOKENIZERS)
def test_trimming_cuts_at_a_sentence_start_when_no_paragraph_is_near(count):
    doc = Document(novel(paragraphs=1, sentences=40))
    result = assemble(doc, len(doc.text), count, context_length=250, max_new_tokens=50)
    start = result.story_start
    assert doc.text[start - 2 : start] == ". " and doc.text[start:].startswith("Sentence 0.")
    assert result.prompt == doc.text[start:]


@pytest.mark.parametrize("count", TOKENIZERS)
@pytest.mark.parametrize("budget", [12, 50, 123, 400, 599])
def test_the_token_budget_is_respected_exactly(count, budget):
    """With no boundary search (near=0) the kept story is the most that fits: one more character
    of it would go over the budget."""
    doc = Document(novel())
    doc.memory = "Memory."
    result = assemble(doc, len(doc.text), count, context_length=budget + 10, max_new_tokens=10, near=0)
    assert result.tokens == count(result.prompt) <= budget
    assert result.story_start > 0
    one_more = "Memory.\n" + doc.text[result.story_start - 1 :]
    assert count(one_more) > budget


def test_when_memory_world_info_and_note_alone_do_not_fit_it_says_so():
    doc = Document("Some story.")
    doc.memory = "word " * 50
    with pytest.raises(DocumentError, match="take 50 tokens, more than the 40") as info:
        assemble(doc, len(doc.text), words, context_length=50, max_new_tokens=10)
    assert "\n" not in info.value.message
    with pytest.raises(DocumentError, match="less than the model's context length"):
        assemble(doc, 0, words, context_length=64, max_new_tokens=64)
    with pytest.raises(DocumentError, match="cursor"):
        assemble(doc, 99, words, context_length=64, max_new_tokens=8)


# --- author's note ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 5, 12, 30, 55])
def test_the_authors_note_goes_depth_tokens_back_at_a_sentence_start(depth):
    story = " ".join(f"Sentence number {i} is here." for i in range(20))  # 5 words each
    at = note_position(story, depth, words)
    assert is_sentence_start(story, at) and story[at:].startswith("Sentence")
    assert words(story[at:]) >= depth, "at least `depth` tokens follow the note"
    # ...and it is the nearest such start: the next sentence start has fewer than depth after it.
    later = story.find("Sentence", at + 1)
    assert later == -1 or words(story[later:]) < depth


def test_the_authors_note_in_the_prompt_sits_on_its_own_line_between_sentences():
    doc = Document("The door creaked. The rain kept falling on the roof. She waited")
    doc.authors_note = "[Tone: dread]"
    doc.authors_note_depth = 4
    result = assemble(doc, len(doc.text), words, context_length=500, max_new_tokens=50)
    # 4 words back is inside "...falling on the roof. She waited": moved back to "The rain".
    assert result.prompt == "The door creaked. \n[Tone: dread]\nThe rain kept falling on the roof. She waited"
    assert roles(result) == [STORY, AUTHORS_NOTE, STORY]
    assert result.authors_note_at == doc.text.index("The rain")
    check_parts(result)


def test_a_note_deeper_than_the_story_goes_at_its_start_and_depth_zero_at_the_end():
    doc = Document("Short. Story.")
    doc.memory = "Mem"
    doc.authors_note = "[Note]\n"
    doc.authors_note_depth = 500
    result = assemble(doc, len(doc.text), words, context_length=500, max_new_tokens=50)
    assert result.prompt == "Mem\n[Note]\nShort. Story."
    doc.authors_note_depth = 0
    result = assemble(doc, len(doc.text), words, context_length=500, max_new_tokens=50)
    assert result.prompt == "Mem\nShort. Story.\n[Note]\n"


def test_when_trimming_passes_the_notes_place_it_goes_where_the_kept_story_begins():
    doc = Document(novel())
    doc.authors_note = "[Keep it short]"
    doc.authors_note_depth = 10_000
    result = assemble(doc, len(doc.text), words, context_length=80, max_new_tokens=20)
    assert roles(result) == [AUTHORS_NOTE, STORY]
    assert result.authors_note_at == result.story_start > 0
    assert result.prompt.startswith("[Keep it short]\nSentence ")
    assert result.tokens <= 60


def test_sentence_starts_are_not_found_inside_numbers_or_words():
    text = 'Pi is 3.14 here. "Done!" He left.\nNext'
    starts = [i for i in range(len(text) + 1) if is_sentence_start(text, i)]
    assert [text[i : i + 4] for i in starts] == ["Pi i", '"Don', "He l", "Next"]


# --- world info ------------------------------------------------------------------------------------


def test_world_info_is_triggered_only_by_whole_word_keys_in_recent_text():
    doc = Document()
    doc.world_info = [
        WorldInfoEntry(["Rose"], "Rose is the gardener."),
        WorldInfoEntry(["sword", "blade"], "The blade is cursed."),
        WorldInfoEntry(["moon"], "The moon is red.", enabled=False),
        WorldInfoEntry(["tower"], "The tower fell long ago."),
        WorldInfoEntry(["new york"], "New York is flooded."),
    ]
    early = "The tower stood. "
    story = early + "x " * 1500 + "A primrose, a sword-BLADE. Under the moon, new  york... NEW YORK!"
    assert triggered_world_info(doc, story, scan_chars=2000) == [1, 4]
    assert triggered_world_info(doc, "ROSE.", scan_chars=2000) == [0]
    assert triggered_world_info(doc, story, scan_chars=len(story)) == [1, 3, 4]
    # a key cut by the window's edge: only "rose" of "primrose" is inside the last 4 characters
    assert triggered_world_info(doc, "primrose", scan_chars=4) == []


def test_triggered_world_info_goes_after_memory_in_entry_order():
    doc = Document("The blade sang. Rose smiled.")
    doc.memory = "Memory"
    doc.world_info = [
        WorldInfoEntry(["rose"], "Rose is the gardener."),
        WorldInfoEntry(["blade"], "The blade is cursed."),
    ]
    result = assemble(doc, len(doc.text), utf8_bytes, context_length=4096, max_new_tokens=256)
    assert result.prompt.startswith("Memory\nRose is the gardener.\nThe blade is cursed.\nThe blade sang.")
    assert [p.entry for p in result.parts if p.role == WORLD_INFO] == [0, 1]
    assert result.world_info == (0, 1)


# --- whatever the document, the budget holds ----------------------------------------------------------

SENTENCE = st.sampled_from(["The sea rose. ", "Ines laughed!\n", "é ✓ ", "word ", "\n\n", "Why? ", "x"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(SENTENCE, max_size=60),
    st.integers(0, 10_000),
    st.integers(1, 120),
    st.sampled_from(TOKENIZERS),
    st.booleans(),
    st.integers(0, 40),
)
def test_any_document_fits_its_budget_and_parts_tile_the_prompt(pieces, cursor, budget, count, note, depth):
    doc = Document("".join(pieces))
    doc.memory = "Mem."
    doc.world_info = [WorldInfoEntry(["sea"], "Sea lore.")]
    if note:
        doc.authors_note, doc.authors_note_depth = "[N]", depth
    cursor %= len(doc.text) + 1
    try:
        result = assemble(doc, cursor, count, context_length=budget + 5, max_new_tokens=5)
    except DocumentError as error:
        assert "more than the" in error.message  # only when the fixed parts alone do not fit
        return
    assert result.tokens == count(result.prompt) <= budget
    check_parts(result)
    story = [p for p in result.parts if p.role == STORY]
    assert "".join(result.text_of(p) for p in story) == doc.text[result.story_start : cursor]
    for p in story:
        assert result.text_of(p) == doc.text[p.source[0] : p.source[1]]
