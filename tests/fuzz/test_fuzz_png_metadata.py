"""Settings read from PNG metadata, fuzzed: the chunks AUTOMATIC1111 / Forge / Fooocus, ComfyUI,
InvokeAI and the studio itself write, filled with random bytes, huge text, broken JSON and JSON of
the wrong types, as tEXt, zTXt and iTXt (and bombs), in whole, damaged and cut-short files.

read_settings either returns settings whose every field is within its range, or raises
MetadataError with one sentence; nothing else escapes, and no case hangs."""

from __future__ import annotations

import json
import re
import struct
import zlib
from unittest import mock

import numpy as np
import pytest
from core.test_png import _zeros_bomb, chunk, png
from fuzz.fuzzing import BIG_NUMBER, BREAK, BREAKAGES, HUGE_TEXT, JSON_VALUES, WILD, dumps, fuzz, one_sentence
from hypothesis import event, example, given
from hypothesis import strategies as st

from studio.core import png as png_module
from studio.core.errors import MetadataError, SpecError
from studio.core.image_metadata import save_image
from studio.core.infotext import MAX_PROMPT, describe, read_settings
from studio.core.jobs import MAX_IMAGE_SEED, MAX_LORAS, SCHEDULERS, ImageJob
from studio.core.png import PNG_SIGNATURE

SOURCES = {
    "Studio",
    "AUTOMATIC1111",
    "Forge",
    "Fooocus",
    "RuinedFooocus",
    "diffusers app",
    "ComfyUI",
    "InvokeAI",
    "SwarmUI",
    "NovelAI",
    "Civitai",
}


def _chunk(kind: bytes, data: bytes, crc: bool = True) -> bytes:
    """A chunk, with its checksum right or wrong."""
    return chunk(kind, data, None if crc else 0)


_AFTER_IHDR = len(PNG_SIGNATURE) + 25  # where the chunks after IHDR start (4 + 4 + 13 + 4 bytes of IHDR)


def _text_chunk(key: bytes, value: "str | bytes", kind: str, crc: bool = True) -> bytes:
    """One text chunk; `value` as text is encoded as its kind needs, as bytes is put in raw."""
    if kind == "tEXt":
        raw = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
        return _chunk(b"tEXt", key + b"\0" + raw, crc)
    if kind == "zTXt":
        raw = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
        return _chunk(b"zTXt", key + b"\0\0" + zlib.compress(raw, 1), crc)
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    compressed = kind == "iTXt packed"
    body = zlib.compress(raw, 1) if compressed else raw
    return _chunk(b"iTXt", key + b"\0" + bytes([compressed, 0]) + b"en\0Key\0" + body, crc)


_BOMB = _zeros_bomb(100)  # 100 MB of zeros in about 100 KB
_HUGE_PACKED = zlib.compress(HUGE_TEXT.encode(), 1)
# Whole chunks built once (a megabyte is not packed or checksummed per case): huge text beyond the
# 1 MB cap, plain and packed, and bombs, under each name a settings reader looks at.
_BIG_CHUNKS = st.sampled_from(
    [
        chunk
        for key in (b"parameters", b"prompt", b"studio", b"workflow", b"invokeai_metadata")
        for chunk in (
            _chunk(b"tEXt", key + b"\0" + HUGE_TEXT.encode()),
            _chunk(b"iTXt", key + b"\0\0\0\0\0" + HUGE_TEXT.encode()),
            _chunk(b"zTXt", key + b"\0\0" + _HUGE_PACKED),
            _chunk(b"iTXt", key + b"\0\1\0\0\0" + _HUGE_PACKED),
            _chunk(b"zTXt", key + b"\0\0" + _BOMB),
            _chunk(b"iTXt", key + b"\0\1\0en\0\0" + _BOMB),
        )
    ]
)

# --- what each tool writes, with any value in any field --------------------------------------------

