"""A minimal reader for R lazy-load databases, so R data packages can feed training without R.

R packages with `LazyData: true` store their data sets in `data/Rdata.rdx` + `data/Rdata.rdb`
(and their code in `R/<pkg>.rdx` + `.rdb`). The `.rdx` index is an RDS file (usually gzip; R also
writes bzip2, xz or no compression) holding a list with `variables` (name -> integer vector
`(offset, length)` into the `.rdb`), `references` (environments the values point to) and
`compressed` (TRUE = zlib, 2 = bzip2, 3 = xz). Each `.rdb` blob is a 4-byte big-endian uncompressed
length followed by the compressed serialization; for types 2 and 3 one more byte names the method
actually used ('0' none, '1' zlib, '2' bzip2, 'Z' xz).

Only the XDR serialization format (versions 2 and 3) is understood, and only the object types data
sets are made of; closures with byte code and other exotic types raise ValueError. R values map to
plain Python: character vectors become `RVector` (a list of `str | None`), numeric and logical
vectors `RVector`s of numbers / bools with `None` for NA, named lists `RVector`s whose `names`
attribute holds the names.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

__all__ = [
    "RVector",
    "RSymbol",
    "REnvironment",
    "RMarker",
    "read_rdata",
    "read_lazyload_db",
    "unserialize",
    "read_rds_bytes",
]

NA_INTEGER = -(2**31)

# SEXP type codes (Rinternals.h) and the serialization-only pseudo types (serialize.c).
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP = 7, 8, 9, 10, 13, 14, 15, 16
DOTSXP, VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = 17, 19, 20, 21, 22, 23, 24, 25
ALTREP_SXP, ATTRLISTSXP, ATTRLANGSXP = 238, 239, 240
BASEENV_SXP, EMPTYENV_SXP, BCREPREF, BCREPDEF, GENERICREFSXP, CLASSREFSXP = 241, 242, 243, 244, 245, 246
PERSISTSXP, PACKAGESXP, NAMESPACESXP, BASENAMESPACE_SXP, MISSINGARG_SXP = 247, 248, 249, 250, 251
UNBOUNDVALUE_SXP, GLOBALENV_SXP, NILVALUE_SXP, REFSXP = 252, 253, 254, 255

_TYPE_NAMES = {
    CLOSXP: "closure",
    PROMSXP: "promise",
    SPECIALSXP: "special function",
    BUILTINSXP: "builtin function",
    BCODESXP: "byte code",
    EXTPTRSXP: "external pointer",
    WEAKREFSXP: "weak reference",
    BCREPREF: "byte-code reference",
    BCREPDEF: "byte-code definition",
    GENERICREFSXP: "generic reference",
    CLASSREFSXP: "class reference",
    ATTRLISTSXP: "byte-code attribute list",
    ATTRLANGSXP: "byte-code attribute call",
}

# CHARSXP encoding bits in the "levels" part of the flags.
_LATIN1_MASK, _UTF8_MASK, _BYTES_MASK, _ASCII_MASK = 1 << 2, 1 << 3, 1 << 1, 1 << 6


class RVector(list):
    """An R vector as a Python list, with its R attributes (names, class, dim, ...) kept alongside."""

    def __init__(self, items: Iterable[object] = (), attributes: dict[str, object] | None = None, rtype: str = "list"):
        super().__init__(items)
        self.attributes: dict[str, object] = attributes or {}
        self.rtype = rtype

    @property
    def names(self) -> list[str | None] | None:
        names = self.attributes.get("names")
        return list(names) if isinstance(names, list) else None

    def as_dict(self) -> dict[str, object]:
        """A named list or vector as a dict (unnamed elements get their 1-based position as key)."""
        names = self.names or [None] * len(self)
        return {name if name else str(i + 1): value for i, (name, value) in enumerate(zip(names, self))}


@dataclass(frozen=True)
class RSymbol:
    """An R symbol (a name), as found in pairlist tags, calls and ALTREP class descriptions."""

    name: str


@dataclass(frozen=True)
class RMarker:
    """A special R value that has no Python meaning here: the global environment, a missing argument..."""

    what: str


@dataclass(eq=False)
class REnvironment:
    """An R environment's bindings; `persistent_name` is set for environments the lazy-load DB stores apart."""

    frame: dict[str, object] = field(default_factory=dict)
    enclosure: object = None
    persistent_name: list[str | None] | None = None


