"""A model's chat template rendered in a locked-down Jinja sandbox, for the writer's instruct mode.

Chat templates come from model folders, which come from strangers, so a template is treated as
hostile code:

- It runs in jinja2's ImmutableSandboxedEnvironment: no `_`-prefixed attribute, no function or
  type internals, no mutation of lists or dicts, `str.format` sandboxed, `range()` capped.
- There is no loader, and `{% include %}`, `{% import %}`, `{% from %}` and `{% extends %}` are
  refused before anything runs; `lipsum`, `urlize` and `pprint` are taken away (no template
  needs them and they amplify).
- Resources are bounded: the template's length, the rendered text (counted chunk by chunk as
  `Template.generate()` yields it), every string or list it builds (concatenation, `*`, `+`, `%`,
  slices, method and filter results, macro and `{% set %}` block buffers), the text it builds in
  all, loop iterations (every `{% for %}`, recursive loops too), integer sizes and wall-clock time.
  Amplifying calls (`center`, `ljust`, `replace`, `join`, `format`, `indent`, `wordwrap`,
  `batch`, `to_bytes`...) are sized before they run, so a template cannot ask Python for a
  gigabyte in one expression. The time limit is checked between calls, so no single call may run
  long either: `wordwrap`, the one filter whose time grows faster than its text, is costed first.

Every failure becomes a StudioError: ModelFileError (one sentence naming what the template did)
when the template is at fault, SpecError when the messages are (including a template's own
`raise_exception`). No ML library and no Qt is imported here."""

from __future__ import annotations

import datetime
import functools
import json
import re
import string
import time
import types
from collections.abc import ItemsView, KeysView, Mapping, Set, ValuesView
from typing import Any, Callable, Iterable, Iterator, Optional

from studio.core.errors import ModelFileError, SpecError, StudioError, first_line
from studio.models.formats import MAX_CHAT_TEMPLATE_CHARS, find_chat_template

__all__ = ["render_chat", "find_chat_template", "MAX_TEMPLATE_CHARS", "MAX_OUTPUT_CHARS"]

MAX_TEMPLATE_CHARS = MAX_CHAT_TEMPLATE_CHARS
MAX_OUTPUT_CHARS = 1_000_000  # the rendered prompt; also the cap on any one string or list built
MAX_WORK_CHARS = 50_000_000  # text (and list items) a render may build in all, intermediates included
MAX_LOOP_STEPS = 1_000_000  # for-loop iterations in all
MAX_INT_BITS = 10_000
MAX_RENDER_SECONDS = 5.0
MAX_MESSAGE_DEPTH = 32
MAX_JSON_INDENT = 16
# textwrap (behind `wordwrap`) cuts a run longer than the width (a word, or a stretch of spaces) by
# copying the rest of the run again for every line it makes: time grows as run² / width, and 200,000
# spaces at width 1 take seconds that nothing interrupts. Bounded to about a tenth of a second.
MAX_WRAP_WORK = 1_000_000_000

_STEPS = "_studio_loop_steps"  # internal filters the compiled template is rewired through
_CONCAT = "_studio_concat"
_COUNT = "_studio_count"
# Filters whose value is used as a collection or a number, not turned into text as a whole.
_COLLECTION_FILTERS = frozenset(
    {
        "abs",
        "attr",
        "batch",
        "count",
        "d",
        "default",
        "dictsort",
        "first",
        "float",
        "groupby",
        "int",
        "items",
        "last",
        "length",
        "list",
        "map",
        "max",
        "min",
        "random",
        "reject",
        "rejectattr",
        "reverse",
        "round",
        "select",
        "selectattr",
        "slice",
        "sort",
        "sum",
        "unique",
    }
)
_DROPPED_FILTERS = ("urlize", "pprint")
_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_ATTRIBUTE = re.compile(r"attribute '([^']*)'")
_NON_SPACE = re.compile(r"\S+")


