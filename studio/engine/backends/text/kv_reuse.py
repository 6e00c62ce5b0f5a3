"""What a new prompt can take from a KV cache that holds the tokens of an earlier one: shared by
the text backends that keep their cache between jobs (transformers_text, llama_cpp_text).

- the longest common prefix: exact, since a token's keys and values depend only on the tokens
  before it;
- a context shift (KoboldCpp's ContextShift), when prompt assembly trimmed the oldest story: after
  the common prefix (memory, world info) the prompt goes on with a run of the cached story further
  on, once the dropped tokens are removed and the run moved back. The story's cut retokenises its
  first word ("␣Day" mid-text, "Day" after the memory's newline), so a few new tokens may come
  between the prefix and the run. The run's entries were computed attending to the dropped tokens,
  so this is close to, not equal to, a fresh read; backends shift only for a trimmed story (after
  an edit inside it, the text after the edit would keep traces of what the writer deleted).

numpy is imported inside the functions."""

from __future__ import annotations

from typing import Optional

SHIFT_SLACK = 8  # new tokens that may come between the kept prefix and the kept run
SHIFT_MIN_KEPT = 16  # a shorter kept run is re-read: it saves little, and it read dropped tokens


def common_prefix(a: list[int], b: list[int]) -> int:
    import numpy as np

    n = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if differ.size else n


def shift_plan(cached: list[int], prompt: list[int], prefix: int) -> Optional[tuple[int, int, int]]:
    """(fed, start, kept) for a context shift, or None: the prompt goes on after the common prefix
    with `fed` new tokens (at most SHIFT_SLACK), then with cached[start:start+kept], start past
    prefix + fed (at least one cached token dropped). The longest kept run wins, then the fewest
    new tokens; at least SHIFT_MIN_KEPT kept."""
    import numpy as np

    c, q = np.asarray(cached), np.asarray(prompt)
    best: Optional[tuple[int, int, int]] = None
    for fed in range(SHIFT_SLACK + 1):
        at = prefix + fed
        if len(q) - at < SHIFT_MIN_KEPT or len(c) - (at + 1) < SHIFT_MIN_KEPT:
            break
        # Runs that begin with the prompt's next SHIFT_MIN_KEPT tokens, vectorised; then each one's length.
        windows = np.lib.stride_tricks.sliding_window_view(c[at + 1 :], SHIFT_MIN_KEPT)
        starts = np.flatnonzero((windows == q[at : at + SHIFT_MIN_KEPT]).all(axis=1)) + at + 1
        for start in starts.tolist():
            n = min(len(c) - start, len(q) - at)
            same = c[start : start + n] == q[at : at + n]
            kept = n if same.all() else int(same.argmin())
            if best is None or kept > best[2]:
                best = (fed, start, kept)
    return best
