"""The TextJob samplers that transformers' generate() lacks or gets differently: min-p after
temperature, XTC, repetition penalty over a range, DRY, banned phrases, and stop sequences on the text.

Each sampler is a plain logits processor, `(input_ids (batch, length), scores (batch, vocab)) ->
scores`, which generate() calls every step with the prompt plus everything generated so far. The
backend chains them in this order (llama.cpp's default chain puts the penalties first too):

    1. repetition penalty   raw logits, CTRL rule, over the last `repetition_range` tokens
    2. DRY                  raw logits, subtractive
    3. banned phrases       -inf (order does not matter for -inf: nothing brings a token back)
    4. temperature          logits / T
    5. top-k                keep the k best
    6. top-p                keep the smallest set whose probability reaches p
    7. min-p                keep p_i >= min_p * p_max, on the tempered, cut distribution
    8. XTC                  now and then, drop the likeliest tokens above a threshold but one
    9. the alternatives recorder, so it sees the distribution the token is drawn from

4-6 are transformers' own warpers in generate()'s own order, which this backend used before these
samplers existed (same spec + seed keeps giving the same text). Min-p and XTC follow them, as in
transformers' chain. llama.cpp's default chain is penalties, DRY, top-n-sigma, top-k, typical-p,
top-p, min-p, XTC, temperature (KoboldCpp's default order also puts temperature last), so their
min-p and XTC see the untempered distribution. Ours see the tempered one. For min-p the two map
exactly: tempered ratios are p_i/p_max = r**(1/T) for an untempered ratio r, so our min_p m at
temperature T keeps exactly what their min_p m**T keeps. XTC's threshold is an absolute
probability and has no such mapping: a temperature above 1 flattens the distribution, so fewer
tokens reach a given threshold here than there (below 1, more). With T = 1, or greedy decoding,
the chains agree exactly. Greedy (temperature 0) runs 1-3 and the recorder; argmax then picks from
what they left (min-p keeps the top token anyway, and XTC is a sampling device: off).

Stop sequences are not a logits processor: `StopText` watches the streamed text, holds back what
may be the start of one, and says when one is complete; the backend then ends generate().

Only the standard library at import; numpy and torch load inside the functions that use them."""

from __future__ import annotations

import bisect
import random
from typing import Any, Callable, Collection, Iterable, Optional, Sequence

DRY_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")  # KoboldCpp's and SillyTavern's defaults
DRY_MAX_MATCH = 50  # longest repeat DRY measures: a step costs at most O(context x 50); at the default
#                    base 1.75 a 50-token repeat already costs 1.75**48 ~ 5e11, far past removing a token
DRY_MAX_PENALTY = 1e9  # keeps the subtraction finite (a logit 1e9 down is gone anyway)


class StopSequenceReached(Exception):
    """Raised from the streamer when the generated text reaches a stop sequence: it ends generate()
    at once (no further forward pass) and the backend returns the text before it."""


# --------------------------------------------------------------------------------------------
# The vocabulary as text


class Vocabulary:
    """Each token's text as it reads in running text, and lookups over it (case-insensitive).

    `pieces[i]` is what token i adds to a text. Tokens whose bytes are an incomplete character
    (byte-fallback, byte-level pieces of a multi-byte character) read as U+FFFD here."""

    def __init__(self, pieces: Sequence[str]):
        self.pieces = list(pieces)
        lowered = [p.lower() for p in self.pieces]
        self._order = sorted(range(len(lowered)), key=lowered.__getitem__)
        self._sorted = [lowered[i] for i in self._order]
        self._lowered = lowered
        self._containing: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.pieces)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "Vocabulary":
        """Every token decoded after an ordinary anchor token, so a SentencePiece word-initial
        space survives (decoding a token alone drops it); one batched decode in the tokenizer."""
        options = dict(skip_special_tokens=True, clean_up_tokenization_spaces=False)
        anchor = tokenizer("x", add_special_tokens=False)["input_ids"][-1:]
        head = tokenizer.decode(anchor, **options)
        size = len(tokenizer)
        texts = tokenizer.batch_decode([anchor + [i] for i in range(size)], **options)
        pieces = []
        for i, text in enumerate(texts):
            pieces.append(text[len(head) :] if head and text.startswith(head) else tokenizer.decode([i], **options))
        return cls(pieces)

    def starting_with(self, text: str) -> list[int]:
        """Ids of the tokens whose (lower-cased) text starts with `text` (lower-case): a binary
        search over the sorted texts, so a step costs O(log V) per query."""
        lo = bisect.bisect_left(self._sorted, text)
        hi = bisect.bisect_left(self._sorted, text + "\U0010ffff", lo)
        return self._order[lo:hi]

    def containing(self, text: str) -> tuple[int, ...]:
        """Ids of the tokens whose (lower-cased) text contains `text`; one scan, then cached."""
        found = self._containing.get(text)
        if found is None:
            found = self._containing[text] = tuple(i for i, p in enumerate(self._lowered) if text in p)
        return found

    def containing_any(self, texts: Iterable[str]) -> set[int]:
        return {i for t in texts for i in self.containing(t.lower())}


