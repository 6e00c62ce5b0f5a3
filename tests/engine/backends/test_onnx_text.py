"""The ONNX Runtime text backend on tiny random GPT-2 and Llama models exported with their KV
cache, through the Runner: streaming, the same tokens as torch, seeds, cancel, stop tokens and
stop sequences, and broken exports refused in one sentence."""

import dataclasses
import json
import shutil

import pytest
import torch

from studio.bench.tiny_models import build_tiny_gpt2, build_tiny_llama
from studio.core.events import Cancelled, ContextUsed, RunInfo, Started, Token
from studio.core.jobs import ContextJob, TextJob
from studio.core.story import StoryContext
from studio.engine.export.onnx_export import export_onnx
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import finished, one_sentence_failure, run, tokens


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-text")
    build_tiny_gpt2(root / "tiny-gpt2")
    build_tiny_llama(root / "tiny-llama")
    registry = ModelRegistry([(root, "user")])
    for name in ("tiny-gpt2", "tiny-llama"):
        assert export_onnx(registry.resolve(name), root / f"{name}-onnx", lambda line: None).ok
    # A graph with other inputs than a language model's.
    from onnx import TensorProto, helper

    shutil.copytree(root / "tiny-gpt2-onnx", root / "wrong-inputs")
    node = helper.make_node("Identity", ["x"], ["logits"])
    graph = helper.make_graph(
        [node],
        "wrong",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])],
    )
    wrong = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    wrong.ir_version = 10
    (root / "wrong-inputs" / "model.onnx").write_bytes(wrong.SerializeToString())
    # A graph cut short by an interrupted copy.
    shutil.copytree(root / "tiny-gpt2-onnx", root / "truncated")
    graph_file = root / "truncated" / "model.onnx"
    graph_file.write_bytes(graph_file.read_bytes()[:5000])
    for name in ("wrong-inputs", "truncated"):  # not exports of tiny-gpt2: models of their own
        (root / name / "studio.json").unlink()
    return root


@pytest.fixture(scope="module")
def runner(models):
    return Runner(ModelRegistry([(models, "user")]))


def spec(**kw):
    base = dict(model="tiny-gpt2", runtime="onnx", prompt="The quiet river", max_new_tokens=16, seed=1, temperature=0.8)
    return TextJob(**{**base, **kw})


def test_tokens_stream_before_the_result_and_say_where_they_ran(runner):
    events = run(runner, spec(temperature=1.0))
    result = finished(events)
    streamed = tokens(events)
    assert isinstance(events[0], Started) and isinstance(events[1], ContextUsed)
    assert all(isinstance(e, Token) for e in events[2:-1]) and len(streamed) == 16
    assert "".join(t.text for t in streamed) == result.text
    assert tuple(t.token_id for t in streamed) == result.token_ids and result.info.tokens == 16
    assert (result.info.runtime, result.info.provider, result.info.device) == ("onnx", "CPU", "cpu")
    for event in streamed:
        probs = [p for _, p in event.alternatives]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_greedy_text_is_torchs_token_for_token(runner, model):
    job = spec(model=model, prompt="She wrote letters", temperature=0.0, max_new_tokens=40)
    ours, theirs = finished(run(runner, job)), finished(run(runner, dataclasses.replace(job, runtime="torch")))
    assert ours.token_ids == theirs.token_ids and ours.text == theirs.text
    assert theirs.info.runtime == "torch" and ours.info.runtime == "onnx"


def test_a_prompt_read_in_pieces_gives_the_same_tokens(runner, monkeypatch):
    """A long prompt is read PREFILL_CHUNK tokens at a time, each piece on the last one's cache."""
    from studio.engine.backends.text import onnx_text

    job = spec(
        model="tiny-llama",
        prompt="She wrote letters she never sent: to her brother, to the sea",
        temperature=0.0,
        max_new_tokens=20,
    )
    whole = finished(run(runner, job)).token_ids
    monkeypatch.setattr(onnx_text, "PREFILL_CHUNK", 5)
    assert finished(run(runner, job)).token_ids == whole