_A1111_KEYS = [
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Seed",
    "Size",
    "Model hash",
    "Model",
    "Denoising strength",
    "Lora hashes",
    "Version",
    "Hires upscale",
    "Clip skip",
]
_param_values = (
    st.text(max_size=12)
    | st.integers().map(str)
    | st.floats().map(str)
    | st.sampled_from(
        [
            "512x768",
            "0x0",
            "99999x99999",
            '"quoted, value"',
            '"\\"',
            '"',
            "Euler a",
            "DPM++ 2M",
            "Karras",
            "Automatic",
            "euler",
            "f2.0.1v1.10.1",
            "Fooocus v2",
            "<lora:x:1>",
            "9" * 5000,
            "1e999",
            "nan",
            "-inf",
            " 7 ",
            "+3",
            "0x10",
        ]
    )
)
_a1111 = st.builds(
    lambda prompt, negative, pairs, sep: (
        f"{prompt}\nNegative prompt: {negative}\n" + sep.join(f"{k}: {v}" for k, v in pairs)
    ),
    st.text(max_size=30)
    | st.sampled_from(["<lora:a:0.5> cat", "<lora:b:x>", "<lyco:c>", "<lora:" + "d" * 300 + ":1>"]),
    st.text(max_size=20),
    st.lists(st.tuples(st.sampled_from(_A1111_KEYS + ["", "x y", "Hires steps", "Seed-1"]), _param_values), max_size=6),
    st.sampled_from([", ", ",", " ,", "\n"]),
)
# Hostile texts of middling size, which the reader does parse (huge ones are over the cap; that
# parsing stays linear on long ones is test_infotext's test_parse_is_linear_on_hostile_lines).
_hostile = st.sampled_from(
    [
        "a: b, " * 1_000,
        "," * 6_000,
        "<lora:a:1>" * 600,
        'k: "' * 1_500,
        "a" * 60_000,
        "[" * 10_000,
        "{" * 10_000,
        '{"a":' * 4_000,
        "x\n" * 4_000,
        "Negative prompt: " * 400,
    ]
)