# --------------------------------------------------------------------------------------------
# Logits processors


class RepetitionPenalty:
    """The CTRL / transformers rule over the last `last_n` tokens of prompt + generated (0: all):

        l_t -> l_t / penalty   if l_t > 0
        l_t -> l_t * penalty   if l_t <= 0        for every distinct token t in the window

    so penalty > 1 makes a seen token less likely whatever its sign. Each token is penalised once
    however often it occurs (gather the seen logits, transform, scatter back)."""

    def __init__(self, penalty: float, last_n: int = 0):
        self.penalty = float(penalty)
        self.last_n = int(last_n)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        window = input_ids[:, -self.last_n :] if self.last_n > 0 else input_ids
        seen = scores.gather(1, window)
        seen = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return scores.scatter(1, window, seen)


class DRYPenalty:
    """ "Don't Repeat Yourself" (text-generation-webui PR#5677, KoboldCpp, llama.cpp).

    For the context x[0..L-1] (the whole prompt + generated; TextJob has no DRY range): each earlier position i < L-1 with
    x[i] == x[L-1] ends an earlier occurrence of the context's end. Its match length is

        n(i) = the largest n <= min(cap, i + 1) with x[i-k] == x[L-1-k] for all 0 <= k < n
        cap  = min(DRY_MAX_MATCH, number of trailing tokens of x that are not sequence breakers)

    and the token that followed it, c = x[i+1], is the one that would extend the repeat. With
    N(c) = max n(i) over the occurrences followed by c, a candidate c that is not itself a breaker
    gets

        l_c -> l_c - multiplier * base ** (N(c) - allowed_length)     if N(c) >= allowed_length

    Sequence breakers stop a match: the context's end is only matched back to the last breaker
    (an earlier occurrence equal to that breaker-free end holds no breaker either), and no penalty
    is put on a breaker. Cost per step: one vectorised comparison per match length over the
    occurrences still matching, i.e. O(L * DRY_MAX_MATCH) in the worst case, O(L) typically."""

    def __init__(
        self,
        multiplier: float,
        base: float,
        allowed_length: int,
        breaker_ids: Collection[int],
        max_match: int = DRY_MAX_MATCH,
    ):
        import numpy as np

        self.multiplier, self.base, self.allowed = float(multiplier), float(base), int(allowed_length)
        self.max_match = int(max_match)
        size = max(breaker_ids, default=-1) + 1
        self._breaker = np.zeros(size, dtype=bool)
        self._breaker[list(breaker_ids)] = True

    def _breakers(self, x: Any) -> Any:
        import numpy as np

        mask = np.zeros(len(x), dtype=bool)
        known = x < len(self._breaker)
        mask[known] = self._breaker[x[known]]
        return mask

    def penalties(self, context: Any) -> dict[int, float]:
        """token id -> the amount DRY subtracts from its logit, for this context (ids)."""
        import numpy as np

        x = np.asarray(context, dtype=np.int64)
        length = len(x)
        if self.multiplier == 0 or length < 2:
            return {}
        breaker = self._breakers(x)
        if breaker[-1]:
            return {}
        marks = np.flatnonzero(breaker)
        free = length - 1 - int(marks[-1]) if marks.size else length
        cap = min(free, self.max_match)
        if cap < self.allowed:
            return {}
        ends = np.flatnonzero(x[:-1] == x[-1])  # earlier occurrences of the last token
        ends = ends[~breaker[ends + 1]]  # a breaker after it is never penalised
        if not ends.size:
            return {}
        n = np.ones(len(ends), dtype=np.int64)
        alive = np.arange(len(ends))
        for k in range(1, cap):
            pos = ends[alive] - k
            ok = pos >= 0
            alive, pos = alive[ok], pos[ok]
            alive = alive[x[pos] == x[length - 1 - k]]
            if not alive.size:
                break
            n[alive] += 1
        best: dict[int, int] = {}
        for token, m in zip(x[ends + 1].tolist(), n.tolist()):
            if m >= self.allowed and m > best.get(token, 0):
                best[token] = m
        return {t: min(self.multiplier * self.base ** (m - self.allowed), DRY_MAX_PENALTY) for t, m in best.items()}

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.clone()
        for row in range(input_ids.shape[0]):
            found = self.penalties(input_ids[row].cpu().numpy())
            found = {t: p for t, p in found.items() if t < scores.shape[-1]}
            if found:
                index = torch.tensor(list(found), device=scores.device)
                amount = torch.tensor(list(found.values()), device=scores.device, dtype=scores.dtype)
                scores[row, index] -= amount
        return scores