def test_every_sampler_draws_what_torch_draws(runner):
    """The chain and the draw are the torch backend's, on logits within ~1e-7 of torch's."""
    job = spec(
        model="tiny-llama",
        temperature=0.9,
        top_k=40,
        top_p=0.95,
        min_p=0.02,
        repetition_penalty=1.2,
        repetition_range=32,
        dry_multiplier=0.8,
        banned=("river",),
        max_new_tokens=32,
        seed=7,
    )
    ours, theirs = finished(run(runner, job)), finished(run(runner, dataclasses.replace(job, runtime="torch")))
    assert ours.token_ids == theirs.token_ids and "river" not in ours.text.lower()


def test_same_seed_same_text_other_seed_other_text_and_the_global_rng_is_left_alone(runner):
    state = torch.random.get_rng_state()
    first = finished(run(runner, spec(seed=5, max_new_tokens=24)))
    assert torch.equal(state, torch.random.get_rng_state())
    again = finished(run(runner, spec(seed=5, max_new_tokens=24)))
    other = finished(run(runner, spec(seed=6, max_new_tokens=24)))
    assert first.text == again.text and first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids


def test_the_export_runs_by_its_own_name_too(runner):
    assert (
        finished(run(runner, spec(model="tiny-gpt2-onnx", seed=5))).token_ids
        == finished(run(runner, spec(seed=5))).token_ids
    )


def test_cancel_after_the_first_token_stops_at_once(runner):
    def cancel(job, event):
        if isinstance(event, Token):
            job.cancel.set()

    events = run(runner, spec(max_new_tokens=30), cancel)
    assert isinstance(events[-1], Cancelled) and len(tokens(events)) == 1


def test_a_stop_sequence_cuts_the_text_before_it(runner):
    full = finished(run(runner, spec(temperature=0.0, max_new_tokens=30)))
    at = len(full.text) // 2
    stop = full.text[at : at + 3]
    cut = finished(run(runner, spec(temperature=0.0, max_new_tokens=30, stop=(stop,))))
    assert cut.text == full.text[: full.text.find(stop)] and len(cut.token_ids) < len(full.token_ids)


def test_a_stop_token_ends_the_text_without_showing_it(runner, models):
    """With a later greedy token made the model's end of text, the tokens before it come out."""
    full = finished(run(runner, spec(temperature=0.0, max_new_tokens=30))).token_ids
    at = next(i for i in range(1, len(full)) if full[i] not in full[:i])  # its first appearance
    folder = models / "stops-early"
    shutil.copytree(models / "tiny-gpt2-onnx", folder)
    (folder / "studio.json").unlink()
    config = json.loads((folder / "generation_config.json").read_text())
    config["eos_token_id"] = full[at]
    (folder / "generation_config.json").write_text(json.dumps(config))
    events = run(
        Runner(ModelRegistry([(models, "user")])), spec(model="stops-early", temperature=0.0, max_new_tokens=30)
    )
    assert finished(events).token_ids == full[:at] and len(tokens(events)) == at


def test_a_long_story_is_assembled_as_on_torch(runner):
    story = StoryContext(" ".join(f"Day {i}. The river rose." for i in range(60)), memory="A tale of Lune.")
    job = ContextJob.of(spec(prompt="", story=story))
    ours = finished(run(runner, job))
    theirs = finished(run(runner, dataclasses.replace(job, runtime="torch")))
    assert ours.trimmed_chars > 0 and ours.context_length == 128
    assert dataclasses.replace(ours, info=RunInfo()) == dataclasses.replace(theirs, info=RunInfo())


@pytest.mark.parametrize(
    "model, words",
    [
        ("wrong-inputs", ["model.onnx", "wrong-inputs", "lacks", "input_ids", "past_key_values.0.key"]),
        ("truncated", ["model.onnx", "copy it again"]),
    ],
)
def test_a_broken_export_fails_with_one_sentence(runner, model, words):
    one_sentence_failure(run(runner, spec(model=model)), "model file", words)
    assert finished(run(runner, spec())).text is not None
