"""What the fuzz tests share: the case count, the values no input should be trusted with, and
ways to break a JSON text.

Each fuzz test runs FUZZ_EXAMPLES cases. Huge values are built once, here, by repetition, and
drawn like any other value, so a case costs what the code under test spends on it, not what
building the input costs."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = 10_000

fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # a hang is caught by the test's timeout; one slow case is not a failure
    # The same 10 000 cases on every run: CI passes or fails on the code, not on the draw.
    # (HYPOTHESIS_SEED or a local edit explores further; a new find becomes an @example.)
    derandomize=True,
    # Huge values are the point here, and some strategies reject many draws by design.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)

MB = 1024 * 1024
HUGE_TEXT = "lorem ipsum, " * (MB // 13 + 1)  # a little over 1 MB
HUGE_NUMBER = 10**5000  # past Python's 4300-digit limit: it cannot even be printed
BIG_NUMBER = 10**400  # printable, but no float can hold it

# Values no field should be trusted with: extremes of every type, and the wrong types.
EXTREMES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1,
        2**31,
        2**32 - 1,
        2**32,
        2**53 + 1,
        2**63,
        2**64,
        -(2**64),
        BIG_NUMBER,
        -BIG_NUMBER,
        HUGE_NUMBER,
        -HUGE_NUMBER,
        0.0,
        -0.0,
        0.5,
        1e-300,
        5e-324,
        1e308,
        -1e308,
        float("nan"),
        float("inf"),
        -float("inf"),
        "",
        " ",
        "\x00",
        "\ud800",
        "\u202e",
        "NaN",
        "1",
        "-1",
        "true",
        "null",
        "🐱" * 50,
        HUGE_TEXT,
        [],
        {},
        [1, 2],
        [[1.0]],
        ["a", 1.0],
        [None],
        {"a": 1},
        {"": None},
        [float("nan")],
        list(range(300)),
        ["x"] * 300,
        [[0.5] * 4] * 300,
    ]
)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from([HUGE_NUMBER, BIG_NUMBER, HUGE_TEXT])
)
WILD = EXTREMES | _scalars | st.lists(_scalars, max_size=4) | st.dictionaries(st.text(max_size=8), _scalars, max_size=3)

# Any JSON document's value: what an untrusted file can hold once parsed (huge texts are added
# where they are wanted: packing a megabyte in every case would cost more than reading it).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from([BIG_NUMBER, -BIG_NUMBER, ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
# How a JSON text gets broken: (name, function of (text, position) -> text).
BREAKAGES = {
    "whole": lambda text, at: text,
    "cut short": lambda text, at: text[: at % (len(text) + 1)],
    "junk inside": lambda text, at: text[: at % (len(text) + 1)] + '\x00}]"{' + text[at % (len(text) + 1) :],
    "trailing junk": lambda text, at: text + "}",
    "huge number": lambda text, at: _NUMBER.sub("9" * 5000, text, count=1),
    "float past the range": lambda text, at: _NUMBER.sub("1e999", text, count=1),
    "NaN": lambda text, at: _NUMBER.sub("NaN", text, count=1),
    "Infinity": lambda text, at: _NUMBER.sub("-Infinity", text, count=1),
    "deep nesting": lambda text, at: "[" * 100_000 + text + "]" * 100_000,
    "not UTF-8": lambda text, at: text.replace('"', "\udcff", 1),
    "BOM": lambda text, at: "\ufeff" + text,
}
BREAK = st.sampled_from(sorted(BREAKAGES))


def dumps(value) -> str:
    """JSON text of a value the way a careless writer would make it (NaN allowed). A number past
    the 4300-digit limit cannot be written by json.dumps, so its digits are put in by hand."""
    try:
        return json.dumps(value)
    except ValueError:
        pass
    return json.dumps(_marked(value)).replace('"\\u0000huge"', "9" * 5000).replace('"\\u0000-huge"', "-" + "9" * 5000)


def _marked(value):
    # Any int json.dumps cannot write (Hypothesis shrinks HUGE_NUMBER to others) is written as a
    # 5000-digit number: the studio sees the same kind of value either way.
    if isinstance(value, int) and not isinstance(value, bool) and not _writable(value):
        return "\x00huge" if value > 0 else "\x00-huge"
    if isinstance(value, (list, tuple)):
        return [_marked(v) for v in value]
    if isinstance(value, dict):
        return {k: _marked(v) for k, v in value.items()}
    return value


def _writable(number: int) -> bool:
    try:
        str(number)
    except ValueError:
        return False
    return True


def one_sentence(message: str, most: int = 400) -> bool:
    """A message a person can read: one line, ends with a full stop, not a flood of text."""
    return message.endswith(".") and "\n" not in message and 0 < len(message) <= most