class BannedPhrases:
    """Words and phrases that must never appear in the text, whatever tokens would spell them.

    Two checks each step, on the context (prompt + generated, so a phrase begun at the end of the
    prompt cannot be completed either):

    - text: with `tail` = the lower-cased end of the context's text and P a lower-cased phrase of
      m characters, a candidate token whose text s would complete an occurrence of P is banned:
          s contains P                                          (the whole phrase in one token)
          tail ends with P[:j] and s starts with P[j:]          for 1 <= j < m
      This covers every tokenization, spaces and capitals included (matching is case-insensitive,
      and a phrase is matched anywhere, as a substring, like KoboldCpp's phrase ban).
    - tokens (NoBadWords-style): the tokenizer's own token sequences for each phrase with and
      without a leading space and with a capital or lower-case first letter; a sequence's last
      token is banned when the context's ids end with the rest. This catches what the text check
      cannot see: pieces of a multi-byte character that read as U+FFFD one by one.

    Banned tokens get -inf. Should every token be banned, the stop tokens are let through: the
    text ends rather than show the phrase."""

    def __init__(
        self,
        phrases: Iterable[str],
        vocabulary: Vocabulary,
        encode: Callable[[str], list[int]],
        decode: Callable[[list[int]], str],
        stop_ids: Collection[int] = (),
    ):
        self.vocabulary, self.decode, self.stop_ids = vocabulary, decode, tuple(stop_ids)
        phrases = [p for p in phrases if p]
        self.phrases = sorted({p.lower() for p in phrases})
        sequences: set[tuple[int, ...]] = set()
        for phrase in phrases:
            for form in {phrase, phrase[:1].upper() + phrase[1:], phrase[:1].lower() + phrase[1:]}:
                for text in (form, " " + form.lstrip(" ")):
                    ids = tuple(encode(text))
                    if ids:
                        sequences.add(ids)
        self.sequences = sorted(sequences)
        # A token adds at least one character except incomplete bytes (up to 4 per character).
        longest = max((len(p) for p in self.phrases), default=0)
        self.tail_tokens = 4 * longest + 4

    def banned_ids(self, context: Sequence[int]) -> set[int]:
        """The ids that may not come next after `context` (ids)."""
        context = list(context)
        tail = self.decode(context[-self.tail_tokens :]).lower() if context else ""
        banned: set[int] = set()
        vocab = self.vocabulary
        for phrase in self.phrases:
            banned.update(vocab.containing(phrase))
            for j in range(1, len(phrase)):
                if tail.endswith(phrase[:j]):
                    banned.update(vocab.starting_with(phrase[j:]))
        for seq in self.sequences:
            k = len(seq) - 1
            if k == 0 or (len(context) >= k and tuple(context[-k:]) == seq[:-1]):
                banned.add(seq[-1])
        return banned

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.clone()
        size = scores.shape[-1]
        for row in range(input_ids.shape[0]):
            banned = sorted(i for i in self.banned_ids(input_ids[row].tolist()) if i < size)
            if not banned:
                continue
            scores[row, torch.tensor(banned, device=scores.device)] = -float("inf")
            if len(banned) >= size:  # nothing left: end the text instead
                for stop in self.stop_ids:
                    if stop < size:
                        scores[row, stop] = 0.0
        return scores


class MinP:
    """Min-p: with p = softmax(scores), drop every token with p_i < min_p * max_j p_j.

    The top token always stays (min_p <= 1). Equivalent in logits to l_i < l_max + ln(min_p), but
    computed on probabilities as the definition reads."""

    def __init__(self, min_p: float):
        self.min_p = float(min_p)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        probs = scores.softmax(dim=-1)
        threshold = self.min_p * probs.amax(dim=-1, keepdim=True)
        return scores.masked_fill(probs < threshold, -float("inf"))


