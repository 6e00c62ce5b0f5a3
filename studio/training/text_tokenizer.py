"""Byte-level BPE tokenizers for our language models (the prose model and the tiny test models).

Built with `tokenizers` and wrapped in transformers' PreTrainedTokenizerFast, which saves
tokenizer.json and loads back with AutoTokenizer offline. Every byte is in the vocabulary, so any
text encodes, and decoding gives back exactly the text that was encoded. `check_round_trip`
guards the transformers-5 trap of a tokenizer that loads silently empty."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

EOS = "<|endoftext|>"
ROUND_TRIP_SENTENCE = "The quiet river ran under a lantern moon, 42 times? Café 東京!"


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, model_max_length: int, min_frequency: int = 2):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )


def check_round_trip(folder: Path, sentence: str = ROUND_TRIP_SENTENCE) -> None:
    """Reload the tokenizer saved in `folder` and make sure a sentence encodes to something and
    decodes back exactly; RuntimeError otherwise."""
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    ids = reloaded(sentence, add_special_tokens=False)["input_ids"]
    if not ids or reloaded.decode(ids) != sentence:
        raise RuntimeError(f"the tokenizer in {folder} does not round-trip {sentence!r}")