_MARKERS = {
    BASEENV_SXP: RMarker("baseenv"),
    EMPTYENV_SXP: RMarker("emptyenv"),
    GLOBALENV_SXP: RMarker("globalenv"),
    UNBOUNDVALUE_SXP: RMarker("unbound"),
    MISSINGARG_SXP: RMarker("missing argument"),
    BASENAMESPACE_SXP: RMarker("base namespace"),
}


class _Reader:
    """Walks one XDR serialization stream; the reference table makes shared symbols/environments work."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0
        self.refs: list[object] = []

    # --- primitive reads -------------------------------------------------------------------------
    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ValueError("The R serialization stream ends in the middle of an object.")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: the length follows as two 32-bit halves
            upper, lower = struct.unpack(">II", self._take(8))
            return (upper << 32) + lower
        return n

    def header(self) -> None:
        if bytes(self._take(2)) != b"X\n":
            raise ValueError("Only R's XDR serialization format is supported, and this stream is not XDR.")
        version = self.int()
        self.int()  # R version that wrote it
        self.int()  # minimal R version to read it
        if version == 3:
            self._take(self.int())  # native encoding name, e.g. "UTF-8"
        elif version != 2:
            raise ValueError(f"R serialization version {version} is not supported (only 2 and 3).")

    # --- items -----------------------------------------------------------------------------------
    def item(self) -> object:
        flags = self.int()
        kind = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if kind == NILVALUE_SXP:
            return None
        if kind in _MARKERS:
            return _MARKERS[kind]
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == PERSISTSXP:
            names = self._string_vec()
            env = REnvironment(persistent_name=names)
            self.refs.append(env)
            return env
        if kind == SYMSXP:
            name = self.item()  # a CHARSXP: the symbol's text, or None for NA
            symbol = RSymbol(name if isinstance(name, str) else "")
            self.refs.append(symbol)
            return symbol
        if kind in (PACKAGESXP, NAMESPACESXP):
            marker = RMarker(
                ("package " if kind == PACKAGESXP else "namespace ") + " ".join(map(str, self._string_vec()))
            )
            self.refs.append(marker)
            return marker
        if kind == ENVSXP:
            self.int()  # locked flag
            env = REnvironment()
            self.refs.append(env)
            env.enclosure = self.item()
            frame = self.item()
            hashtab = self.item()
            self.item()  # attributes
            for source in (frame, *(hashtab if isinstance(hashtab, list) else ())):
                if isinstance(source, RVector) and source.rtype == "pairlist":
                    env.frame.update(source.as_dict())
            return env
        if kind in (LISTSXP, LANGSXP, DOTSXP):
            return self._pairlist(flags)
        if kind == ALTREP_SXP:
            return self._altrep()
        if kind == CHARSXP:
            return self._charsxp(levels)
        if kind == S4SXP:
            return RVector((), self._attributes() if has_attr else {}, "S4")

        value = self._vector(kind)
        if has_attr:
            value.attributes = self._attributes()
        if has_tag:  # not produced for vectors, but harmless to honour
            self.item()
        return value

    def _charsxp(self, levels: int) -> str | None:
        n = self.int()
        if n == -1:
            return None  # NA_STRING
        raw = bytes(self._take(n))
        if levels & _LATIN1_MASK:
            return raw.decode("latin-1")
        return raw.decode("utf-8", errors="replace")

    def _string_vec(self) -> list[str | None]:
        if self.int() != 0:
            raise ValueError("A persistent-name string vector in the R stream is malformed.")
        return [self.item() for _ in range(self.int())]  # type: ignore[misc]

    def _vector(self, kind: int) -> RVector:
        if kind == STRSXP:
            return RVector((self.item() for _ in range(self.length())), rtype="character")
        if kind in (VECSXP, EXPRSXP):
            return RVector(
                (self.item() for _ in range(self.length())), rtype="list" if kind == VECSXP else "expression"
            )
        if kind in (INTSXP, LGLSXP):
            n = self.length()
            ints = struct.unpack(f">{n}i", self._take(4 * n))
            if kind == LGLSXP:
                return RVector((None if v == NA_INTEGER else bool(v) for v in ints), rtype="logical")
            return RVector((None if v == NA_INTEGER else v for v in ints), rtype="integer")
        if kind == REALSXP:
            n = self.length()
            reals = struct.unpack(f">{n}d", self._take(8 * n))
            return RVector((None if math.isnan(v) and _is_na_real(v) else v for v in reals), rtype="double")
        if kind == CPLXSXP:
            n = self.length()
            parts = struct.unpack(f">{2 * n}d", self._take(16 * n))
            return RVector((complex(parts[2 * i], parts[2 * i + 1]) for i in range(n)), rtype="complex")
        if kind == RAWSXP:
            return RVector(bytes(self._take(self.length())), rtype="raw")
        name = _TYPE_NAMES.get(kind, f"type {kind}")
        raise ValueError(f"The R object contains a {name} (SEXP type {kind}), which this reader does not support.")

    def _pairlist(self, flags: int) -> RVector:
        """A pairlist (or call) as an RVector with tags as names; CDR chains are walked iteratively."""
        kind = flags & 0xFF
        values: list[object] = []
        tags: list[str | None] = []
        attributes: dict[str, object] = {}
        while True:
            if flags & (1 << 9):
                attributes.update(self._attributes())
            tag = self.item() if flags & (1 << 10) else None
            tags.append(tag.name if isinstance(tag, RSymbol) else None)
            values.append(self.item())
            flags = self.int()
            if (flags & 0xFF) not in (LISTSXP, LANGSXP, DOTSXP):
                break
        self.pos -= 4  # the CDR that ends the chain is an ordinary item (almost always NILVALUE)
        tail = self.item()
        if tail is not None:
            values.append(tail)
            tags.append(None)
        if any(tags):
            attributes["names"] = RVector(tags, rtype="character")
        return RVector(values, attributes, "call" if kind == LANGSXP else "pairlist")

    def _attributes(self) -> dict[str, object]:
        attrs = self.item()
        if isinstance(attrs, RVector):
            return attrs.as_dict()
        return {}

    def _altrep(self) -> RVector:
        info = self.item()
        state = self.item()
        attributes = self.item()
        cls = info[0].name if isinstance(info, RVector) and info and isinstance(info[0], RSymbol) else "?"
        if cls in ("compact_intseq", "compact_realseq") and isinstance(state, RVector) and len(state) == 3:
            n, start, step = state
            values = (start + i * step for i in range(int(n)))
            value = RVector(
                (int(v) for v in values) if cls == "compact_intseq" else values,
                rtype="integer" if cls == "compact_intseq" else "double",
            )
        elif cls.startswith("wrap_") and isinstance(state, RVector) and state:
            inner = state[0]
            value = RVector(inner, dict(getattr(inner, "attributes", {})), getattr(inner, "rtype", "list"))
        elif cls == "deferred_string" and isinstance(state, RVector) and state:
            source = state[0]
            value = RVector((None if v is None else _deparse_number(v) for v in source), rtype="character")
        else:
            raise ValueError(f"The R object uses the ALTREP class {cls!r}, which this reader does not support.")
        if isinstance(attributes, RVector):
            value.attributes.update(attributes.as_dict())
        return value


def _is_na_real(value: float) -> bool:
    """R's NA_real_ is a NaN with low word 1954; plain NaN stays a float NaN."""
    return struct.pack(">d", value)[4:] == b"\x00\x00\x07\xa2"


