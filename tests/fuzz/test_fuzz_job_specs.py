"""Job specs from anywhere, fuzzed: every field of every spec type with plausible, extreme and
wrong-typed values, built as a dataclass, read back from a dict and from (broken) JSON.

A valid spec validates and round-trips through JSON; an invalid one raises SpecError naming a
field in one sentence; nothing else escapes, whatever the input."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from fuzz.fuzzing import BIG_NUMBER, BREAK, BREAKAGES, HUGE_NUMBER, HUGE_TEXT, WILD, dumps, fuzz, one_sentence
from hypothesis import event, example, given
from hypothesis import strategies as st

from studio.core.errors import SpecError
from studio.core.jobs import (
    DEVICES,
    MORPH_METHODS,
    MORPH_SPACINGS,
    RUNTIMES,
    SCHEDULERS,
    SPEC_TYPES,
    spec_from_dict,
    spec_from_json,
)
from studio.core.story import StoryContext, WorldInfoEntry

ALL_FIELDS = {f.name for t in SPEC_TYPES.values() for f in dataclasses.fields(t)}
DROP = "<drop this key>"  # in `extra`: leave the key out of the dict (a required field missing)

_ints = st.integers(-3, 5000) | st.sampled_from(
    [
        0,
        1,
        2,
        7,
        8,
        64,
        100,
        256,
        257,
        512,
        1000,
        1001,
        4096,
        4097,
        10_000,
        10_001,
        100_000,
        100_001,
        1_000_000,
        2**32 - 2,
        2**32 - 1,
        2**32,
        2**64 - 1,
        2**64,
    ]
)
_floats = (
    st.floats(-1, 60, allow_nan=False)
    | st.integers(-1, 11)
    | st.sampled_from([0.0, 1e-9, 0.01, 0.5, 1.0, 1.75, 10.0, 10.5, 50.0, 50.5, 100.0])
)
_texts = st.text(max_size=20) | st.sampled_from(["", " ", "m", "a cat", "\n", "x" * 201, "x" * 2001, HUGE_TEXT])
_arrays = st.lists(_floats, max_size=5).map(lambda v: np.array(v, dtype=np.float64))
_matrices = (
    st.integers(0, 3)
    .flatmap(lambda n: st.lists(st.lists(_floats, min_size=n, max_size=n), max_size=4))
    .map(lambda rows: np.array(rows, dtype=np.float32))
)

_stories = st.builds(
    StoryContext,
    text=_texts | WILD,
    memory=_texts | WILD,
    authors_note=_texts | WILD,
    authors_note_depth=_ints | WILD,
    world_info=st.lists(
        st.builds(
            WorldInfoEntry,
            keys=st.lists(_texts, max_size=3) | WILD,
            content=_texts | WILD,
            enabled=st.booleans() | WILD,
        ),
        max_size=3,
    )
    | WILD,
)
# A story as JSON gives it: any of its keys (and others), each any value; world info as objects.
_story_dicts = st.dictionaries(
    st.sampled_from(["text", "memory", "authors_note", "authors_note_depth", "world_info", "chapter"]),
    WILD
    | st.lists(
        st.dictionaries(
            st.sampled_from(["keys", "content", "enabled", "other"]), WILD | st.lists(_texts, max_size=3), max_size=4
        ),
        max_size=3,
    ),
    max_size=5,
)

_CHOICES = {
    "runtime": RUNTIMES + ("gpu", "Torch"),
    "device": DEVICES + ("tpu", "CUDA", "cuda:0"),
    "scheduler": SCHEDULERS + ("", "Euler A", "euler", "LMS"),
    "spacing": MORPH_SPACINGS + ("linear",),
    "method": MORPH_METHODS + ("cubic",),
    "model": ("m", "fake-image", "", "  "),
}


def _plausible(name: str, type_name: str) -> st.SearchStrategy:
    """Values of the field's own type, around and across its limits."""
    if name in _CHOICES:
        return st.sampled_from(_CHOICES[name]) | _texts
    if name in ("width", "height"):
        return st.integers(0, 520).map(lambda v: v * 8) | _ints
    by_type = {
        "str": _texts,
        "int": _ints,
        "float": _floats,
        "bool": st.booleans(),
        "tuple[str, ...]": st.lists(_texts, max_size=4) | st.lists(_texts, max_size=4).map(tuple),
        "tuple[int, ...]": st.lists(_ints, max_size=4) | st.lists(_ints, max_size=4).map(np.array),
        "tuple[float, ...]": st.lists(_floats | st.just(math.nan), max_size=6) | _arrays,
        "tuple[tuple[float, ...], ...]": st.lists(st.lists(_floats, max_size=4), max_size=4)
        | _matrices
        | st.lists(_arrays, max_size=3)
        | st.lists(_floats.map(np.float64), max_size=3),
        "tuple[tuple[str, float], ...]": st.lists(
            st.tuples(_texts, _floats) | st.lists(_texts | _floats, max_size=3), max_size=3
        ),
        "Optional[StoryContext]": st.none() | _stories,
    }
    # A field of a type added later must get values here too, or it would go unfuzzed.
    assert type_name in by_type, f"no fuzz values for `{name}: {type_name}`"
    return by_type[type_name]


def _field_values(name: str, type_name: str) -> st.SearchStrategy:
    plausible = _plausible(name, type_name)
    return st.one_of(plausible, plausible, WILD)  # twice: most cases vary a field within its own type


