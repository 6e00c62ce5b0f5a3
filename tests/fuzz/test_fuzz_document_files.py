"""Document files from anywhere, fuzzed: random bytes, broken JSON, and whole documents with any
field (spans, generations and their alternatives, world info, sampler settings) replaced by a
value of the wrong type, an extreme one or a huge one, or removed, or joined by unknown ones.

Opening one either gives a Document, which saves and opens again unchanged, or raises
DocumentError with one sentence naming the file; nothing else escapes, and no case hangs."""

from __future__ import annotations

import pytest
from fuzz.fuzzing import BIG_NUMBER, BREAK, BREAKAGES, HUGE_NUMBER, HUGE_TEXT, WILD, dumps, fuzz, one_sentence
from hypothesis import event, example, given
from hypothesis import strategies as st

from studio.core.errors import DocumentError
from studio.writing.document import ORIGINS, SAMPLER_FIELDS, Document
from studio.writing.storage import FORMAT, document_from_bytes, document_to_bytes

NAME = "story.studio-doc.json"
_origins = st.sampled_from(ORIGINS)
# Mostly short texts; now and then a long one (a megabyte is a valid document: a long novel).
_texts = st.one_of(*[st.text(max_size=30)] * 6, st.sampled_from(["", "x" * 5000, HUGE_TEXT]))
_pieces = st.lists(st.tuples(st.text(max_size=10), _origins).map(list), max_size=2)
_sampler_values = {
    "temperature": st.floats(0, 10),
    "top_k": st.integers(0, 1_000_000),
    "top_p": st.floats(0.01, 1),
    "min_p": st.floats(0, 1),
    "repetition_penalty": st.floats(0.01, 10),
    "repetition_range": st.integers(0, 1_000_000),
    "dry_multiplier": st.floats(0, 100),
    "dry_base": st.floats(1, 10),
    "dry_allowed_length": st.integers(1, 1000),
    "xtc_threshold": st.floats(0, 0.5),
    "xtc_probability": st.floats(0, 1),
    "max_new_tokens": st.integers(1, 100_000),
    "stop": st.lists(st.text(min_size=1, max_size=8), max_size=3),
    "banned": st.lists(st.text(min_size=1, max_size=8), max_size=3),
    "seed": st.none() | st.integers(0, 2**32 - 1),
}
assert set(_sampler_values) == set(SAMPLER_FIELDS), "every sampler setting gets values"
_world_info = st.builds(
    lambda keys, content, enabled: {"keys": keys, "content": content, "enabled": enabled},
    st.lists(st.text(max_size=10), max_size=2),
    st.text(max_size=20),
    st.booleans(),
)
_sampler_keys = st.lists(st.sampled_from(sorted(SAMPLER_FIELDS)), max_size=3, unique=True)