class _Refused(Exception):
    """A limit or rule the template broke; `reason` completes "The model's chat template ..."."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _TemplateRaised(Exception):
    """The template called raise_exception(message)."""


def instruct_chat(template: Optional[str], bos_token: str, eos_token: str) -> Callable[[str, str], str]:
    """(system message or "", user message) -> the prompt in a model's chat template, rendered in
    the sandbox: what instruct mode sends the model. SpecError naming `instruct` when the model has
    no template."""
    if not template:
        raise SpecError(
            "instruct",
            "is on, but this model has no chat template; turn instruct mode off to continue the text as it is.",
        )

    def chat(system: str, user: str) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return render_chat(template, messages, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=True)

    return chat


def render_chat(
    template: str, messages: list[dict], *, bos_token: str = "", eos_token: str = "", add_generation_prompt: bool = True
) -> str:
    """`messages` ([{"role": ..., "content": ...}, ...]) in a model's chat template, rendered in a
    sandbox with the variables transformers gives templates (messages, bos_token, eos_token,
    add_generation_prompt, tools=None, documents=None).

    Raises ModelFileError when the template is broken, unsafe or runs past a limit, and SpecError
    when the messages are malformed or the template refuses them (raise_exception)."""
    if not isinstance(template, str):
        raise ModelFileError("The model's chat template is not text; instruct mode cannot use it.")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ModelFileError(
            f"The model's chat template is {len(template):,} characters long, more than the "
            f"{MAX_TEMPLATE_CHARS:,} allowed; instruct mode cannot use it."
        )
    for name, value in (("bos_token", bos_token), ("eos_token", eos_token)):
        if not isinstance(value, str):
            raise SpecError(name, f"should be text, not {type(value).__name__}.")
    plain = _plain_messages(messages)
    guard = _Guard()
    try:
        env = _environment(guard)
        compiled = env.from_string(_instrument(env, template))
        stream = compiled.generate(
            messages=plain,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=bool(add_generation_prompt),
            tools=None,
            documents=None,
        )
        try:
            parts, total = [], 0
            for chunk in stream:
                total += len(chunk)
                if total > MAX_OUTPUT_CHARS:
                    raise _Refused(f"writes more than {MAX_OUTPUT_CHARS:,} characters")
                parts.append(chunk)
                guard.tick()
        finally:
            stream.close()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
        raise _studio_error(exc) from None
    return "".join(parts)


# --- messages -------------------------------------------------------------------------------------


def _plain_messages(messages: Any) -> list[dict]:
    """A JSON-like copy of the messages (text, numbers, lists and dicts only), so the template sees
    no object of ours; SpecError naming what is wrong otherwise."""
    if not isinstance(messages, (list, tuple)):
        raise SpecError("messages", f"should be a list of {{'role', 'content'}} dicts, not {type(messages).__name__}.")
    if not messages:
        raise SpecError("messages", "is empty; give at least one message.")
    plain = [_plain(m, 0) for m in messages]
    for index, message in enumerate(plain):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not message["role"]:
            raise SpecError("messages", f"item {index} should be a dict with a text 'role'.")
    size = _text_size(plain)
    if size > MAX_OUTPUT_CHARS:
        raise SpecError(
            "messages",
            f"hold about {size:,} characters, more than the {MAX_OUTPUT_CHARS:,} "
            "instruct mode formats; shorten the text.",
        )
    return plain


def _plain(value: Any, depth: int) -> Any:
    if depth > MAX_MESSAGE_DEPTH:
        raise SpecError("messages", f"are nested more than {MAX_MESSAGE_DEPTH} levels deep.")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise SpecError("messages", "hold a dict with a key that is not text.")
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    raise SpecError(
        "messages", f"hold a {type(value).__name__}; messages may hold only text, numbers, lists and dicts."
    )


def _text_size(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """About how many characters str(value) takes, counted no further than just past `limit`."""
    if isinstance(value, str):
        return len(value)
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item) + 3
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, range):
            total += 40
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, Set, KeysView, ValuesView, ItemsView)):  # a dict's views too
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:  # floats, undefined, cyclers, namespaces (short repr), generators: a short repr
            total += 64
    return total


# --- the guard: per-render limits -----------------------------------------------------------------


class _Guard:
    """One render's budget: time, loop steps and the text built."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.steps = 0
        self.work = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Refused(f"takes longer than {MAX_RENDER_SECONDS:g} seconds to render")

    def loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Iterate `iterable`, counting each step against the render's budget."""
        for item in iterable:
            self.steps += 1
            if self.steps > MAX_LOOP_STEPS:
                raise _Refused(f"loops more than {MAX_LOOP_STEPS:,} times")
            if self.steps % 1024 == 0:
                self.tick()
            yield item

    def allow(self, size: int) -> None:
        """Refuse before building a value of `size` characters or items."""
        if size > MAX_OUTPUT_CHARS:
            raise _Refused(f"builds a value longer than {MAX_OUTPUT_CHARS:,} characters")

    def spend(self, size: int) -> None:
        self.allow(size)
        self.work += size
        if self.work > MAX_WORK_CHARS:
            raise _Refused(f"builds more than {MAX_WORK_CHARS:,} characters of text in all")

    def result(self, value: Any) -> Any:
        """Count a value just built against the budget; return it."""
        if isinstance(value, (str, bytes, list, tuple, dict, Set)):
            self.spend(len(value))
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
            raise _Refused(f"computes a number of more than {MAX_INT_BITS:,} bits")
        return value

    def concat(self, parts: Iterable[Any]) -> str:
        """Join a macro's, block's or `{% set %}` block's output, refusing one that grows too long."""
        parts = list(parts)
        self.spend(sum(len(p) for p in parts))
        self.tick()
        return "".join(parts)

    def finalize(self, value: Any) -> Any:
        """Every `{{ expression }}`, sized (a non-text value before Jinja turns it into text), so
        what macro and `{% set %}` buffers hold is bounded too."""
        self.spend(_text_size(value))
        return value


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _check_width(guard: _Guard, width: Any) -> None:
    if isinstance(width, int):
        guard.allow(width)