class XTC:
    """XTC, "exclude top choices" (text-generation-webui, KoboldCpp, llama.cpp): with
    probability `probability`, and only when at least two tokens have p_i >= `threshold`, every one
    of those is dropped except the least likely of them. The text then avoids its most obvious
    continuations while keeping one that is still likely enough, which breaks stock phrases.

    The coin comes from its own generator seeded with the job's seed (never torch's, whose stream
    draws the tokens), one draw per row and step whether or not it triggers, so the same seed gives
    the same coins and the same text. Like llama.cpp, no token is special-cased: a stop token or a
    newline above the threshold can be dropped too (text-generation-webui spares those two). Only
    tokens still in play count (p_i > 0: earlier cuts stay cut, even at threshold 0). Tokens tied
    at the least probability above the threshold all stay."""

    def __init__(self, threshold: float, probability: float, seed: int):
        self.threshold = float(threshold)
        self.probability = float(probability)
        self._coins = random.Random(seed)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        coins = [self._coins.random() for _ in range(scores.shape[0])]
        triggered = torch.tensor([c < self.probability for c in coins], device=scores.device)
        if not triggered.any():
            return scores
        probs = scores.softmax(dim=-1)
        above = (probs >= self.threshold) & (probs > 0)
        least = torch.where(above, probs, torch.ones_like(probs)).amin(dim=-1, keepdim=True)
        enough = above.sum(dim=-1, keepdim=True) >= 2
        remove = above & (probs > least) & enough & triggered[:, None]
        return scores.masked_fill(remove, -float("inf"))


# --------------------------------------------------------------------------------------------
# Stop sequences


class StopText:
    """Streams tokens' texts while holding back whatever may be the start of a stop sequence.

    `push(text, payload)` takes one token's text and returns the (text, payload) pairs that are now
    decided, in order; `stopped` turns True when the text reaches a stop sequence, and then the
    pairs returned end right before it: a token whose text straddles the stop sequence comes with
    its part before it, later tokens never come. Invariant: the text still held is the longest end
    of the generated text that is the start of some stop sequence (plus the rest of the token it
    begins in), so any occurrence of a stop sequence begins inside the held text and the shown
    text never has to be taken back. `flush()` returns what is still held once generation ends."""

    def __init__(self, stops: Iterable[str]):
        self.stops = tuple(s for s in stops if s)
        self._held: list[tuple[str, Any]] = []
        self.stopped = False

    def push(self, text: str, payload: Any = None) -> list[tuple[str, Any]]:
        if not self.stops:
            return [(text, payload)]
        self._held.append((text, payload))
        pending = "".join(t for t, _ in self._held)
        found = [i for i in (pending.find(s) for s in self.stops) if i >= 0]
        if found:
            cut, out, pos = min(found), [], 0
            for piece, data in self._held:
                if pos >= cut:
                    break
                out.append((piece[: cut - pos], data))
                pos += len(piece)
            self._held, self.stopped = [], True
            return out
        keep = self._undecided(pending)
        decided, out, pos = len(pending) - keep, [], 0
        while self._held and pos + len(self._held[0][0]) <= decided:
            piece, data = self._held.pop(0)
            out.append((piece, data))
            pos += len(piece)
        return out

    def _undecided(self, text: str) -> int:
        """Length of the longest end of `text` that is a proper start of some stop sequence."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best

    def flush(self) -> list[tuple[str, Any]]:
        out, self._held = self._held, []
        return out


def build_processors(
    spec: Any,
    vocabulary: Callable[[], Vocabulary],
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    stop_ids: Collection[int],
) -> list[Any]:
    """Steps 1-3 of the chain for a TextJob (those that also run greedy), in order. `vocabulary`
    is called only when a sampler needs the token texts (DRY, bans), so it can be built lazily."""
    processors: list[Any] = []
    if spec.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(spec.repetition_penalty, spec.repetition_range))
    if spec.dry_multiplier > 0:
        breakers = vocabulary().containing_any(DRY_SEQUENCE_BREAKERS)
        processors.append(DRYPenalty(spec.dry_multiplier, spec.dry_base, spec.dry_allowed_length, breakers))
    if spec.banned:
        processors.append(BannedPhrases(spec.banned, vocabulary(), encode, decode, stop_ids))
    return processors


def min_p_processor(spec: Any) -> Optional[MinP]:
    """Step 7, for sampling only (greedy always keeps the top token anyway)."""
    return MinP(spec.min_p) if spec.temperature > 0 and spec.min_p > 0 else None


def xtc_processor(spec: Any, seed: int) -> Optional[XTC]:
    """Step 8, for sampling only (greedy decoding has no coin to toss and always takes the top token)."""
    if spec.temperature > 0 and spec.xtc_probability > 0:
        return XTC(spec.xtc_threshold, spec.xtc_probability, seed)
    return None