@st.composite
def documents(draw) -> dict:
    """A valid document as its file holds it (any optional field left out)."""
    text = draw(_texts)
    cuts = sorted({0, len(text), *draw(st.lists(st.integers(0, len(text)), max_size=3))})
    data = {
        "format": FORMAT,
        "version": 1,
        "text": text,
        "spans": [[a, b, draw(_origins)] for a, b in zip(cuts, cuts[1:])],
    }
    generations = []
    for gen_id in draw(st.lists(st.integers(1, 2**53), max_size=2, unique=True)):
        start = draw(st.integers(0, len(text)))
        alternatives = draw(st.lists(_pieces, min_size=1, max_size=2))
        shown = draw(st.integers(0, len(alternatives) - 1))
        alternatives[shown] = None
        generations.append(
            {
                "id": gen_id,
                "start": start,
                "end": draw(st.integers(start, len(text))),
                "shown": shown,
                "alternatives": alternatives,
            }
        )
    optional = {
        "name": st.text(max_size=20),
        "generations": st.just(generations),
        "memory": _texts,
        "authors_note": st.text(max_size=20),
        "authors_note_depth": st.integers(0, 100_000),
        "world_info": st.lists(_world_info, max_size=2),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        data[key] = draw(optional[key])
    if draw(st.booleans()):
        data["sampler"] = {key: draw(_sampler_values[key]) for key in draw(_sampler_keys)}
    return data


def _places(value, path=()):
    """Every place in a parsed document: each key or index, at every depth."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, path + (index,))


def _put(data, path, value):
    """`data` with the value at `path` replaced (DELETE: removed), copied where changed."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(data) if isinstance(data, dict) else list(data)
    if value is DELETE and not rest:
        del copy[head]
    else:
        copy[head] = _put(copy[head], rest, value) if rest else value
    return copy


DELETE = object()
# What replaces a field: any wrong or extreme value; a place removed; a huge text or number.
_replacements = WILD | st.sampled_from(
    [DELETE, HUGE_TEXT, HUGE_NUMBER, BIG_NUMBER, [[0, 1, "typed"]], [None], {"id": 1}, "generated", 2**53 + 1, -(2**63)]
)


@st.composite
def damaged(draw):
    """(a document's data with up to two places replaced or removed and maybe an unknown key, how
    many places were changed)."""
    data = draw(documents())
    changes = draw(_CHANGES)
    for _ in range(changes):
        places = list(_places(data))[1:]
        data = _put(data, places[draw(_INDEX) % len(places)], draw(_replacements))
    if draw(_INDEX) % 10 == 0:
        objects = [p for p in _places(data) if isinstance(_get(data, p), dict)]
        if objects:
            data = _put(data, objects[draw(_INDEX) % len(objects)] + (draw(_UNKNOWN_KEYS),), 1)
            changes += 1
    return data, changes


# Fixed strategies, drawn from inside `damaged` (a strategy made per draw costs more than the case).
_CHANGES = st.sampled_from([0, 0, 1, 2])
_INDEX = st.integers(0, 2**16)
_UNKNOWN_KEYS = st.sampled_from(["chapters", "", "x" * 300]) | st.text(max_size=5)


def _get(data, path):
    for key in path:
        data = data[key]
    return data


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate left in by a breakage is not UTF-8


@pytest.mark.timeout(240)
@fuzz
@given(damaged(), st.just("whole") | BREAK, st.integers(0, 2**24), st.one_of(*[st.none()] * 9, st.binary(max_size=200)))
# Found by the job spec fuzz, reached here through the sampler settings: a number too large for
# a float escaped as OverflowError; a huge value was quoted whole in the sentence.
@example(
    ({"format": FORMAT, "version": 1, "text": "", "spans": [], "sampler": {"temperature": BIG_NUMBER}}, 1),
    "whole",
    0,
    None,
)
@example(
    ({"format": FORMAT, "version": 1, "text": "", "spans": [], "sampler": {"stop": [HUGE_TEXT]}}, 1), "whole", 0, None
)
# Found by this test: a huge version, span offset or origin, or an odd key, was quoted whole.
@example(({"format": FORMAT, "version": BIG_NUMBER, "text": "", "spans": []}, 1), "whole", 0, None)
@example(({"format": FORMAT, "version": 1, "text": "ab", "spans": [[0, BIG_NUMBER, "typed"]]}, 1), "whole", 0, None)
@example(({"format": FORMAT, "version": 1, "text": "ab", "spans": [[0, 2, HUGE_TEXT]]}, 1), "whole", 0, None)
@example(({"format": FORMAT, "version": 1, "text": "", "spans": [], "sampler": {"a\nb": 1}}, 1), "whole", 0, None)
def test_any_file_opens_as_a_document_or_gives_one_sentence(document, breakage, at, noise):
    data, changes = document
    # One case in ten: bytes from anywhere; else the document's JSON, whole or broken.
    raw = noise if noise is not None else _encode(BREAKAGES[breakage](dumps(data), at))
    try:
        doc = document_from_bytes(raw, NAME)
    except DocumentError as error:
        assert error.message.startswith(f"{NAME} cannot be opened: "), error.message[:300]
        assert one_sentence(error.message), error.message[:300]
        event(f"refused: {error.message[len(NAME) + 19 :][:30]}")
        refused_valid = noise is None and not changes and breakage == "whole"
        assert not refused_valid, f"a valid document was refused: {error.message[:300]}"
        return
    event("opened")
    assert isinstance(doc, Document)
    if noise is None and breakage == "whole" and not changes:  # what was written is what opened
        assert doc.text == data["text"]
        assert "".join(doc.text[s:e] for s, e, _ in doc.spans()) == doc.text
    # Whatever opens saves, and opens again the same.
    assert document_from_bytes(document_to_bytes(doc)) == doc