def _replace_size(text: Any, old: Any, new: Any, count: Any) -> int:
    if type(old) is not type(new):
        return 0  # the call itself will refuse the types
    if isinstance(text, str) and isinstance(old, type(text)):
        hits = text.count(old) if old else len(text) + 1
    elif isinstance(text, bytes) and isinstance(old, type(text)):
        hits = text.count(old) if old else len(text) + 1
    else:
        return 0  # as above
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _check_percent(guard: _Guard, fmt: str, values: Any) -> None:
    """`fmt % values` (and the `format` filter): no `*` or huge widths, and the values that each
    directive may repeat sized."""
    directives = 0
    for match in _PERCENT.finditer(fmt):
        if match.group(3) == "%":
            continue
        directives += 1
        for number in match.group(1, 2):
            if number == "*":
                raise _Refused("uses a `*` width in a % format, which is not allowed")
            if number:
                guard.allow(int(number))
    items = (
        list(values.values())
        if isinstance(values, Mapping)
        else list(values)
        if isinstance(values, tuple)
        else [values]
    )
    largest = max((_text_size(v) for v in items), default=0)
    guard.allow(len(fmt) + directives * largest)


def _check_format(guard: _Guard, fmt: str, args: tuple, kwargs: dict) -> None:
    """`fmt.format(...)`/`format_map`: no nested or huge widths, and the result sized up front."""
    fields = 0
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # the call itself will refuse it
    for _literal, field, spec, _conversion in parsed:
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise _Refused("uses a nested field in a format width, which is not allowed")
        for number in re.findall(r"\d+", spec or ""):
            guard.allow(int(number))
    values = list(args) + list(kwargs.values())
    for value in list(values):
        if isinstance(value, Mapping):  # format_map's mapping
            values.extend(value.values())
    largest = max((_text_size(v) for v in values), default=0)
    guard.allow(len(fmt) + fields * largest)