def _deparse_number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def unserialize(data: bytes) -> object:
    """Decode one XDR R serialization (as written by `serialize()` / inside RDS and .rdb files)."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def read_rds_bytes(raw: bytes) -> object:
    """Decode an RDS file's bytes: gzip, bzip2, xz or uncompressed, like `readRDS()` accepts."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    elif raw[:3] == b"BZh":
        raw = bz2.decompress(raw)
    elif raw[:6] == b"\xfd7zXZ\x00":
        raw = lzma.decompress(raw)
    elif raw[:2] != b"X\n" and len(raw) > 4:
        # Some writers (R's own lazy-load blobs) use a 4-byte length followed by a zlib stream.
        try:
            raw = zlib.decompress(raw[4:])
        except zlib.error:
            pass
    return unserialize(raw)


def _decompress_blob(blob: bytes, method: int) -> bytes:
    """Undo R's lazy-load compression (R_decompress1/2/3 in serialize.c) for one .rdb blob."""
    if len(blob) < 4:
        raise ValueError("A lazy-load database blob is shorter than its 4-byte length header.")
    expected = struct.unpack(">I", blob[:4])[0]
    if method == 0:
        data = blob[4:]
    elif method == 1:
        data = zlib.decompress(blob[4:])
    else:
        kind, body = blob[4:5], blob[5:]
        if kind == b"0":
            data = body
        elif kind == b"1":
            data = zlib.decompress(body)
        elif kind == b"2":
            data = bz2.decompress(body)
        elif kind == b"Z":
            filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
            data = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(body)
        else:
            raise ValueError(f"A lazy-load database blob uses the unknown compression type {kind!r}.")
    if len(data) != expected:
        raise ValueError(f"A lazy-load database blob decompressed to {len(data)} bytes instead of {expected}.")
    return data


