"""The prompt a text job sends, built on the engine: plain prompts, stories, and instruct mode's
chat template, with every part placed where the context viewer will colour it."""

import pytest

from studio.core.errors import DocumentError
from studio.core.jobs import TextJob
from studio.core.story import StoryContext, WorldInfoEntry
from studio.engine.backends.text.prompt_context import build_context


def words(text: str) -> int:
    return len(text.split())


def chat(system: str, user: str) -> str:
    head = f"<s>[SYS] {system.strip()} [/SYS]\n" if system else "<s>"
    return f"{head}[USER] {user.strip()} [/USER]\n[BOT]"


def job(**kw) -> TextJob:
    return TextJob(**{"model": "m", "max_new_tokens": 10, **kw})


def tiles(context) -> bool:
    return "".join(context.prompt[s:e] for _, s, e in context.parts) == context.prompt and all(
        e > s for _, s, e in context.parts
    )


def test_a_plain_prompt_that_fits_is_sent_as_it_is():
    context = build_context(job(prompt="The quiet river ran"), words, 100)
    assert context.prompt == "The quiet river ran" and context.parts == (("story", 0, 19),)
    assert (context.tokens, context.trimmed_chars) == (4, 0)


def test_a_long_story_keeps_memory_and_loses_its_oldest_words():
    text = " ".join(f"w{i}" for i in range(200))
    entry = WorldInfoEntry(("w199",), "Lore about the last word.")
    context = build_context(job(story=StoryContext(text, memory="Keep me.", world_info=(entry,))), words, 60)
    assert context.tokens <= 50 and tiles(context)
    assert context.prompt.startswith("Keep me.\nLore about the last word.\n")
    assert context.prompt.endswith("w199") and context.trimmed_chars > 0
    assert [r for r, *_ in context.parts] == ["memory", "world_info", "story"]


def test_instruct_mode_wraps_the_parts_and_pays_for_the_template():
    text = " ".join(f"w{i}" for i in range(200))
    context = build_context(
        job(story=StoryContext(text, memory="Be brief.", authors_note="Calm.", authors_note_depth=5), instruct=True),
        words,
        60,
        chat,
    )
    assert context.prompt.startswith("<s>[SYS] Be brief. [/SYS]\n[USER] ") and context.prompt.endswith("[/USER]\n[BOT]")
    assert words(context.prompt) == context.tokens <= 50  # the template's words came out of the story's share
    assert tiles(context)
    roles = [r for r, *_ in context.parts]
    assert roles[0] == "template" and roles[-1] == "template"
    assert {"memory", "story", "authors_note"} <= set(roles)
    shown = {r: context.prompt[s:e] for r, s, e in context.parts if r in ("memory", "authors_note")}
    assert shown == {"memory": "Be brief.", "authors_note": "Calm.\n"}


def test_memory_too_long_for_the_window_is_one_sentence():
    with pytest.raises(DocumentError, match="Memory, world info and the author's note take"):
        build_context(job(story=StoryContext("Hi", memory="word " * 100)), words, 50)


def test_a_template_that_never_fits_is_a_sentence_not_a_cut_off_prompt():
    def greedy(system: str, user: str) -> str:  # costs 100 words more as soon as there is a request
        return "<s> " + ("pad " * 100 if user else "") + user

    story = StoryContext(" ".join(f"w{i}" for i in range(200)))
    with pytest.raises(DocumentError, match="chat template makes the prompt"):
        build_context(job(story=story, instruct=True), words, 60, greedy)