def _check_method(guard: _Guard, method: Any, args: tuple, kwargs: dict) -> tuple:
    """Size a call of an amplifying str/bytes/int method before it runs; may return the
    arguments with an iterable made into a list (join)."""
    inner = getattr(method, "__wrapped__", method)  # the sandbox wraps str.format
    if not isinstance(inner, (types.BuiltinMethodType, types.MethodType)):
        return args
    owner, name = getattr(inner, "__self__", None), getattr(inner, "__name__", "")
    if isinstance(owner, int) and name == "to_bytes":
        _check_width(guard, _arg(args, kwargs, 0, "length", 1))
    if not isinstance(owner, (str, bytes)):
        return args
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width(guard, _arg(args, kwargs, 0, "width"))
    elif name == "expandtabs":
        tabsize = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(tabsize, int):
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            guard.allow(len(owner) + tabs * tabsize)
    elif name == "replace":
        guard.allow(
            _replace_size(
                owner, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), _arg(args, kwargs, 2, "count", -1)
            )
        )
    elif name == "join" and args:
        items = list(guard.loop(args[0]))
        guard.allow(sum(_text_size(i) for i in items) + len(owner) * max(0, len(items) - 1))
        args = (items,) + tuple(args[1:])
    elif name == "translate" and isinstance(owner, str) and args:
        table = args[0]
        targets = table.values() if isinstance(table, Mapping) else table if isinstance(table, (list, tuple)) else ""
        if not isinstance(table, (Mapping, list, tuple, str)):
            raise _Refused("calls `translate` with a table that is not a dict, list or text")
        longest = max((len(v) for v in targets if isinstance(v, str)), default=1)
        guard.allow(len(owner) * max(1, longest))
    elif name in ("format", "format_map") and isinstance(owner, str):
        _check_format(guard, owner, args, kwargs)
    return args


def _check_filter(guard: _Guard, name: str, value: Any, rest: tuple, kwargs: dict) -> Any:
    """Size a filter call before it runs; may return the value made into a list (join, sum)."""
    if name not in _COLLECTION_FILTERS and name != "join":
        guard.allow(_text_size(value))
    if name == "join":
        items = value if isinstance(value, (str, list, tuple)) else list(guard.loop(value))
        sep = _arg(rest, kwargs, 0, "d", "")
        guard.allow(sum(_text_size(i) for i in items) + _text_size(sep) * max(0, len(items) - 1))
        return items
    if name == "sum" and not isinstance(_arg(rest, kwargs, 1, "start", 0), (int, float)):
        items = list(guard.loop(value))
        guard.allow(_text_size(items))
        return items
    if name == "center":
        _check_width(guard, _arg(rest, kwargs, 0, "width", 80))
    elif name == "indent":
        width = _arg(rest, kwargs, 0, "width", 4)
        size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        lines = value.count("\n") + 1 if isinstance(value, str) else 1
        guard.allow(_text_size(value) + lines * size)
    elif name == "wordwrap":
        _check_wordwrap(guard, value, rest, kwargs)
    elif name == "replace":
        guard.allow(
            _replace_size(
                value, _arg(rest, kwargs, 0, "old"), _arg(rest, kwargs, 1, "new"), _arg(rest, kwargs, 2, "count")
            )
        )
    elif name == "format" and isinstance(value, str):
        _check_percent(guard, value, kwargs or tuple(rest))
    elif name in ("batch", "slice"):
        _check_width(guard, _arg(rest, kwargs, 0, "linecount" if name == "batch" else "slices"))
    return value


