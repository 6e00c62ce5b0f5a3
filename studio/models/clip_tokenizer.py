"""The CLIP tokenizer every Stable Diffusion text encoder uses, built from the merges we ship.

CLIP's vocabulary is fully determined by its BPE merges: the 256 byte characters (GPT-2's
reversible byte -> printable character table), the same 256 with the end-of-word mark "</w>",
one token per merge (the two halves joined), then <|startoftext|> and <|endoftext|>: 49408 ids in
all. So the studio ships only `studio/resources/clip-tokenizer/merges.txt` (derived from the MIT-licensed
`bpe_simple_vocab_16e6.txt.gz` in the open_clip_torch wheel; see the README beside it) and builds
the vocabulary when a model loads, never from the network.

    python -m studio.models.clip_tokenizer derive WHEEL_OR_GZ OUTDIR

rewrites OUTDIR/merges.txt from an open_clip_torch wheel (or the .txt.gz inside it).

Only the standard library is imported at module level; transformers loads inside `load_clip_tokenizer`."""

from __future__ import annotations

import gzip
import hashlib
import sys
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from studio.core.errors import ModelFileError
from studio.models.paths import RESOURCES_DIR

TOKENIZER_DIR = RESOURCES_DIR / "clip-tokenizer"
MERGES_FILE = TOKENIZER_DIR / "merges.txt"
BPE_MEMBER = "bpe_simple_vocab_16e6.txt.gz"
HEADER = "#version: 0.2"
VOCAB_SIZE = 49408
N_MERGES = VOCAB_SIZE - 256 - 256 - 2  # 48894: CLIP's 49152 - 256 - 2 merge lines
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
# The pad token differs by text encoder: SD 1.x pads with <|endoftext|>; SD 2.x and SDXL's
# second (OpenCLIP) encoder pad with "!" (id 0), as their tokenizers on the Hub do.
PAD_SD1 = EOS
PAD_OPENCLIP = "!"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (printable bytes map to themselves,
    the rest to code points from 256 up, in byte order)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}  # insertion order is vocabulary order: printable first
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def read_merges(path: Path = MERGES_FILE) -> list[tuple[str, str]]:
    """The merge pairs from an HF-format merges.txt ("#version" header, one "a b" pair a line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelFileError(
            f"The CLIP tokenizer data {path} cannot be read ({exc.strerror or exc}); reinstall the studio."
        ) from None
    pairs = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    if len(pairs) != N_MERGES or any(len(p) != 2 for p in pairs):
        raise ModelFileError(
            f"The CLIP tokenizer data {path} is damaged ({len(pairs)} merges, expected "
            f"{N_MERGES}); reinstall the studio."
        )
    return pairs  # type: ignore[return-value]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's token -> id table from its merges alone."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelFileError("The CLIP tokenizer merges give duplicate tokens; reinstall the studio.")
    return vocab


@lru_cache(maxsize=2)
def _vocab_and_merges(path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    merges = read_merges(Path(path))
    return build_vocab(merges), merges


def load_clip_tokenizer(
    pad_token: str = PAD_SD1, max_length: int = MAX_LENGTH, merges_file: Optional[Path] = None
) -> Any:
    """A transformers CLIPTokenizer (the tokenizers-backed one) with CLIP's real 49408-token
    vocabulary, built from the shipped merges: no file besides merges.txt, no network."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges(str(merges_file or MERGES_FILE))
    if pad_token not in vocab:
        raise ModelFileError(f"The CLIP tokenizer has no pad token {pad_token!r}; check the tokenizer_config.json.")
    return CLIPTokenizer(
        vocab=dict(vocab),
        # transformers annotates merges as strings; the tokenizers BPE it feeds them to takes these pairs.
        merges=list(merges),  # pyright: ignore[reportArgumentType]
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=max_length,
    )


# ---------------------------------------------------------------------------------------------
# Deriving merges.txt from the open_clip_torch wheel
# ---------------------------------------------------------------------------------------------


def _read_bpe_gz(source: Path) -> tuple[bytes, str]:
    """The gzipped BPE file's bytes and a note of where they came from (a wheel or the .gz itself)."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            names = [n for n in wheel.namelist() if n.endswith("/" + BPE_MEMBER) or n == BPE_MEMBER]
            if not names:
                raise SystemExit(f"{source} holds no {BPE_MEMBER}.")
            return wheel.read(names[0]), f"{source.name}!{names[0]}"
    return source.read_bytes(), source.name


def derive(source: Path, outdir: Path) -> Path:
    """Write outdir/merges.txt: the first 48894 merges of CLIP's BPE file, in HF's merges.txt format."""
    raw, where = _read_bpe_gz(source)
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = lines[1 : 1 + N_MERGES]  # line 0 is the file's own header
    if len(merges) != N_MERGES or any(len(m.split(" ")) != 2 for m in merges):
        raise SystemExit(f"{where} does not look like CLIP's BPE merges.")
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / "merges.txt"
    out.write_text(HEADER + "\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(
        f"{out}: {N_MERGES} merges from {where} (gz sha256 {hashlib.sha256(raw).hexdigest()}, "
        f"merges.txt sha256 {hashlib.sha256(out.read_bytes()).hexdigest()})"
    )
    return out


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "derive":
        print("usage: python -m studio.models.clip_tokenizer derive WHEEL_OR_GZ OUTDIR", file=sys.stderr)
        return 2
    derive(Path(args[1]), Path(args[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
