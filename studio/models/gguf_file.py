"""Reading and checking a GGUF file's header (llama.cpp's format) before any native code sees it.

Crafted GGUF files have broken llama.cpp's loader (sizes that overflow, strings past the end,
tensors outside the file), so the whole header is read here first, from a stream with explicit
bounds: every declared length or count is weighed against the bytes left in the file and a header
budget before anything is read or allocated, and the tensors' data ranges are checked against the
file's size (the data itself is never read). A file that fails is refused with one sentence
naming it, as a ModelFileError.

Standard library only (no numpy, no gguf package): the registry lists model folders with it.
The format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md"""

from __future__ import annotations

import enum
import os
import struct
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional, TypeGuard

from studio.core import untrusted
from studio.core.errors import ModelFileError, shown
from studio.core.memory import available_bytes, size_words
from studio.models.formats import MAX_CHAT_TEMPLATE_CHARS

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 used 32-bit counts and lengths; llama.cpp dropped it too
MAX_TENSORS = 65_536  # the largest real models have a few thousand
MAX_KVS = 65_536
MAX_KEY_BYTES = 65_535
MAX_STRING_BYTES = 16 * 1024 * 1024  # one text value (a chat template, a token); more is not metadata
MAX_HEADER_BYTES = 256 * 1024 * 1024  # the whole header, tokenizer arrays included (real ones: ~10 MB)
MAX_TENSOR_NAME_BYTES = 63  # ggml's GGML_MAX_NAME (64) holds the name and its NUL
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_DIM = 2**40
MAX_ELEMENTS = 2**48
MAX_ALIGNMENT = 1024 * 1024
DEFAULT_ALIGNMENT = 32
MAX_NESTING = 2  # arrays of arrays are allowed by the format; deeper is refused
SMALL_ARRAY = 64  # arrays up to this many elements are kept as lists; longer ones only as ArrayInfo
CHUNK = 1024 * 1024  # how much the reader reads ahead at a time
TIME_CHECK_EVERY = 4096  # array elements between looks at the clock

# Metadata value types (gguf_type).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALARS: dict[int, struct.Struct] = {
    UINT8: struct.Struct("<B"),
    INT8: struct.Struct("<b"),
    UINT16: struct.Struct("<H"),
    INT16: struct.Struct("<h"),
    UINT32: struct.Struct("<I"),
    INT32: struct.Struct("<i"),
    FLOAT32: struct.Struct("<f"),
    BOOL: struct.Struct("<?"),
    UINT64: struct.Struct("<Q"),
    INT64: struct.Struct("<q"),
    FLOAT64: struct.Struct("<d"),
}
VALUE_TYPE_NAMES = {
    UINT8: "uint8",
    INT8: "int8",
    UINT16: "uint16",
    INT16: "int16",
    UINT32: "uint32",
    INT32: "int32",
    FLOAT32: "float32",
    BOOL: "bool",
    STRING: "string",
    ARRAY: "array",
    UINT64: "uint64",
    INT64: "int64",
    FLOAT64: "float64",
}
U32 = SCALARS[UINT32]
U64 = SCALARS[UINT64]