def _check_wordwrap(guard: _Guard, text: Any, rest: tuple, kwargs: dict) -> None:
    """`wordwrap`'s text and output sized, and its time costed (MAX_WRAP_WORK), before it runs."""
    width = _arg(rest, kwargs, 0, "width", 79)
    wrap = _arg(rest, kwargs, 2, "wrapstring") or "\n"
    if (
        not isinstance(text, str)
        or isinstance(width, bool)
        or not isinstance(width, int)
        or width < 1
        or not isinstance(wrap, str)
    ):
        return  # the filter itself refuses these
    lines = len(text) // width + text.count("\n") + 1
    guard.allow(len(text) + lines * len(wrap))
    longest = max(max(map(len, text.split()), default=0), max(map(len, _NON_SPACE.split(text)), default=0))
    if longest * longest // width > MAX_WRAP_WORK:
        raise _Refused(
            f"wraps a run of {longest:,} characters at width {width} with `wordwrap`, which would take too long"
        )


def _guarded_filter(guard: _Guard, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    value_at = 0 if getattr(func, "jinja_pass_arg", None) is None else 1  # after context/environment

    @functools.wraps(func)  # keeps jinja_pass_arg, so Jinja still passes what the filter asks for
    def guarded(*args: Any, **kwargs: Any) -> Any:
        guard.tick()
        if len(args) > value_at:
            value = _check_filter(guard, name, args[value_at], args[value_at + 1 :], kwargs)
            args = args[:value_at] + (value,) + args[value_at + 1 :]
        return guard.result(func(*args, **kwargs))

    return guarded


# --- the environment ------------------------------------------------------------------------------


def _environment(guard: _Guard) -> Any:
    """A fresh sandbox for one render (its guard is that render's budget)."""
    import jinja2.ext
    from jinja2.exceptions import SecurityError
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import Namespace

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            guard.tick()
            sized = (str, bytes, list, tuple)
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if isinstance(seq, sized) and isinstance(times, int):
                        guard.allow(len(seq) * max(times, 0))
                if isinstance(left, int) and isinstance(right, int):
                    if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                        raise _Refused(f"computes a number of more than {MAX_INT_BITS:,} bits")
            elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(left.bit_length() - 1, 1) * right > MAX_INT_BITS:
                    raise _Refused(f"computes a number of more than {MAX_INT_BITS:,} bits")
            elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
                guard.allow(len(left) + len(right))
            elif operator == "%" and isinstance(left, str):
                _check_percent(guard, left, right)
            return guard.result(super().call_binop(context, operator, left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            guard.tick()
            if isinstance(__obj, LoopContext) and args:  # a recursive loop's loop(children)
                args = (guard.loop(args[0]),) + args[1:]
            else:
                args = _check_method(guard, __obj, args, kwargs)
            return guard.result(super().call(__context, __obj, *args, **kwargs))

        def concat(self, parts: Iterable[Any]) -> str:  # type: ignore[override]
            return guard.concat(parts)

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            # Jinja hands back an undefined that prints as nothing; reaching for it at all refuses
            # the template instead, so a probe fails loudly rather than quietly.
            raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    class ShortNamespace(Namespace):
        def __repr__(self) -> str:  # Jinja's repr shows every attribute: a way to print a lot at once
            return "<namespace>"

    env = Sandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
        autoescape=False,
        finalize=guard.finalize,
    )
    env.globals.pop("lipsum", None)
    env.globals.update(namespace=ShortNamespace, raise_exception=_raise_exception, strftime_now=_strftime_now)
    for name in _DROPPED_FILTERS:
        env.filters.pop(name, None)
    env.filters["tojson"] = _tojson
    env.filters = {name: _guarded_filter(guard, name, f) for name, f in env.filters.items()}
    env.filters[_STEPS] = guard.loop
    env.filters[_COUNT] = guard.result
    env.filters[_CONCAT] = lambda values: guard.concat([str(v) for v in _sized(guard, values)])
    return env


def _sized(guard: _Guard, values: list) -> list:
    guard.allow(sum(_text_size(v) for v in values))
    return values


def _instrument(env: Any, source: str) -> Any:
    """The template's syntax tree with every loop counted and every `~` sized, and with any
    attempt to load another template refused before anything runs."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    class Instrument(NodeTransformer):
        def visit_For(self, node: nodes.For) -> nodes.Node:
            self.generic_visit(node)  # in place (it returns the same node)
            node.iter = nodes.Filter(node.iter, _STEPS, [], [], None, None, lineno=node.lineno)
            return node

        def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
            self.generic_visit(node)
            if not isinstance(node.arg, nodes.Slice) or node.ctx != "load":
                return node  # Jinja compiles slices to plain Python, past the sandbox's getitem
            return nodes.Filter(node, _COUNT, [], [], None, None, lineno=node.lineno)

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            operands = nodes.List(node.nodes, lineno=node.lineno)
            return nodes.Filter(operands, _CONCAT, [], [], None, None, lineno=node.lineno)

        def refuse(self, node: nodes.Node) -> nodes.Node:
            tag = {"FromImport": "from", "Include": "include", "Import": "import", "Extends": "extends"}
            raise _Refused(
                f"tries to load another template (`{{% {tag[type(node).__name__]} %}}` on line "
                f"{node.lineno}), which is not allowed"
            )

        visit_Include = visit_Import = visit_FromImport = visit_Extends = refuse

    tree = Instrument().visit(env.parse(source))
    tree.set_environment(env)
    return tree


def _raise_exception(message: Any = "") -> None:
    raise _TemplateRaised(str(message))


def _strftime_now(fmt: Any = "%Y-%m-%d") -> str:
    """Today's date (no time of day), as templates that print it expect."""
    if not isinstance(fmt, str) or len(fmt) > 100:
        raise _Refused("asks for a date in a format longer than 100 characters")
    return datetime.date.today().strftime(fmt)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
) -> str:
    """JSON as transformers' templates expect it: not HTML-escaped, non-ASCII kept."""
    if not (
        indent is None
        or (isinstance(indent, int) and 0 <= indent <= MAX_JSON_INDENT)
        or (isinstance(indent, str) and len(indent) <= MAX_JSON_INDENT)
    ):
        raise _Refused(f"asks tojson for an indent over {MAX_JSON_INDENT}")
    if separators is not None and not (
        isinstance(separators, (list, tuple))
        and len(separators) == 2
        and all(isinstance(s, str) and len(s) <= 8 for s in separators)
    ):
        raise _Refused("asks tojson for separators other than two short strings")
    return json.dumps(
        value,
        ensure_ascii=bool(ensure_ascii),
        indent=indent,
        separators=tuple(separators) if separators else None,
        sort_keys=bool(sort_keys),
    )


# --- errors ---------------------------------------------------------------------------------------


def _studio_error(exc: BaseException) -> StudioError:
    from jinja2.exceptions import SecurityError, TemplateSyntaxError

    if isinstance(exc, StudioError):
        return exc
    if isinstance(exc, _TemplateRaised):
        reason = first_line(exc) if str(exc).strip() else "no reason given"
        return SpecError("messages", f"were refused by the model's chat template: {reason}")
    if isinstance(exc, _Refused):
        what = exc.reason
    elif isinstance(exc, SecurityError):
        found = _ATTRIBUTE.search(str(exc))
        what = (
            f"tried to reach `{found.group(1)}`, which is not allowed"
            if found
            else f"tried something the sandbox does not allow ({first_line(exc)})"
        )
    elif isinstance(exc, TemplateSyntaxError):
        what = f"has an error on line {exc.lineno} ({first_line(exc.message or exc)})"
    elif isinstance(exc, RecursionError):
        what = "recurses too deeply"
    elif isinstance(exc, MemoryError):
        what = "needs more memory than there is"
    else:
        line = _template_line(exc)
        where = f" on line {line}" if line else ""
        what = f"failed{where} ({type(exc).__name__}: {first_line(exc)})"
    return ModelFileError(f"The model's chat template {what}; instruct mode cannot use it.")


def _template_line(exc: BaseException) -> Optional[int]:
    """The template line an error was raised on, from the traceback Jinja rewrites to point at it."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
