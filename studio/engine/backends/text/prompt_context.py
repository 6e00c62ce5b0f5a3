"""The exact prompt a text job sends its model, built where the tokenizer lives.

A job gives either a finished prompt or a story (a document before its cursor, with memory,
author's note and world info). Both go through studio.writing.prompt's assembly, measured by the
model's own tokenizer: memory and world info are kept, the oldest story text is trimmed first,
at a clean boundary. In instruct mode the result is wrapped in the model's chat template (memory
and world info as the system message, the story as the user's), and the template's own tokens
are paid for out of the story's budget.

The ContextResult says what went where, so the context viewer shows exactly what the model saw.
Shared by every text backend (the fake one included); no ML library is imported here."""

from __future__ import annotations

from typing import Callable, Optional, Union

from studio.core.errors import DocumentError, SpecError
from studio.core.events import ContextResult
from studio.core.jobs import ContextJob, TextJob
from studio.core.story import StoryContext
from studio.writing.prompt import MEMORY, WORLD_INFO, Assembled, assemble_story

CountTokens = Callable[[str], int]
Chat = Callable[[str, str], str]  # (system message or "", user message) -> the templated prompt
TEMPLATE = "template"
HEAD_ROLES = (MEMORY, WORLD_INFO)
FIT_ROUNDS = 4  # instruct mode: re-assemble at most this often to pay for the template's tokens


def story_of(spec: Union[TextJob, ContextJob]) -> StoryContext:
    """The job's story; a plain prompt is a story with nothing beside it."""
    return spec.story if spec.story is not None else StoryContext(text=spec.prompt)


def build_context(
    spec: Union[TextJob, ContextJob], count_tokens: CountTokens, context_length: int, chat: Optional[Chat] = None
) -> ContextResult:
    """The prompt for `spec` within `context_length` tokens, leaving room for its new tokens.

    `chat` is given in instruct mode; `count_tokens` counts a prompt as it will be encoded (with
    the tokenizer's special tokens in raw mode, without them once a template has added its own).
    Raises DocumentError (a sentence) when memory and notes alone leave no room for the story."""
    story, max_new = story_of(spec), spec.max_new_tokens
    if chat is None:
        assembled = assemble_story(story, count_tokens, context_length, max_new)
        return _result(
            assembled.prompt,
            tuple((p.role, p.start, p.end) for p in assembled.parts),
            assembled,
            count_tokens,
            context_length,
            max_new,
        )
    budget = context_length - max_new
    overhead = count_tokens(chat("", ""))
    for _ in range(FIT_ROUNDS):
        assembled = assemble_story(story, count_tokens, max(context_length - overhead, max_new + 1), max_new)
        prompt, parts = _templated(assembled, chat)
        tokens = count_tokens(prompt)
        if tokens <= budget:
            break
        overhead += tokens - budget  # the template cost more than it did empty: make room and retry
    else:
        # A template whose cost keeps growing with its content: better a sentence than a prompt
        # whose start (the template's own header) the model's window would cut off.
        raise DocumentError(
            f"The model's chat template makes the prompt {tokens} tokens, more than the "
            f"{budget} its {context_length}-token context leaves; shorten the memory and "
            "notes, lower max new tokens, or turn instruct mode off."
        )
    return _result(prompt, parts, assembled, count_tokens, context_length, max_new, tokens)


def fit_window(ids: list[int], max_new_tokens: int, window: int) -> list[int]:
    """The end of a prompt's ids that fits the model's window with its new tokens. The assembly
    above already fits; this is the backends' safety net for what the tokenizer did after it."""
    if len(ids) + max_new_tokens <= window:
        return ids
    if max_new_tokens >= window:
        raise SpecError("max_new_tokens", f"is {max_new_tokens}; this model sees at most {window} tokens.")
    return ids[-(window - max_new_tokens) :]


def _result(
    prompt: str,
    parts: tuple,
    assembled: Assembled,
    count_tokens: CountTokens,
    context_length: int,
    max_new: int,
    tokens: Optional[int] = None,
) -> ContextResult:
    return ContextResult(
        prompt=prompt,
        parts=parts,
        tokens=assembled.tokens if tokens is None else tokens,
        context_length=context_length,
        max_new_tokens=max_new,
        trimmed_chars=assembled.trimmed_chars,
        world_info=assembled.world_info,
    )


def _templated(assembled: Assembled, chat: Chat) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """The assembled prompt in the chat template, and its parts: memory and world info inside the
    system message, the story and note inside the user's, the template's text around them."""
    head = [p for p in assembled.parts if p.role in HEAD_ROLES]
    body = [p for p in assembled.parts if p.role not in HEAD_ROLES]
    system = "".join(assembled.text_of(p) for p in head)
    user = "".join(assembled.text_of(p) for p in body)
    prompt = chat(system, user)

    parts: list[tuple[str, int, int]] = []
    searched_from = 0
    for section, content in ((head, system), (body, user)):
        if not content:
            continue
        placed = _find(prompt, content, searched_from)
        if placed is None:
            continue  # the template rewrote the text: shown as the template's
        at, lead, length = placed
        base = section[0].start
        for p in section:
            start = at + min(max(p.start - base - lead, 0), length)
            end = at + min(max(p.end - base - lead, 0), length)
            if end > start:
                parts.append((p.role, start, end))
        searched_from = at + length
    return prompt, _fill(parts, len(prompt))


def _find(prompt: str, content: str, start: int) -> Optional[tuple[int, int, int]]:
    """Where `content` landed in the templated prompt: (position, characters trimmed from its
    front, length), trying it as is, then stripped (most templates trim messages)."""
    at = prompt.find(content, start)
    if at >= 0:
        return at, 0, len(content)
    stripped = content.strip()
    at = prompt.find(stripped, start) if stripped else -1
    if at >= 0:
        return at, len(content) - len(content.lstrip()), len(stripped)
    return None


def _fill(parts: list[tuple[str, int, int]], length: int) -> tuple[tuple[str, int, int], ...]:
    """The parts with the gaps between them (and around them) given to the template."""
    out, at = [], 0
    for role, start, end in parts:
        if start > at:
            out.append((TEMPLATE, at, start))
        out.append((role, start, end))
        at = end
    if at < length:
        out.append((TEMPLATE, at, length))
    return tuple(out)
