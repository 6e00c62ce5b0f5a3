"""The bounds of job spec fields, declared once beside each field and checked by one validator.

A field is declared as `name: type = checked(rule, default)`. `check_fields(spec)` has every
field's rule check its value, in declaration order, and raises SpecError naming the field in one
sentence; a rule also takes values in (`take`, run when a spec is built): JSON gives lists and
callers pass numpy arrays, and a spec keeps tuples of plain numbers, so it compares, hashes and
serialises one way whatever it came from. What a rule cannot take in is kept as it is, for its
check to refuse with a sentence.

Checks between fields (a mask needs an init image) stay with the spec, after these."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional

from studio.core.errors import SpecError, check_unicode, shown

_RULE = "studio.job_fields.rule"  # the key of a field's rule in its dataclass metadata


class Rule:
    """How one field's value is taken in and checked."""

    def take(self, value: Any) -> Any:
        """`value` as the spec keeps it."""
        return value

    def check(self, name: str, value: Any) -> None:
        """SpecError naming `name` when `value` is out of bounds."""


def checked(rule: Rule, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value `rule` takes in and checks (no default: a required field)."""
    return dataclasses.field(default=default, metadata={_RULE: rule})


@functools.cache
def _rules(spec_type: type) -> tuple[tuple[str, Rule], ...]:
    return tuple((f.name, f.metadata[_RULE]) for f in dataclasses.fields(spec_type) if _RULE in f.metadata)


def field_rules(spec_type: type) -> dict[str, Rule]:
    """{field name: its rule} of a spec type, for the fields that declare one."""
    return dict(_rules(spec_type))


def take_fields(spec: Any) -> None:
    """Replace each field of a frozen dataclass by what its rule takes it in as."""
    for name, rule in _rules(type(spec)):
        value = getattr(spec, name)
        taken = rule.take(value)
        if taken is not value:
            object.__setattr__(spec, name, taken)


def check_fields(spec: Any) -> None:
    """SpecError for the first field, in declaration order, that its rule refuses."""
    for name, rule in _rules(type(spec)):
        rule.check(name, getattr(spec, name))


def fits(spec_type: type, name: str, value: Any) -> bool:
    """Whether `value` is within the bounds of `spec_type`'s field `name`: a value read from a
    file (a model's suggested steps) is used only then."""
    try:
        field_rules(spec_type)[name].check(name, value)
    except SpecError:
        return False
    return True


# --- single values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Named(Rule):
    """A non-empty text naming something; `sentence` says what it must name."""

    sentence: str
    strip: bool = True  # blank ("  ") names nothing; a file path may keep its spaces (strip=False)

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or not (value.strip() if self.strip else value):
            raise SpecError(name, self.sentence)


@dataclass(frozen=True)
class Text(Rule):
    """Any text, empty included. `sentence` may quote the wrong value as {value}."""

    sentence: str = "must be text."
    valid_unicode: bool = False  # refuse a lone surrogate: a tokenizer cannot take one

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str):
            raise SpecError(name, self.sentence.format(value=shown(value)))
        if self.valid_unicode:
            check_unicode(name, value)


@dataclass(frozen=True)
class Flag(Rule):
    """True or false (not 0 or 1: JSON keeps the two apart, and so does a spec)."""

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise SpecError(name, f"must be true or false, not {shown(value)}.")


@dataclass(frozen=True)
class Whole(Rule):
    """A whole number from `lo` to `hi`, and a multiple of `multiple_of`."""

    lo: int
    hi: int
    multiple_of: int = 1

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(name, f"must be a whole number, not {shown(value)}.")
        if not self.lo <= value <= self.hi:
            raise SpecError(name, f"must be between {self.lo} and {self.hi}, not {shown(value)}.")
        if value % self.multiple_of:
            raise SpecError(name, f"must be divisible by {self.multiple_of}, not {value}.")


@dataclass(frozen=True)
class Number(Rule):
    """A finite number from `lo` to `hi` (an int too)."""

    lo: float
    hi: float

    def check(self, name: str, value: Any) -> None:
        # An int is checked as it is: math.isfinite would overflow on one too large for a float.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise SpecError(name, f"must be a number, not {shown(value)}.")
        if not self.lo <= value <= self.hi:
            raise SpecError(name, f"must be between {self.lo} and {self.hi}, not {shown(value)}.")


@dataclass(frozen=True)
class Choice(Rule):
    """One of `choices`, or "" when `blank_ok` (the model's own, say)."""

    choices: tuple[str, ...]
    blank_ok: bool = False

    def check(self, name: str, value: Any) -> None:
        if self.blank_ok and isinstance(value, str) and not value:
            return
        if value not in self.choices:
            raise SpecError(name, f"must be one of {', '.join(self.choices)}, not {shown(value)}.")


@dataclass(frozen=True)
class Nested(Rule):
    """None, or a `kind` that validates itself (its own SpecError names this field)."""

    kind: type
    sentence: str  # for a value of another type

    def check(self, name: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, self.kind):
            raise SpecError(name, self.sentence)
        value.validate()


@dataclass(frozen=True)
class Phrase(Rule):
    """An item of a list of texts: non-empty (after stripping, with `strip`), at most `longest` characters."""

    longest: int
    strip: bool = False
    valid_unicode: bool = False

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or not (value.strip() if self.strip else value) or len(value) > self.longest:
            raise SpecError(
                name, f"must hold non-empty texts of at most {self.longest} characters, not {shown(value)}."
            )
        if self.valid_unicode:
            check_unicode(name, value)


@dataclass(frozen=True)
class WeightedPath(Rule):
    """An item of a list of [path, weight] pairs (a LoRA and how strongly it applies)."""

    weight: Number

    def take(self, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    def check(self, name: str, value: Any) -> None:
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and value[0]):
            raise SpecError(name, f"must hold [path, weight] pairs, not {shown(value)}.")
        self.weight.check(name, value[1])


# --- lists ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed(Rule):
    """A list of `least` to `most` items, each checked by `each` (its errors name this field).

    The size sentence counts `noun`s; `wrong_type`, when given, is said instead to a value that
    is no list at all."""

    most: int
    noun: str
    each: Optional[Rule] = None
    least: int = 0
    wrong_type: str = ""

    def take(self, value: Any) -> Any:
        listed = value.tolist() if hasattr(value, "tolist") else value  # a numpy array
        if not isinstance(listed, (list, tuple)):
            return value
        return tuple(self.each.take(item) for item in listed) if self.each else tuple(listed)

    def check(self, name: str, value: Any) -> None:
        if self.wrong_type and not isinstance(value, tuple):
            raise SpecError(name, self.wrong_type)
        if not isinstance(value, tuple) or not self.least <= len(value) <= self.most:
            size = f"{self.least} to {self.most}" if self.least else f"at most {self.most}"
            raise SpecError(name, f"must be a list of {size} {self.noun}.")
        if self.each:
            for item in value:
                self.each.check(name, item)


@dataclass(frozen=True)
class Vectors(Listed):
    """A list of latent vectors: numbers, finite, every vector the same length."""

    noun: str = "latent vectors"

    def take(self, value: Any) -> Any:
        return plain_rows(value)

    def check(self, name: str, value: Any) -> None:
        super().check(name, value)
        if value:
            sizes = {len(r) if isinstance(r, tuple) else -1 for r in value}
            if len(sizes) != 1 or sizes == {0} or sizes == {-1}:
                raise SpecError(name, "must be vectors of numbers, all the same length.")
            _check_finite(name, (v for r in value for v in r))


@dataclass(frozen=True)
class Vector(Rule):
    """One latent vector: a non-empty tuple of finite numbers."""

    def take(self, value: Any) -> Any:
        values = value.tolist() if hasattr(value, "tolist") else value  # numpy floats from the sliders
        if not isinstance(values, (list, tuple)):
            return value
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            return tuple(plain_float(v) for v in values)
        return tuple(values)

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, tuple) or not value:
            raise SpecError(name, "must be a non-empty tuple of numbers.")
        _check_finite(name, value)


def _check_finite(name: str, values: Any) -> None:
    if not all(isinstance(v, float) and math.isfinite(v) for v in values):
        raise SpecError(name, "must hold only finite numbers.")


def plain_rows(rows: Any) -> Any:
    """Latent vectors (lists, tuples or numpy arrays) as a tuple of tuples of floats; what cannot
    be converted is returned as it is, for the check to refuse with a sentence."""
    rows = rows.tolist() if hasattr(rows, "tolist") else rows
    if isinstance(rows, (list, tuple)):
        # A numpy scalar has tolist() too, and gives a float: one flat vector is not rows.
        rows = [r.tolist() if hasattr(r, "tolist") else r for r in rows]
        if all(isinstance(r, (list, tuple)) for r in rows):
            return tuple(tuple(plain_float(v) for v in r) for r in rows)
    return rows


def plain_float(value: Any) -> Any:
    """A real number as a float (one too large for a float stays as it is, to be refused)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return value
    return value