def _optional(keys: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    """JSON objects with any of `keys`, each holding any of `values`."""
    return st.fixed_dictionaries({}, optional={k: values for k in keys})


_fooocus = _optional(
    [
        "prompt",
        "negative_prompt",
        "steps",
        "guidance_scale",
        "seed",
        "resolution",
        "sampler",
        "scheduler",
        "base_model",
        "base_model_hash",
        "loras",
    ],
    WILD | st.lists(st.lists(WILD, max_size=3), max_size=3) | st.sampled_from(["(1024, 1024)", "euler"]),
)
_invoke = _optional(
    [
        "positive_prompt",
        "negative_prompt",
        "steps",
        "cfg_scale",
        "seed",
        "width",
        "height",
        "scheduler",
        "strength",
        "model",
        "loras",
    ],
    WILD
    | _optional(["name", "model_name", "hash"], WILD)
    | st.lists(_optional(["model", "lora", "weight"], WILD | _optional(["name", "model_name"], WILD)), max_size=3)
    | st.sampled_from(["dpmpp_2m_k", "euler_a"]),
)

# ComfyUI API graphs: node ids that are and are not numbers, nodes of every kind and of no kind,
# links to missing nodes and loops, inputs of the wrong type.
_node_ids = st.sampled_from(["1", "2", "3", "4", "01", "²", "١", "-1", "1.5", "", " 1", "9" * 12, "x"])
_links = st.tuples(_node_ids | st.integers(-1, 5), st.integers(-1, 2)).map(list)
_inputs = st.dictionaries(
    st.sampled_from(
        [
            "seed",
            "noise_seed",
            "steps",
            "cfg",
            "positive",
            "negative",
            "conditioning",
            "text",
            "text_g",
            "latent_image",
            "model",
            "width",
            "height",
            "denoise",
            "guider",
            "sigmas",
            "noise",
            "sampler",
            "ckpt_name",
            "unet_name",
            "lora_name",
            "strength_model",
            "sampler_name",
            "scheduler",
            "value",
        ]
    ),
    _links | WILD,
    max_size=5,
)
_SAMPLERS = ["KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"]
_node_kinds = st.sampled_from(
    _SAMPLERS * 3
    + [  # a graph needs a sampler to be read any further
        "CLIPTextEncode",
        "CLIPTextEncodeSDXL",
        "ConditioningCombine",
        "ConditioningZeroOut",
        "LoraLoader",
        "CheckpointLoaderSimple",
        "UNETLoader",
        "EmptyLatentImage",
        "CFGGuider",
        "RandomNoise",
        "BasicScheduler",
        "Reroute",
        "x",
    ]
)
_nodes = st.one_of(
    st.fixed_dictionaries({"class_type": _node_kinds, "inputs": _inputs}),
    st.fixed_dictionaries({"class_type": _node_kinds, "inputs": _inputs}),
    _optional(["class_type", "inputs", "_meta"], _node_kinds | _inputs | WILD),  # a node of the wrong shape
    WILD,
)
# Most graphs have a sampler node (without one a graph is not read any further), beside others.
_samplers = st.fixed_dictionaries({"class_type": st.sampled_from(_SAMPLERS), "inputs": _inputs})
_graphs = st.one_of(
    st.tuples(_node_ids, _samplers, st.dictionaries(_node_ids, _nodes, max_size=4)).map(lambda t: {t[0]: t[1], **t[2]}),
    st.tuples(_node_ids, _samplers, st.dictionaries(_node_ids, _nodes, max_size=4)).map(lambda t: {**t[2], t[0]: t[1]}),
    st.dictionaries(_node_ids, _nodes, max_size=4),
)

_json_texts = st.one_of(JSON_VALUES.map(dumps), _graphs.map(dumps), _invoke.map(dumps), _fooocus.map(dumps))
_texts = st.one_of(st.text(max_size=80), _a1111, _json_texts, _hostile, st.binary(max_size=120))
_broken_json = st.builds(lambda text, how, at: BREAKAGES[how](text, at), _json_texts, BREAK, st.integers(0, 5000))

_kinds = st.sampled_from(["tEXt", "zTXt", "iTXt", "iTXt packed"])
_good_crc = st.sampled_from([True] * 9 + [False])
_READ = [b"parameters", b"prompt", b"studio", b"invokeai_metadata"]  # the chunks settings are read from
# A `studio` chunk as JSON: a spec of any kind with any value in any field.
_studio_dicts = st.fixed_dictionaries(
    {"kind": st.sampled_from(["image", "image", "text", "morph", "x"]) | WILD, "model": st.just("m") | WILD},
    optional={
        name: WILD
        for name in [
            "prompt",
            "seed",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "scheduler",
            "strength",
            "init_image",
            "loras",
            "count",
            "info",
            "latent",
            "unknown",
        ]
    },
)
# One chunk a settings reader looks for, as its tool writes it (with any value in any field),
# broken, random, or huge.
_main = st.one_of(
    st.builds(_text_chunk, st.just(b"parameters"), _a1111 | _fooocus.map(dumps) | _hostile, _kinds, _good_crc),
    st.builds(_text_chunk, st.just(b"prompt"), _graphs.map(dumps), _kinds, _good_crc),
    st.builds(_text_chunk, st.just(b"prompt"), _graphs.map(dumps), _kinds, _good_crc),
    st.builds(_text_chunk, st.just(b"invokeai_metadata"), _invoke.map(dumps), _kinds, _good_crc),
    st.builds(_text_chunk, st.just(b"studio"), _studio_dicts.map(dumps), _kinds, _good_crc),
    st.builds(_text_chunk, st.sampled_from(_READ), _broken_json | _texts, _kinds, _good_crc),
    _BIG_CHUNKS,
)
# Chunks beside it: other tools' names, random names and random bodies (mostly not read).
_noise = st.one_of(
    st.builds(
        _text_chunk,
        st.sampled_from([b"workflow", b"Comment", b"fooocus_scheme", b"invokeai_graph"]) | st.binary(max_size=90),
        st.text(max_size=80) | st.binary(max_size=120) | _hostile,
        _kinds,
        _good_crc,
    ),
    st.builds(
        _chunk, st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"abcd"]), st.binary(max_size=300), _good_crc
    ),
)


