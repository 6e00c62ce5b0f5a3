"""The document's span bookkeeping and its generations with alternatives."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.core.errors import DocumentError, ErrorKind
from studio.writing.document import Document, default_sampler

T, G, E = "typed", "generated", "edited"


def origins(doc: Document) -> list[str]:
    """One origin per character, from spans()."""
    out = []
    for start, end, origin in doc.spans():
        out += [origin] * (end - start)
    return out


def check_tiling(doc: Document) -> None:
    spans = doc.spans()
    at = 0
    for start, end, origin in spans:
        assert start == at and end > start, spans
        at = end
    assert at == len(doc.text)
    assert all(a[2] != b[2] for a, b in zip(spans, spans[1:])), f"neighbours not merged: {spans}"


def story() -> tuple[Document, int]:
    doc = Document("She opened the door. ")
    gen = doc.add_generation(len(doc.text), "The hall was dark.")
    return doc, gen


# --- spans ---------------------------------------------------------------------------------------


def test_new_document_is_one_typed_span_and_empty_has_none():
    assert Document("abc").spans() == [(0, 3, T)]
    assert Document().spans() == [] and Document().text == ""


def test_typing_inside_generated_text_splits_it_and_marks_the_change_edited():
    doc, _ = story()
    doc.insert(25, "great ", "typed")  # "The |hall"
    assert doc.text == "She opened the door. The great hall was dark."
    assert doc.spans() == [(0, 21, T), (21, 25, G), (25, 31, E), (31, 45, G)]


def test_typing_at_the_edge_of_generated_text_is_the_writers_own():
    doc, _ = story()
    doc.insert(len(doc.text), " Then", "typed")
    doc.insert(21, ">", "typed")  # right before the generation, after typed text
    assert doc.spans() == [(0, 22, T), (22, 40, G), (40, 45, T)]


def test_typing_between_generated_and_edited_text_is_edited():
    doc, _ = story()
    doc.replace(25, 29, "room")  # hall -> room: edited
    doc.insert(29, "s")  # right after the edited word, still inside the model's sentence
    assert doc.text.endswith("The rooms was dark.")
    assert doc.spans() == [(0, 21, T), (21, 25, G), (25, 30, E), (30, 40, G)]


def test_replacing_generated_text_marks_it_edited_and_typed_stays_typed():
    doc, _ = story()
    doc.replace(0, 3, "He")
    assert doc.spans()[0] == (0, 20, T)
    doc.replace(24, 28, "cellar")  # "hall" -> "cellar"
    assert "The cellar was dark." in doc.text
    assert (24, 30, E) in doc.spans()


def test_deleting_keeps_the_origin_of_what_is_left_and_merges_neighbours():
    doc = Document("aaa")
    doc.insert(3, "bbb", "generated")
    doc.insert(6, "aaa", "typed")
    assert doc.spans() == [(0, 3, T), (3, 6, G), (6, 9, T)]
    doc.delete(2, 7)
    assert doc.text == "aaaa" and doc.spans() == [(0, 4, T)]


def test_explicit_origins_are_kept_and_unknown_ones_refused():
    doc = Document("abc")
    doc.insert(1, "X", "generated")
    assert doc.spans() == [(0, 1, T), (1, 2, G), (2, 4, T)]
    with pytest.raises(DocumentError, match="origin"):
        doc.insert(0, "x", "robot")


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.insert(4, "x"),
        lambda d: d.delete(2, 1),
        lambda d: d.delete(-1, 2),
        lambda d: d.replace(0, 9, "x"),
        lambda d: d.insert(True, "x"),
        lambda d: d.insert(0, b"x"),
    ],
)
def test_edits_outside_the_text_are_refused_in_one_sentence(call):
    doc = Document("abc")
    with pytest.raises(DocumentError) as info:
        call(doc)
    assert info.value.kind is ErrorKind.BAD_INPUT
    assert info.value.message.count(". ") == 0 and info.value.message.endswith(".")
    assert doc.text == "abc" and doc.spans() == [(0, 3, T)]


# --- generations and alternatives ------------------------------------------------------------------


def test_retry_replaces_the_generation_and_keeps_earlier_samples():
    doc, gen = story()
    assert doc.retry(gen, "A cold wind blew.") == 1
    assert doc.text == "She opened the door. A cold wind blew."
    assert doc.retry(gen, "Nobody was there.") == 2
    assert doc.alternatives(gen) == ["The hall was dark.", "A cold wind blew.", "Nobody was there."]
    assert doc.shown_alternative(gen) == 2
    assert doc.show_alternative(gen, 0) == (21, 39)
    assert doc.text == "She opened the door. The hall was dark."
    assert doc.spans() == [(0, 21, T), (21, 39, G)]
    doc.show_alternative(gen, 1)
    assert doc.text == "She opened the door. A cold wind blew."
    with pytest.raises(DocumentError, match="no alternative 3"):
        doc.show_alternative(gen, 3)


def test_streaming_grows_a_generation_and_retry_can_stream_too():
    doc = Document("Once upon a time")
    gen = doc.add_generation(len(doc.text))
    for token in (",", " a", " fox"):
        doc.append_generation(gen, token)
    assert doc.text == "Once upon a time, a fox" and doc.generation_range(gen) == (16, 23)
    doc.retry(gen)
    assert doc.text == "Once upon a time" and doc.generation_range(gen) == (16, 16)
    doc.append_generation(gen, " there was")
    assert doc.alternatives(gen) == [", a fox", " there was"]
    assert doc.spans() == [(0, 16, T), (16, 26, G)]


def test_edits_before_a_generation_move_it_and_edits_after_leave_it():
    doc, gen = story()
    doc.insert(0, "Then ")
    doc.insert(len(doc.text), " The end.")
    assert doc.generation_range(gen) == (26, 44)
    doc.delete(0, 5)
    assert doc.generation_range(gen) == (21, 39)
    doc.retry(gen, "Light.")
    assert doc.text == "She opened the door. Light. The end."


def test_an_edit_inside_a_sample_stays_with_that_sample():
    doc, gen = story()
    doc.replace(25, 29, "room")  # the writer fixes the first sample
    doc.retry(gen, "Nothing.")
    doc.show_alternative(gen, 0)
    assert doc.text == "She opened the door. The room was dark."
    assert doc.spans() == [(0, 21, T), (21, 25, G), (25, 29, E), (29, 39, G)]
    assert doc.alternatives(gen) == ["The room was dark.", "Nothing."]


def test_an_edit_across_a_generation_edge_or_deleting_it_drops_its_alternatives():
    doc, gen = story()
    doc.retry(gen, "Light.")
    doc.delete(19, 23)  # from the typed text into the generation
    assert gen not in doc.generations()
    with pytest.raises(DocumentError, match="no generation"):
        doc.alternatives(gen)
    assert doc.spans() == [(0, 19, T), (19, 23, G)], "the text left keeps its origins"

    doc, gen = story()
    start, end = doc.generation_range(gen)
    doc.delete(start, end)
    assert doc.generations() == []


def test_generation_at_finds_the_one_under_or_just_before_the_cursor():
    doc, gen = story()
    assert doc.generation_at(len(doc.text)) == gen
    assert doc.generation_at(25) == gen
    assert doc.generation_at(3) is None
    doc.forget_generation(gen)
    assert doc.generation_at(25) is None and doc.spans()[-1][2] == G


def test_a_generation_inside_another_is_dropped_when_the_outer_one_swaps():
    doc, outer = story()
    inner = doc.add_generation(25, "great ")
    assert doc.generation_range(outer) == (21, 45)
    doc.retry(outer, "Gone.")
    assert doc.generations() == [outer]
    doc.show_alternative(outer, 0)
    assert doc.text == "She opened the door. The great hall was dark."
    assert doc.generation_at(27) == outer and inner not in doc.generations()


def test_a_checkpoint_makes_a_whole_generation_one_undo_step():
    doc, gen = story()
    doc.retry(gen, "Light")
    before = doc.checkpoint()
    for token in (" spilled", " in."):
        doc.append_generation(gen, token)
    doc.insert(0, "So ")
    after = doc.checkpoint()
    doc.restore(before)
    assert doc.text == "She opened the door. Light" and doc.alternatives(gen) == ["The hall was dark.", "Light"]
    doc.restore(after)  # redo
    assert doc.text == "So She opened the door. Light spilled in."
    assert doc.spans() == [(0, 24, T), (24, 41, G)] and doc.generation_range(gen) == (24, 41)
    doc.show_alternative(gen, 0)
    doc.restore(after)  # a checkpoint is not changed by what happens after it
    assert doc.alternatives(gen) == ["The hall was dark.", "Light spilled in."]
    new = doc.add_generation(0, "x")
    doc.restore(before)
    assert doc.add_generation(0, "y") != new, "ids are never reused"
    with pytest.raises(DocumentError):
        doc.restore("not a checkpoint")


def test_sampler_defaults_follow_textjob_and_make_a_valid_job():
    doc = Document("x")
    assert doc.sampler == default_sampler() and doc.sampler["seed"] is None
    job = doc.text_job("prose", "x")
    job.validate()
    assert job.temperature == doc.sampler["temperature"] and 0 <= job.seed
    doc.sampler.update(seed=42, stop=["\n\n"], temperature=0.5)
    job = doc.text_job("prose", "x")
    assert (job.seed, job.stop, job.temperature) == (42, ("\n\n",), 0.5)
    doc.sampler["top_p"] = 0
    with pytest.raises(DocumentError, match="top_p"):
        doc.text_job("prose", "x")


# --- a property test over random edit sequences --------------------------------------------------

ORIGIN = st.sampled_from([T, G, E])
TEXT = st.text(alphabet="ab .\n", min_size=0, max_size=6)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace", "generate", "append", "retry", "show", "forget"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
        TEXT,
        ORIGIN,
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(TEXT, OPS)
def test_spans_tile_the_text_and_untouched_text_keeps_its_origin(initial, ops):
    doc = Document(initial)
    text, before = doc.text, origins(doc)
    for op, a, b, new, origin in ops:
        n = len(doc.text)
        lo, hi = sorted((a % (n + 1), b % (n + 1)))
        gens = doc.generations()
        gen = gens[a % len(gens)] if gens else None
        # The range this operation may change; everything outside it must stay as it was.
        if op == "insert":
            doc.insert(lo, new, origin)
            changed, added = (lo, lo), len(new)
        elif op == "delete":
            doc.delete(lo, hi)
            changed, added = (lo, hi), 0
        elif op == "replace":
            doc.replace(lo, hi, new, origin)
            changed, added = (lo, hi), len(new)
        elif op == "generate":
            doc.add_generation(lo, new)
            changed, added = (lo, lo), len(new)
        elif gen is None:
            continue
        elif op == "append":
            end = doc.generation_range(gen)[1]
            doc.append_generation(gen, new)
            changed, added = (end, end), len(new)
        elif op == "retry":
            changed = doc.generation_range(gen)
            doc.retry(gen, new)
            added = len(new)
        elif op == "show":
            changed = doc.generation_range(gen)
            k = b % len(doc.alternatives(gen))
            added = len(doc.alternatives(gen)[k])
            doc.show_alternative(gen, k)
        else:
            doc.forget_generation(gen)
            changed, added = (0, 0), 0

        check_tiling(doc)
        s, e = changed
        after = origins(doc)
        assert doc.text[:s] == text[:s] and after[:s] == before[:s]
        assert doc.text[s + added :] == text[e:] and after[s + added :] == before[e:]
        if op in ("insert", "replace"):
            expected = {origin, E} if origin == T else {origin}
            assert set(after[s : s + added]) <= expected
        if op in ("generate", "append", "retry"):
            assert set(after[s : s + added]) <= {G}
        for g in doc.generations():  # every tracked generation still fits and reads as shown
            gs, ge = doc.generation_range(g)
            assert 0 <= gs <= ge <= len(doc.text)
            assert doc.alternatives(g)[doc.shown_alternative(g)] == doc.text[gs:ge]
        text, before = doc.text, after