def _compression_method(flag: object) -> int:
    value = flag[0] if isinstance(flag, list) and flag else flag
    if value is True:
        return 1
    if value in (False, None):
        return 0
    return int(value)  # type: ignore[arg-type]


def read_lazyload_db(prefix: Path, names: Iterable[str] | None = None) -> dict[str, object]:
    """Values from the lazy-load DB `prefix.rdx` + `prefix.rdb` (all of them, or just `names`)."""
    index_path, blob_path = prefix.with_name(prefix.name + ".rdx"), prefix.with_name(prefix.name + ".rdb")
    if not index_path.is_file() or not blob_path.is_file():
        raise FileNotFoundError(f"No R lazy-load database at {prefix} (.rdx and .rdb are both needed).")
    index = read_rds_bytes(index_path.read_bytes())
    if not isinstance(index, RVector):
        raise ValueError(f"{index_path.name} does not hold a lazy-load index list.")
    fields = index.as_dict()
    variables = fields.get("variables")
    if not isinstance(variables, RVector):
        raise ValueError(f"{index_path.name} has no `variables` entry, so it is not a lazy-load index.")
    method = _compression_method(fields.get("compressed", True))
    wanted = set(names) if names is not None else None
    result: dict[str, object] = {}
    with blob_path.open("rb") as handle:
        for name, key in variables.as_dict().items():
            if wanted is not None and name not in wanted:
                continue
            offset, size = (int(v) for v in key)  # type: ignore[union-attr]
            handle.seek(offset)
            blob = handle.read(size)
            if len(blob) != size:
                raise ValueError(f"{blob_path.name} is truncated: {name} needs bytes {offset}-{offset + size}.")
            result[name] = unserialize(_decompress_blob(blob, method))
    if wanted is not None and wanted - result.keys():
        missing = ", ".join(sorted(wanted - result.keys()))
        raise KeyError(f"The lazy-load database {prefix.name} has no variable named {missing}.")
    return result


def read_rdata(folder: Path, names: Iterable[str] | None = None) -> dict[str, object]:
    """The data sets of an R package, e.g. `{"emma": [...lines...], ...}`.

    `folder` may be the package folder, its `data/` folder (holding `Rdata.rdx`), its `R/` folder,
    or a database prefix such as `.../R/pkg` (without extension)."""
    folder = Path(folder)
    candidates = [folder / "Rdata", folder / "data" / "Rdata", folder]
    if folder.is_dir():
        candidates += [folder / folder.name, folder / "R" / folder.name]
        if folder.name == "R":
            candidates += [folder / folder.parent.name]
    for prefix in candidates:
        if prefix.with_name(prefix.name + ".rdx").is_file():
            return read_lazyload_db(prefix, names)
    raise FileNotFoundError(f"No R lazy-load database (Rdata.rdx/.rdb) was found in {folder}.")