# --- the studio's own images ------------------------------------------------------------------------

_specs = st.builds(
    ImageJob,
    model=st.sampled_from(["m", "emoji-sd", "dir/model.safetensors"]) | st.text(min_size=1).filter(str.strip),
    prompt=st.text(max_size=60),
    negative_prompt=st.sampled_from(["", "blurry, lowres"]) | st.text(max_size=30),
    seed=st.integers(0, MAX_IMAGE_SEED),
    steps=st.integers(1, 1000),
    guidance_scale=st.floats(0, 50),
    width=st.integers(1, 512).map(lambda v: 8 * v),
    height=st.integers(1, 512).map(lambda v: 8 * v),
    scheduler=st.sampled_from(("",) + SCHEDULERS),
    strength=st.floats(0.01, 1.0),
    init_image=st.sampled_from(["", "in.png"]),
    loras=st.lists(
        st.tuples(st.sampled_from(["a.safetensors", "dir/b.safetensors"]), st.floats(-10, 10)), max_size=1
    ).map(tuple),
).filter(lambda spec: _valid(spec))


def _valid(spec: ImageJob) -> bool:
    try:
        spec.validate()
    except SpecError:
        return False
    return True


# What a backend reports (any JSON-ish value; the studio writes what it is given).
_info_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.just("ab" * 32)
    | st.dictionaries(st.text(max_size=8), st.text(max_size=12) | st.integers(), max_size=3)
)
_infos = st.just({}) | _optional(["model_hash", "model_name", "scheduler", "lora_hashes"], _info_values)


def _ours(spec: ImageJob, info: dict) -> bytes:
    """The bytes save_image writes for this spec (caught on their way to the disk)."""
    written = []
    with mock.patch.object(png_module, "write_atomic", lambda path, data: written.append(data)):
        save_image("x.png", np.zeros((1, 1, 3), np.uint8), spec, info)
    return written[0]


_STUDIO_CHUNK = re.compile(rb"(iTXt|tEXt)studio\0")


def _with_studio_chunk(data: bytes, text: str) -> bytes:
    """`data` with its `studio` chunk's JSON replaced by `text` (the last text chunk save_image
    writes; a prompt may hold the same bytes, the JSON cannot: it has no raw NUL)."""
    start = list(_STUDIO_CHUNK.finditer(data))[-1].start() - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    return data[:start] + _text_chunk(b"studio", text, "iTXt") + data[start + 12 + length :]


# --- the checks -------------------------------------------------------------------------------------


def _settings_or_one_sentence(data: bytes):
    """The settings read from `data`, checked field by field, or the one sentence refusing it."""
    try:
        s = read_settings(data)
    except MetadataError as error:
        assert error.message.startswith("The image "), error.message[:300]
        assert one_sentence(error.message), error.message[:300]
        event(f"refused: {error.message[10:40]}")
        return error.message
    event(f"read: {s.source}")
    assert s.source in SOURCES
    assert isinstance(s.prompt, str) and len(s.prompt) <= MAX_PROMPT
    assert isinstance(s.negative_prompt, str) and len(s.negative_prompt) <= MAX_PROMPT
    assert s.seed is None or 0 <= s.seed <= MAX_IMAGE_SEED
    assert s.steps is None or 1 <= s.steps <= 1000
    assert s.width is None or 8 <= s.width <= 4096
    assert s.height is None or 8 <= s.height <= 4096
    assert s.guidance_scale is None or 0.0 <= s.guidance_scale <= 50.0
    assert s.strength is None or 0.0 <= s.strength <= 1.0
    assert s.scheduler == "" or s.scheduler in SCHEDULERS
    assert isinstance(s.model, str) and isinstance(s.model_hash, str) and isinstance(s.sampler, str)
    assert len(s.loras) <= MAX_LORAS
    assert all(isinstance(name, str) and name and -10.0 <= weight <= 10.0 for name, weight in s.loras)
    assert s.spec is None or (s.source == "Studio" and s.spec.validate() is None)
    assert s.text == describe(s) and s.text.startswith("Source: ")
    return s