# A valid spec of each kind, which the drawn values then change: most cases differ from a valid
# spec in a few fields, so the checks of each field are reached, not only the first one.
_VALID = {
    "latent-decode": {"latent": [0.5, -1.0]},
    "latent-batch": {"latents": [[0.0, 1.0]]},
    "morph": {"seeds": [1, 2]},
    "latent-encode": {"image": "a.png"},
}
_VALID = {kind: {"model": "m"} | _VALID.get(kind, {}) for kind in SPEC_TYPES}
assert all(SPEC_TYPES[kind](**values).validate() is None for kind, values in _VALID.items())

# Built once: making strategies inside a draw costs more than the code under test.
_KINDS = st.sampled_from(sorted(SPEC_TYPES))
_FIELD_VALUES = {
    kind: {f.name: _field_values(f.name, f.type) for f in dataclasses.fields(spec_type)}
    for kind, spec_type in SPEC_TYPES.items()
}
_FIELDS_TO_VARY = {
    kind: st.lists(st.sampled_from(sorted(fields)), max_size=5, unique=True) for kind, fields in _FIELD_VALUES.items()
}
_EXTRA = st.just({}) | st.dictionaries(
    st.sampled_from(["kind", "model", "info", "unknown", "x" * 300]) | st.text(max_size=8),
    st.sampled_from([DROP, *SPEC_TYPES]) | WILD,
    max_size=2,
)


@st.composite
def cases(draw):
    """(kind, field values for the dataclass, extra keys for the dict: unknown, a wrong kind, DROP)."""
    kind = draw(_KINDS)
    values = _VALID[kind] | {name: draw(_FIELD_VALUES[kind][name]) for name in draw(_FIELDS_TO_VARY[kind])}
    extra = draw(_EXTRA)
    if "story" in _FIELD_VALUES[kind] and draw(st.booleans()):
        extra = extra | {"story": draw(_story_dicts)}
    return kind, values, extra


def _plain(value):
    """A value as JSON would give it back: lists, plain numbers, objects."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, WorldInfoEntry):
        return {"keys": _plain(value.keys), "content": _plain(value.content), "enabled": _plain(value.enabled)}
    if isinstance(value, StoryContext):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _outcome(build, names: set[str]):
    """The valid spec `build` makes, or None when it raises SpecError naming one of `names`."""
    try:
        spec = build()
        spec.validate()
    except SpecError as error:
        # An unknown key is named as it is, or quoted and cut short when it is odd or huge.
        cut = error.field.rstrip("…")
        assert error.field in names or any(n.startswith(cut) or repr(n).startswith(cut) for n in names), error.field
        assert error.message.startswith(f"`{error.field}` "), error.message[:300]
        assert one_sentence(error.message), error.message[:300]
        return None
    assert spec_from_json(spec.to_json()) == spec, "a valid spec round-trips through JSON"
    return spec


def _keys(text: str) -> set[str]:
    """The keys of the JSON object in `text` (breaking a text can rename one)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return set()
    return set(data) if isinstance(data, dict) else set()


@pytest.mark.timeout(240)
@fuzz
@given(cases(), BREAK, st.integers(0, 2**20))
# Found by this test: numbers too large to print or to hold as a float escaped as ValueError / OverflowError.
@example(("image", {"model": "m", "seed": HUGE_NUMBER}, {}), "whole", 0)
@example(("image", {"model": "m", "guidance_scale": BIG_NUMBER}, {}), "whole", 0)
@example(("text", {"model": "m", "temperature": -BIG_NUMBER}, {}), "whole", 0)
@example(("latent-decode", {"model": "m", "latent": [1.0, BIG_NUMBER]}, {}), "whole", 0)
@example(("image", {"model": "m", "loras": [["a.safetensors", HUGE_NUMBER]]}, {}), "whole", 0)
@example(("image", {"model": "m"}, {}), "huge number", 0)
# Found by this test: a huge value was quoted whole in the message; a flat numpy vector as latents.
@example(("text", {"model": "m", "stop": [HUGE_TEXT]}, {}), "whole", 0)
@example(("image", {"model": "m"}, {"x" * 300: 1}), "whole", 0)
@example(("morph", {"model": "m", "latents": [np.float64(1.0), np.float64(2.0)]}, {}), "whole", 0)
# Found on a fresh clone: a shrunk huge number (not HUGE_NUMBER itself) broke the harness's own JSON writer.
@example(("morph", {"model": "m", "seeds": [1, 2], "prompts": [HUGE_NUMBER // 7 + 1]}, {}), "BOM", 0)
def test_any_spec_validates_or_names_the_wrong_field(case, breakage, at):
    kind, values, extra = case
    spec_type = SPEC_TYPES[kind]
    names = {f.name for f in dataclasses.fields(spec_type)}

    # 1. As a dataclass, built in code.
    direct = _outcome(lambda: spec_type(**values), names)
    event(f"{kind} built in code: {'valid' if direct else 'refused'}")

    # 2. As a dict, the way the gallery's `studio` chunk gives it back.
    data = {"kind": kind, **_plain(values)}
    for key, value in extra.items():
        if value == DROP:
            data.pop(key, None)
        else:
            data[key] = value
    # The dict may name another kind, or hold unknown keys: the error names one of those.
    anywhere = ALL_FIELDS | {"spec", "kind"} | set(map(str, data))
    from_dict = _outcome(lambda: spec_from_dict(data), anywhere)
    if not extra and not isinstance(values.get("story"), dict):  # a dict is a story only in JSON
        assert from_dict == direct, "the same values give the same verdict and the same spec"

    # 3. As JSON text, whole or broken.
    text = BREAKAGES[breakage](dumps(data), at)
    from_json = _outcome(lambda: spec_from_json(text), anywhere | _keys(text))
    event(f"JSON text: {'valid' if from_json else 'refused'}")
    if breakage == "whole" and "9" * 5000 not in text:
        assert from_json == from_dict
