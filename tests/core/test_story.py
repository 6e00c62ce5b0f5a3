"""A text job that continues a document carries its story: validated, and the same after JSON."""

import pytest

from studio.core.errors import SpecError
from studio.core.jobs import ContextJob, TextJob, spec_from_json
from studio.core.story import MAX_KEYS, StoryContext, WorldInfoEntry


def story(**kw) -> StoryContext:
    base = dict(
        text="She opened the door",
        memory="Mara is a captain.",
        authors_note="Tense.",
        authors_note_depth=40,
        world_info=(WorldInfoEntry(("door", "Door"), "The door is red.", True),),
    )
    return StoryContext(**{**base, **kw})


def test_a_story_job_round_trips_through_json():
    job = TextJob(model="prose", story=story(), instruct=True, seed=3)
    job.validate()
    again = spec_from_json(job.to_json())
    assert again == job and isinstance(again.story.world_info[0], WorldInfoEntry)
    context = ContextJob.of(job)
    assert spec_from_json(context.to_json()) == context


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(authors_note_depth=-1), "authors_note_depth"),
        (dict(memory=5), "memory"),
        (dict(world_info=(WorldInfoEntry(tuple(str(i) for i in range(MAX_KEYS + 1)), "x"),)), "entry 1"),
        (dict(world_info=(WorldInfoEntry(("k",), "x", enabled="yes"),)), "entry 1"),
        (dict(world_info=("not an entry",)), "entry 1"),
    ],
)
def test_a_bad_story_is_refused_naming_the_field_and_the_part(bad, words):
    with pytest.raises(SpecError) as error:
        TextJob(model="prose", story=story(**bad)).validate()
    assert error.value.field == "story" and words in error.value.message


def test_a_prompt_and_a_story_together_are_refused():
    with pytest.raises(SpecError) as error:
        TextJob(model="prose", prompt="Hello", story=story()).validate()
    assert error.value.field == "prompt"


def test_a_malformed_story_in_json_is_one_sentence():
    job = TextJob(model="prose", story=story())
    text = job.to_json().replace('"memory"', '"memoir"')
    with pytest.raises(SpecError) as error:
        spec_from_json(text)
    assert error.value.field == "story"