def _idat(data: bytes) -> int:
    """Where the pixels of a 1x1 image save_image wrote start (the last chunks: IDAT, IEND)."""
    return data.rindex(b"IDAT") - 4


@pytest.mark.timeout(240)
@fuzz
@given(
    # One chunk a reader looks for, alone or beside another; two that compete; or only noise.
    st.one_of(
        _main.map(lambda c: [c]),
        st.tuples(_main, _noise).map(list),
        st.tuples(_noise, _main).map(list),
        st.tuples(_main, _main).map(list),
        st.lists(_noise, max_size=2),
    ),
    st.booleans(),
    st.one_of(st.none(), st.none(), st.tuples(_specs, _infos, BREAK)),
    st.sampled_from(["whole"] * 6 + ["cut", "flip"]),
    st.integers(0, 2**24),
)
# Found by this test: a ComfyUI node id of Unicode digits ("²") and a float field holding a number
# too large for a float escaped as ValueError / OverflowError.
@example([_text_chunk(b"prompt", '{"²": {"class_type": "KSampler", "inputs": {}}}', "tEXt")], False, None, "whole", 0)
@example([_text_chunk(b"invokeai_metadata", '{"cfg_scale": %d}' % BIG_NUMBER, "tEXt")], False, None, "whole", 0)
@example(
    [_text_chunk(b"studio", '{"kind": "image", "model": "m", "guidance_scale": %d}' % BIG_NUMBER, "tEXt")],
    False,
    None,
    "whole",
    0,
)
# Found while timing this test: a plain text chunk of megabytes was parsed (5 s for 8 MB of "a: b, ");
# a plain chunk over 1 MB is now skipped like a packed one is refused.
@example([_chunk(b"tEXt", b"parameters\0" + b"a: b, " * 1_300_000)], False, None, "whole", 0)
def test_any_metadata_gives_settings_in_range_or_one_sentence(chunks, ours_first, ours, damage, at):
    body = b"".join(chunks)
    expected = None
    if ours is not None:  # the studio's own image, its `studio` chunk whole or broken, among other chunks
        spec, info, breakage = ours
        data = _ours(spec, info)
        studio_text = json.dumps({**spec.to_dict(), "info": {}}, sort_keys=True)
        data = _with_studio_chunk(data, BREAKAGES[breakage](studio_text, at))
        # Its own chunks come first (the first of two chunks of one name is the one read) unless drawn otherwise.
        head, tail = data[: _idat(data)], data[_idat(data) :]
        data = (head + body + tail) if ours_first else (head[:_AFTER_IHDR] + body + head[_AFTER_IHDR:] + tail)
        expected = (spec, breakage) if ours_first or not chunks else None
    else:
        data = png(body)
    if damage == "cut":
        data = data[: at % (len(data) + 1)]
        expected = None
    elif damage == "flip" and data:
        i = at % len(data)
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        expected = None

    s = _settings_or_one_sentence(data)

    if expected is not None:  # our own image reads back as what made it
        spec, breakage = expected
        if isinstance(s, str):  # only a bomb or too much text among the other chunks refuses it
            assert "more than" in s, s
        elif breakage == "whole":
            assert (s.source, s.spec) == ("Studio", spec)
        elif s.source != "Studio":  # a broken `studio` chunk: the `parameters` chunk is read instead
            assert s.source in ("AUTOMATIC1111", "Fooocus")  # Fooocus: another chunk says fooocus_scheme
            assert (s.seed, s.steps, s.width, s.height) == (spec.seed, spec.steps, spec.width, spec.height)