# ggml tensor types this studio knows: type -> (name, elements per block, bytes per block), as
# ggml's own type traits give them. A type not here is refused: its sizes cannot be checked.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),  # two f16 (d, s) and 32 int8; the gguf Python package says 40 (two f32)
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# llama.cpp's llama_ftype: what "general.file_type" says the file mostly holds.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}
FILE_TYPE_GUESSED = 1024  # a flag llama.cpp ORs in when it guessed the type


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep (a tokenizer's vocabulary): its element type and length.
    Its elements were read and checked, then dropped."""

    element_type: int
    count: int


@dataclass(frozen=True)
class GgufTensor:
    """One tensor's entry in the header. `shape` is in ggml's order, as the file stores it: the
    row length (ne0) first. `offset` is absolute, from the start of the file."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int

    @property
    def element_count(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.ggml_type][0] if self.ggml_type in GGML_TYPES else f"type {self.ggml_type}"


@dataclass(frozen=True)
class GgufHeader:
    """A checked GGUF header: its metadata (long arrays as ArrayInfo), tensors and layout."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GgufTensor, ...]
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str:
        """The model family llama.cpp builds ("llama", "qwen2"), from general.architecture."""
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise ModelFileError(f"{_name(self.path)} names no architecture (general.architecture).")
        return arch

    @property
    def parameter_count(self) -> int:
        return sum(t.element_count for t in self.tensors)

    @property
    def weights_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def quantisation(self) -> str:
        """What the weights are stored as ("Q4_K_M", "F16"): general.file_type when the file says
        and the studio knows it, else the tensor type holding the most bytes ("unknown" with none)."""
        file_type = self.metadata.get("general.file_type")
        if _is_int(file_type) and (file_type & ~FILE_TYPE_GUESSED) in FILE_TYPES:
            return FILE_TYPES[file_type & ~FILE_TYPE_GUESSED]
        by_type: Counter[int] = Counter()
        for tensor in self.tensors:
            by_type[tensor.ggml_type] += tensor.nbytes
        if not by_type:
            return "unknown"
        return GGML_TYPES[by_type.most_common(1)[0][0]][0]

    @property
    def context_length(self) -> Optional[int]:
        """The context the model was trained for, in tokens ({arch}.context_length), if it says."""
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if _is_int(value) and value > 0 else None

    @property
    def chat_template(self) -> Optional[str]:
        """The Jinja chat template (tokenizer.chat_template; never rendered here), None when absent
        or blank."""
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None


def read_header(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES, time_limit_s: float = 10.0) -> GgufHeader:
    """The checked header of the GGUF file at `path`, or ModelFileError with one sentence naming
    the file and what is wrong with it. Reads at most `max_header_bytes` and gives up after
    `time_limit_s` seconds, so no header can make the studio allocate or work without bound."""
    name = _name(path)
    with untrusted.open_regular(path, ModelFileError, name) as f:
        try:
            file_size = os.fstat(f.fileno()).st_size
            reader = _Reader(f, name, file_size, max_header_bytes, time_limit_s)
            return _parse(path, reader)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ModelFileError(
                f"{name} cannot be read ({reason}): check the file's permissions and copy it again."
            ) from None


def loading_bytes(header: GgufHeader, context_tokens: int) -> int:
    """About how many bytes loading the model with a `context_tokens` context takes: its weights
    plus an f16 KV cache (keys and values for every layer and token, narrowed by grouped-query
    attention when the file gives both head counts). The cache is left out when the file does not
    say its layer count and width."""
    if context_tokens < 0:
        raise ValueError(f"context_tokens must not be negative, not {context_tokens}")
    return header.weights_bytes + _kv_cache_bytes(header, context_tokens)


class _Ask(enum.Enum):
    MACHINE = "machine"


ASK_MACHINE = _Ask.MACHINE


def check_loadable(header: GgufHeader, context_tokens: int, available: "Optional[int] | _Ask" = ASK_MACHINE) -> None:
    """ModelFileError when loading the model with `context_tokens` of context needs more than
    `available` bytes (by default what this machine has free now; None: unknown, so no check)."""
    if available is ASK_MACHINE:
        available = available_bytes()
    if available is None:
        return
    need = loading_bytes(header, context_tokens)
    if need <= available:
        return
    kv = need - header.weights_bytes
    raise ModelFileError(
        f"{_name(header.path)} needs about {size_words(need)} of memory to load with a "
        f"{context_tokens:,}-token context ({size_words(header.weights_bytes)} of weights and "
        f"{size_words(kv)} for the context), but only {size_words(available)} is free; close other "
        "programs, or choose a shorter context or a smaller quantisation."
    )


def _kv_cache_bytes(header: GgufHeader, context_tokens: int) -> int:
    arch = header.metadata.get("general.architecture")
    if not isinstance(arch, str):
        return 0
    layers = header.metadata.get(f"{arch}.block_count")
    width = header.metadata.get(f"{arch}.embedding_length")
    if not (_is_int(layers) and _is_int(width)) or layers <= 0 or width <= 0:
        return 0
    heads = header.metadata.get(f"{arch}.attention.head_count")
    kv_heads = header.metadata.get(f"{arch}.attention.head_count_kv")
    # Grouped-query attention keeps keys and values for fewer heads than it queries with.
    if _is_int(heads) and _is_int(kv_heads) and 0 < kv_heads <= heads:
        width = width * kv_heads // heads
    return 2 * layers * width * context_tokens * 2  # keys and values, 2 bytes (f16) each


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(path: Path) -> str:
    return untrusted.printable(path.name, one_line=True)


class _Reader:
    """Bounded reads from the start of a file: each read is weighed against the bytes left in the
    file and the header budget before it happens (never allocating by a declared size), reads
    ahead in chunks so long arrays are walked in memory, and keeps the time limit."""

    def __init__(self, f: BinaryIO, name: str, file_size: int, budget: int, time_limit_s: float):
        self.f = f
        self.name = name
        self.file_size = file_size
        self.budget = budget
        self.end = min(file_size, budget)  # the buffer never holds a byte past this
        self.time_limit_s = time_limit_s
        self.deadline = time.monotonic() + time_limit_s
        self.buf = b""
        self.i = 0  # the next unread byte in buf
        self.pos = 0  # the file offset of buf[i]
        self.where = "its header"  # what is being read, for the sentences

    def check(self, n: int) -> None:
        """Refuse the file when `n` more bytes would run past its end or the header budget."""
        if n > self.file_size - self.pos:
            raise ModelFileError(
                f"{self.name} is truncated: {self.where} at byte {self.pos:,} needs {n:,} bytes, but the "
                f"file has only {self.file_size:,} bytes."
            )
        if n > self.budget - self.pos:
            raise ModelFileError(
                f"{self.name} has a header larger than the {size_words(self.budget)} the studio reads "
                f"({self.where} at byte {self.pos:,} needs {n:,} more bytes), so it is not a model it can load."
            )

    def need(self, n: int) -> None:
        """Make `n` bytes readable at buf[i], or refuse the file when they cannot be."""
        have = len(self.buf) - self.i
        if have >= n:
            return
        self.check(n)
        ahead = min(CHUNK, self.end - self.pos - have)
        chunk = self.f.read(max(n - have, ahead))
        self.buf = self.buf[self.i :] + chunk
        self.i = 0
        if len(self.buf) < n:  # the file shrank while being read
            raise ModelFileError(
                f"{self.name} is truncated: {self.where} at byte {self.pos:,} runs past the end of the file."
            )

    def take(self, n: int) -> bytes:
        self.need(n)
        data = self.buf[self.i : self.i + n]
        self.i += n
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        """Move past `n` bytes without reading them (after the same checks as a read)."""
        if len(self.buf) - self.i >= n:
            self.i += n
            self.pos += n
            return
        self.check(n)
        self.pos += n
        self.f.seek(self.pos)
        self.buf, self.i = b"", 0

    def scalar(self, kind: struct.Struct) -> Any:
        if len(self.buf) - self.i < kind.size:
            self.need(kind.size)
        (value,) = kind.unpack_from(self.buf, self.i)
        self.i += kind.size
        self.pos += kind.size
        return value

    def u32(self) -> int:
        return self.scalar(U32)

    def u64(self) -> int:
        return self.scalar(U64)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ModelFileError(
                f"{self.name} took more than {self.time_limit_s:g} seconds to check (its header is too large "
                "or too slow to read), so it was refused."
            )

    def skip_strings(self, count: int) -> None:
        """Walk `count` strings, checking each length, keeping none: a vocabulary of 150,000
        tokens in a fraction of a second, with no read per string."""
        for k in range(count):
            if k % TIME_CHECK_EVERY == 0:
                self.check_time()
            if len(self.buf) - self.i < 8:
                self.need(8)
            (length,) = U64.unpack_from(self.buf, self.i)
            if length > MAX_STRING_BYTES:
                self.too_long_string(length)
            if len(self.buf) - self.i < 8 + length:
                self.need(8 + length)
            self.i += 8 + length
            self.pos += 8 + length

    def too_long_string(self, length: int) -> None:
        raise ModelFileError(
            f"{self.name} has a text value of {length:,} bytes in {self.where}, more than the "
            f"{MAX_STRING_BYTES:,} bytes the studio reads."
        )

    def string(self) -> str:
        """A text value (invalid UTF-8 replaced: a value is shown, never used as a name)."""
        length = self.u64()
        if length > MAX_STRING_BYTES:
            self.too_long_string(length)
        return self.take(length).decode("utf-8", errors="replace")


def _parse(path: Path, r: _Reader) -> GgufHeader:
    name = r.name
    magic = r.take(4) if r.file_size >= 4 else b""
    if magic != MAGIC:
        raise ModelFileError(f"{name} is not a GGUF file (it does not start with the bytes 'GGUF').")
    r.where = "the version"
    version = r.u32()
    if version not in VERSIONS:
        if int.from_bytes(version.to_bytes(4, "little"), "big") in VERSIONS:
            raise ModelFileError(f"{name} is a big-endian GGUF file, which the studio cannot load.")
        raise ModelFileError(
            f"{name} is GGUF version {version:,}, which the studio cannot load (it reads versions 2 and 3); "
            "convert it again with a current llama.cpp."
        )
    r.where = "the tensor and metadata counts"
    tensor_count = r.u64()
    kv_count = r.u64()
    if tensor_count > MAX_TENSORS:
        raise ModelFileError(
            f"{name} declares {tensor_count:,} tensors, more than the {MAX_TENSORS:,} a model may have."
        )
    if kv_count > MAX_KVS:
        raise ModelFileError(
            f"{name} declares {kv_count:,} metadata entries, more than the {MAX_KVS:,} a model may have."
        )
    metadata, types = _read_metadata(r, kv_count)
    alignment = _alignment(name, metadata, types)
    infos = _read_tensor_infos(r, tensor_count)
    data_offset = -(-r.pos // alignment) * alignment
    tensors = _place_tensors(name, infos, data_offset, alignment, r.file_size)
    _check_metadata(name, metadata)
    return GgufHeader(path, version, metadata, tensors, data_offset, r.file_size)


def _read_metadata(r: _Reader, count: int) -> tuple[dict[str, Any], dict[str, int]]:
    """The key-value pairs, and each key's value type (general.alignment must be a uint32)."""
    metadata: dict[str, Any] = {}
    types: dict[str, int] = {}
    for index in range(count):
        r.check_time()
        r.where = f"metadata key {index + 1}"
        key = _read_name(r, MAX_KEY_BYTES, "metadata key", "a key")
        if key in metadata:
            raise ModelFileError(f"{r.name} has the metadata key {shown(key)} twice.")
        r.where = f"the value of {shown(key)}"
        vtype = r.u32()
        metadata[key] = _read_value(r, vtype, key, depth=0)
        types[key] = vtype
    return metadata, types


def _read_value(r: _Reader, vtype: int, key: str, depth: int) -> Any:
    kind = SCALARS.get(vtype)
    if kind is not None:
        return r.scalar(kind)
    if vtype == STRING:
        return r.string()
    if vtype == ARRAY:
        return _read_array(r, key, depth + 1)
    raise ModelFileError(f"{r.name} gives the metadata key {shown(key)} a value of unknown type {vtype:,}.")


def _read_array(r: _Reader, key: str, depth: int) -> "list[Any] | ArrayInfo":
    """An array's elements as a list when it is short, else its ArrayInfo, after reading and
    checking every element. Its declared size is weighed against the bytes left first."""
    etype = r.u32()
    count = r.u64()
    if etype == ARRAY and depth >= MAX_NESTING:
        raise ModelFileError(
            f"{r.name} has arrays nested more than {MAX_NESTING} deep in the metadata key {shown(key)}."
        )
    kind = SCALARS.get(etype)
    if kind is not None:
        least = kind.size
    elif etype == STRING:
        least = 8  # each string's length
    elif etype == ARRAY:
        least = 12  # each inner array's type and count
    else:
        raise ModelFileError(
            f"{r.name} gives the metadata key {shown(key)} an array of unknown element type {etype:,}."
        )
    r.check(count * least)  # the truncated (or over budget) sentence before any element is read
    if count <= SMALL_ARRAY:
        return [_read_value(r, etype, key, depth) for _ in range(count)]
    if kind is not None:
        r.skip(count * kind.size)
    elif etype == STRING:
        r.skip_strings(count)
    else:
        for k in range(count):
            if k % TIME_CHECK_EVERY == 0:
                r.check_time()
            _read_array(r, key, depth + 1)
    return ArrayInfo(etype, count)


def _alignment(name: str, metadata: dict[str, Any], types: dict[str, int]) -> int:
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    value = metadata["general.alignment"]
    vtype = types["general.alignment"]
    if vtype != UINT32 or not 0 < value <= MAX_ALIGNMENT or value & (value - 1):
        raise ModelFileError(
            f"{name} has general.alignment {shown(value)} ({VALUE_TYPE_NAMES[vtype]}), but it must be a uint32 "
            f"power of two from 1 to {MAX_ALIGNMENT:,}."
        )
    return value


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    relative_offset: int
    nbytes: int


def _read_name(r: _Reader, limit: int, what: str, holder: str) -> str:
    """A metadata key or tensor name: a length within `limit`, then that many bytes of UTF-8."""
    at = r.pos
    length = r.u64()
    if length > limit:
        raise ModelFileError(
            f"{r.name} has a {what} of {length:,} bytes at byte {at:,}, more than the {limit:,} {holder} may have."
        )
    raw = r.take(length)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(f"{r.name} has a {what} at byte {at:,} that is not UTF-8 text ({shown(raw)}).") from None


def _read_tensor_infos(r: _Reader, count: int) -> list[_TensorInfo]:
    infos: list[_TensorInfo] = []
    names: set[str] = set()
    for index in range(count):
        r.check_time()
        r.where = f"tensor {index + 1}'s entry"
        tensor = _read_name(r, MAX_TENSOR_NAME_BYTES, "tensor name", "a tensor name")
        if tensor in names:
            raise ModelFileError(f"{r.name} has two tensors named {shown(tensor)}.")
        names.add(tensor)
        r.where = f"the entry of tensor {shown(tensor)}"
        infos.append(_read_tensor_info(r, tensor))
    return infos


def _read_tensor_info(r: _Reader, tensor: str) -> _TensorInfo:
    n_dims = r.u32()
    if not 1 <= n_dims <= MAX_DIMS:
        raise ModelFileError(
            f"{r.name} gives tensor {shown(tensor)} {n_dims:,} dimensions; a GGUF tensor has 1 to {MAX_DIMS}."
        )
    shape = tuple(r.u64() for _ in range(n_dims))
    elements = 1
    for dim in shape:
        if not 1 <= dim <= MAX_DIM:
            raise ModelFileError(
                f"{r.name} gives tensor {shown(tensor)} a dimension of {dim:,}; each must be from 1 to 2^40."
            )
        elements *= dim
    if elements > MAX_ELEMENTS:
        raise ModelFileError(
            f"{r.name} gives tensor {shown(tensor)} {elements:,} elements, more than the 2^48 a tensor may have."
        )
    ggml_type = r.u32()
    if ggml_type not in GGML_TYPES:
        raise ModelFileError(
            f"{r.name} gives tensor {shown(tensor)} the ggml type {ggml_type:,}, which the studio does not know."
        )
    type_name, block, block_bytes = GGML_TYPES[ggml_type]
    if shape[0] % block:
        raise ModelFileError(
            f"{r.name} gives tensor {shown(tensor)} of type {type_name} rows of {shape[0]:,} elements, "
            f"not a multiple of its block of {block}."
        )
    offset = r.u64()
    return _TensorInfo(tensor, shape, ggml_type, offset, elements // block * block_bytes)


def _place_tensors(
    name: str, infos: list[_TensorInfo], data_offset: int, alignment: int, file_size: int
) -> tuple[GgufTensor, ...]:
    """The tensors at their absolute offsets, each aligned, inside the file and apart from the rest."""
    tensors: list[GgufTensor] = []
    for info in infos:
        if info.relative_offset % alignment:
            raise ModelFileError(
                f"{name} puts tensor {shown(info.name)} at offset {info.relative_offset:,}, which is not a "
                f"multiple of the file's alignment ({alignment})."
            )
        start = data_offset + info.relative_offset
        tensors.append(GgufTensor(info.name, info.shape, info.ggml_type, start, info.nbytes))
    if tensors:
        end = max(t.offset + t.nbytes for t in tensors)
        if end > file_size:
            raise ModelFileError(
                f"{name} is truncated: its tensor data ends at byte {end:,} but the file has {file_size:,} bytes."
            )
    ordered = sorted(tensors, key=lambda t: (t.offset, t.nbytes))
    for first, second in zip(ordered, ordered[1:]):
        if first.offset + first.nbytes > second.offset:
            raise ModelFileError(
                f"{name} has tensors {shown(first.name)} and {shown(second.name)} whose data overlap "
                f"(bytes {first.offset:,} to {first.offset + first.nbytes:,} and from {second.offset:,})."
            )
    return tuple(tensors)


def _check_metadata(name: str, metadata: dict[str, Any]) -> None:
    """The metadata the studio relies on: an architecture, and a chat template it can read."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{name} names no architecture (general.architecture).")
    template = metadata.get("tokenizer.chat_template")
    if template is not None and not isinstance(template, str):
        raise ModelFileError(f"{name} has a tokenizer.chat_template that is not text.")
    if isinstance(template, str) and len(template) > MAX_CHAT_TEMPLATE_CHARS:
        raise ModelFileError(
            f"The chat template in {name} is {len(template):,} characters long, more than the "
            f"{MAX_CHAT_TEMPLATE_CHARS:,} the studio reads."
        )
