"""The `studio` command: the same engine as the window, without Qt.

Progress goes to stderr, results to files or stdout. Bad input exits 2 with one sentence; a job
that fails exits 1 with one sentence (the traceback is in the log file)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

from studio.cli_progress import StageProgress
from studio.core.errors import ErrorKind, StudioError, first_line
from studio.core.events import (
    Cancelled,
    ContextUsed,
    Event,
    Failed,
    Finished,
    ImageResult,
    Progress,
    Result,
    TextResult,
    Token,
)
from studio.core.jobs import SCHEDULERS, ImageJob, JobSpec, MorphJob, TextJob, resolve_seed
from studio.core.kinds import ModelFormat
from studio.core.logs import configure_logging
from studio.core.settings import Settings
from studio.core.untrusted import expand_user, printable
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models import paths
from studio.models.paths import offline
from studio.models.registry import ModelInfo, ModelRegistry, default_roots

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 1, 2, 130
DEFAULT_STEPS, DEFAULT_CFG = 20, 7.0  # when neither the command line nor the model (ModelInfo.suggested) says


ResultT = TypeVar("ResultT", bound=Result)


def _first_given(*values: Any) -> Any:
    """The first value that is not None: the command line's, else the model's suggestion, else ours."""
    return next(value for value in values if value is not None)


class UsageError(Exception):
    """A command-line argument is wrong: exit 2 with this sentence."""


def _result_as(end: Finished, kind: type[ResultT]) -> ResultT:
    """The finished job's result, of the kind its spec makes (anything else is an engine bug)."""
    if not isinstance(end.result, kind):
        raise TypeError(f"the engine finished a job with a {type(end.result).__name__}, not a {kind.__name__}")
    return end.result


def make_runner() -> Runner:
    settings = Settings.load(paths.settings_file())
    # No previews: nothing shows them here, and each can cost a VAE decode.
    return Runner(ModelRegistry(default_roots(settings.model_dirs)), previews=False)


def run_job(runner: Runner, spec: JobSpec, on_event: Callable[[Event], None]) -> Event:
    """Run one job; Ctrl-C cancels it at the next step or within a native call that can be stopped
    (twice: the default). The job runs on a thread of its own while this (main) thread waits in
    Python: Python takes a signal only on the main thread and only between bytecodes, so a main
    thread held inside a native call would hear Ctrl-C only once the call returned."""
    job = JobQueue().make_job(spec)
    previous = signal.getsignal(signal.SIGINT)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["end"] = runner.run(job, on_event)
        except BaseException as exc:  # noqa: BLE001 - raised again on the main thread (a broken pipe, say)
            outcome["error"] = exc

    def cancel(signum, frame):
        job.cancel.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, cancel)
    try:
        worker = threading.Thread(target=work, name="studio-job", daemon=True)  # a second Ctrl-C exits
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
    finally:
        signal.signal(signal.SIGINT, previous)
    if "error" in outcome:
        raise outcome["error"]
    end = outcome["end"]
    if isinstance(end, Finished) and end.result.info.degraded:  # it ran out of memory and got by
        print(f"studio: {end.result.info.degraded}", file=sys.stderr)
    return end


def parse_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise UsageError(f"--size must look like 512 or 512x768, not {text!r}.") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise UsageError(f"--size must look like 512 or 512x768, not {text!r}.")


def cmd_models(args, runner: Runner) -> int:
    registry = runner.registry
    models = registry.models()
    if not models:
        print(registry.where_to_put_models())
    else:
        onnx = _onnx_provider() if any("onnx" in m.runtimes for m in models) else ""
        # File names and studio.json fields come from whoever made the model: no escape sequence
        # (colours, cursor moves, OSC 52 clipboard writes) or line break of theirs reaches the terminal.
        rows = [
            tuple(
                printable(c, one_line=True)
                for c in (
                    m.id,
                    m.kind,
                    m.format,
                    _runtimes(m, onnx),
                    _size(m.size_bytes),
                    m.licence or "-",
                    m.source,
                    str(m.path),
                )
            )
            for m in models
        ]
        header = ("ID", "KIND", "FORMAT", "RUNTIMES", "SIZE", "LICENCE", "SOURCE", "PATH")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(7)]
        for row in [header] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[7])
        # A GGUF model's own description (architecture, parameters, quantisation, window, chat
        # template) under its row's id: it comes from the file, so it is made printable too.
        described = [(m.id, m.details) for m in models if m.details]
        if described:
            print()
            for model_id, details in described:
                print(printable(f"{model_id}: {details}", one_line=True))
    for problem in registry.problems:
        print(printable(f"unusable: {problem.path}: {problem.message}", one_line=True), file=sys.stderr)
    return 0


def _onnx_provider() -> str:
    """The provider ONNX Runtime really starts here for the device auto picks (e.g. "CPU")."""
    from studio.engine.backends import onnx_session

    device, _ = onnx_session.choose_device("auto")
    return onnx_session.short_name(onnx_session.probe_provider(device))


def _runtimes(model: ModelInfo, onnx_provider: str) -> str:
    """ "torch, onnx (CPU)": the runtimes a model runs on, ONNX Runtime with the provider it gets."""
    return ", ".join(f"onnx ({onnx_provider})" if r == "onnx" else r for r in model.runtimes)


def cmd_export_onnx(args, runner: Runner) -> int:
    """Export a model to ONNX, check it against torch, and put it where the studio finds it."""
    from studio.engine.export.onnx_export import check_exportable, default_out, export_onnx

    model = runner.registry.resolve(args.model)
    check_exportable(model)
    out = expand_user(args.out, UsageError) if args.out else default_out(model)

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    parity = export_onnx(model, out, say, replace=args.replace)
    print("parity with torch (CPU, float32):")
    for line in parity.lines:
        print(f"  {line}")
    if not parity.ok:
        print(f"studio: the ONNX export of {model.id} does not match torch, so it was not kept.", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {out}")
    return 0


def cmd_generate(args, runner: Runner) -> int:
    model = runner.registry.resolve(args.model)
    suggested = model.suggested
    width, height = parse_size(args.size) if args.size else (suggested.size, suggested.size)
    seed = resolve_seed(args.seed)
    steps = _first_given(args.steps, suggested.steps, DEFAULT_STEPS)
    cfg = _first_given(args.cfg, suggested.guidance_scale, DEFAULT_CFG)
    if args.mask and not args.init:
        raise UsageError("--mask needs --init: the image to paint into.")
    spec = ImageJob(
        model=args.model,
        prompt=args.prompt,
        negative_prompt=args.negative,
        seed=seed,
        steps=steps,
        guidance_scale=cfg,
        width=width,
        height=height,
        device=args.device,
        runtime=args.runtime,
        scheduler=args.scheduler or "",
        count=args.count,
        strength=args.strength,
        init_image=_input_file(args.init, "--init"),
        mask=_input_file(args.mask, "--mask"),
        loras=tuple(_lora(text, runner.registry) for text in args.lora or ()),
    )
    spec.validate()
    out = Path(args.out or f"studio-{seed}.png")
    bar = StageProgress(f"seed {seed}" if args.count == 1 else f"seeds {seed}-{seed + args.count - 1}")

    def on_event(event: Event) -> None:
        if isinstance(event, Progress):
            bar.update(event.step, event.total)

    end = run_job(runner, spec, on_event)
    bar.close()
    if isinstance(end, Finished):
        from studio.core.image_metadata import save_image

        for i, image in enumerate(_result_as(end, ImageResult).images):
            path = out if i == 0 else out.with_name(f"{out.stem}-{i}{out.suffix}")
            try:  # each image with the spec that makes it again alone (its own seed)
                save_image(path, image, spec.one_image(i), end.result.info)
            except OSError as exc:
                raise StudioError(f"Cannot write {path} ({exc.strerror or exc}); choose another --out.") from None
            print(path)
    return _exit_code(end)


def _input_file(text: Optional[str], flag: str) -> str:
    if not text:
        return ""
    path = expand_user(text, UsageError)
    if not path.is_file():
        raise UsageError(f"{flag} names {text}, which is not a file.")
    return str(path.resolve())


def _lora(text: str, registry: ModelRegistry) -> tuple[str, float]:
    """FILE[:WEIGHT] -> (absolute path, weight); FILE may also be a LoRA id from `studio models`."""
    name, weight = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            name, weight = head, float(tail)
        except ValueError:
            pass  # a colon in the path itself (C:\...), no weight given
    path = expand_user(name, UsageError)
    if not path.is_file():
        found = [m for m in registry.models("lora") if m.id == name]
        if not found:
            raise UsageError(f"--lora names {name}, which is neither a file nor a LoRA in `studio models`.")
        path = found[0].path
    return str(path.resolve()), weight


def cmd_morph(args, runner: Runner) -> int:
    """A morph between keyframes of a latent model or a diffusion image model, written as a GIF or an MP4."""
    import numpy as np

    from studio.core.errors import SpecError
    from studio.engine.morph.budget import frames_bytes, too_large
    from studio.latent import animation

    out = Path(args.out)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise UsageError(f"--out must end in .gif or .mp4, not {out.name!r}.")
    if not (args.seeds or args.prompts or args.latents):
        raise UsageError("One of --seeds, --prompts or --latents must give the keyframes.")
    model = runner.registry.resolve(args.model)
    keys: dict = {}
    if args.seeds:
        try:
            keys["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        except ValueError:
            raise UsageError(f"--seeds must be whole numbers separated by commas, not {args.seeds!r}.") from None
    if args.prompts:
        keys["prompts"] = tuple(p.strip() for p in args.prompts.split("|"))
    if args.latents:
        keys["latents"] = tuple(map(tuple, _latents_file(Path(args.latents)).tolist()))
    common: dict[str, Any] = dict(
        model=args.model,
        device=args.device,
        runtime=args.runtime,
        frames=args.frames,
        spacing=args.spacing,
        method="lerp" if args.lerp else "slerp",
        **keys,
    )
    label, scale_to = "morph", None
    if model.kind == "image":
        spec = _diffusion_morph(args, model, common)
        if spec.prompts and not spec.seeds:
            label = f"morph · seed {spec.seed}"  # shown, so a random seed can be reused
    else:
        given = [
            flag
            for flag, value in (
                ("--prompts", args.prompts),
                ("--prompt", args.prompt),
                ("--negative", args.negative),
                ("--steps", args.steps),
                ("--cfg", args.cfg),
                ("--scheduler", args.scheduler),
                ("--seed", args.seed),
            )
            if value is not None
        ]
        if given and model.kind == "latent":
            raise UsageError(
                f"{given[0]} is for diffusion image models; {model.id} is a latent model, morphed "
                "between --seeds or --latents."
            )
        if args.size:  # a latent model's frames have its own size: --size scales them
            scale_to = _one_number(args.size)
        spec = MorphJob(**common)
    spec.validate()
    # Everything is checked before the first frame is rendered: the writer's settings, and the
    # memory the frames and the file will take against what this machine has free.
    try:
        fps = animation.check_fps(args.fps)
        if scale_to:
            animation.check_size(scale_to)
    except SpecError as exc:
        raise UsageError(exc.message.replace(f"`{exc.field}`", f"--{exc.field}", 1)) from None
    if model.kind in ("image", "latent"):
        native = (spec.width, spec.height) if model.kind == "image" else (model.default_size, model.default_size)
        shown = (scale_to, scale_to) if scale_to else native
        need = frames_bytes(spec, model.kind, *native) + animation.writer_bytes(spec.frames, *shown, out.suffix)
        sentence = too_large(
            need, f"A morph of {spec.frames} frames at {shown[0]}×{shown[1]}", "use fewer --frames or a smaller --size"
        )
        if sentence:
            raise UsageError(sentence)
    bar = StageProgress(label)
    end = run_job(runner, spec, lambda e: bar.update(e.step, e.total) if isinstance(e, Progress) else None)
    bar.close()
    if not isinstance(end, Finished):
        return _exit_code(end)
    if end.result.info.scheduler_note:
        print(f"studio: {end.result.info.scheduler_note}", file=sys.stderr)
    frames = _result_as(end, ImageResult).images  # read one at a time by the writer, never stacked into one large array
    if scale_to:
        frames = animation.ResizedFrames(np.stack(frames), scale_to)
    bar = StageProgress(f"writing {out.name}", unit="frame")
    write = animation.write_gif if out.suffix.lower() == ".gif" else animation.write_mp4
    try:
        write(frames, out, fps, progress=bar.update)
    except OSError as exc:
        raise StudioError(f"Cannot write {out} ({exc.strerror or exc}); choose another --out.") from None
    bar.close()
    print(out)
    return 0


def _diffusion_morph(args, model, common: dict) -> MorphJob:
    """A seed-travel or prompt-travel morph with `studio generate`'s settings and defaults."""
    suggested = model.suggested
    width, height = parse_size(args.size) if args.size else (suggested.size, suggested.size)
    if args.prompts and args.prompt:
        raise UsageError("--prompt is for seed travel; with --prompts each keyframe has its own prompt.")
    if args.seeds and args.seed is not None:
        raise UsageError("--seed is for prompt travel from one seed; with --seeds each keyframe has its own seed.")
    return MorphJob(
        **common,
        prompt=args.prompt or "",
        negative_prompt=args.negative or "",
        seed=resolve_seed(args.seed) if args.prompts and not args.seeds else 0,
        steps=_first_given(args.steps, suggested.steps, DEFAULT_STEPS),
        guidance_scale=_first_given(args.cfg, suggested.guidance_scale, DEFAULT_CFG),
        width=width,
        height=height,
        scheduler=args.scheduler or "",
    )


def _one_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"--size must be one number for a latent model's morph (its longer side), not {text!r}."
        ) from None


def _latents_file(path: Path):
    """Keyframe latents from a .npy file (K x D, no pickles), a keyframes file saved by the
    Explore tab, or a JSON list of lists."""
    import numpy as np

    from studio.latent.keyframes_file import read_keyframes

    if not path.is_file():
        raise UsageError(f"--latents names {path}, which is not a file.")
    if path.suffix.lower() != ".npy":
        try:
            return read_keyframes(path).latents
        except StudioError as exc:
            raise UsageError(f"--latents: {exc.message}") from None
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, OverflowError, RecursionError, MemoryError) as exc:
        raise UsageError(f"--latents {path.name} is not a .npy array ({first_line(exc)}).") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise UsageError(
            f"--latents {path.name} must hold one latent per row (K x D numbers), not shape {array.shape}."
        )
    return array


def cmd_info(args, runner: Runner) -> int:
    from studio.core.infotext import describe, read_settings

    print(describe(read_settings(Path(args.image))))
    return 0


# `studio write` flags for TextJob's sampler fields.
SAMPLER_FLAGS = {
    "max_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "rep_pen": "repetition_penalty",
    "rep_range": "repetition_range",
    "dry": "dry_multiplier",
    "dry_base": "dry_base",
    "dry_allowed_length": "dry_allowed_length",
    "xtc_threshold": "xtc_threshold",
    "xtc_probability": "xtc_probability",
}
DEFAULT_WRITE_TOKENS = 100


def _open_document(args):
    """The document `studio write` continues: --file's (a file that does not exist yet is a new
    document, created when the continuation is saved), or one made for --memory/--note; None for
    a plain prompt. With it, the stamp of --file as read (None without --file): the save refuses
    to overwrite the file if it changed on disk while the model was writing."""
    if not (args.file or args.memory is not None or args.note is not None):
        if args.prompt is None:
            raise UsageError("give a prompt, or --file DOC to continue a document.")
        return None, None
    from studio.writing import Document
    from studio.writing.storage import read_document

    doc, stamp = read_document(Path(args.file), missing_ok=True) if args.file else (Document(), None)
    if args.prompt:
        doc.insert(len(doc.text), args.prompt, "typed")
    if args.memory is not None:
        doc.memory = args.memory
    if args.note is not None:
        doc.authors_note = args.note
    return doc, stamp


def _save_continuations(doc, path: Path, texts: list[str], stamp=None) -> None:
    """Add the continuations to the document at its end (the first shown, the others as its
    alternatives) and save it atomically: native documents keep spans, .txt/.md just the text.
    A file no longer as `stamp` says (another program or `studio write` saved it meanwhile) is
    not overwritten: that would lose its change."""
    from studio.writing import export_text, save_document
    from studio.writing.storage import DocumentChanged

    generation = doc.add_generation(len(doc.text), texts[0])
    for text in texts[1:]:
        doc.retry(generation, text)
    if len(texts) > 1:
        doc.show_alternative(generation, 0)
    save = export_text if path.suffix.lower() in (".txt", ".md", ".markdown") else save_document
    try:
        save(doc, path, unchanged_since=stamp)
    except DocumentChanged:
        raise StudioError(
            f"{path.name} changed on disk while the model was writing, so the continuation was not "
            f"saved to it (it is on stdout): run the command again to continue the new version."
        ) from None


def cmd_write(args, runner: Runner) -> int:
    doc, stamp = _open_document(args)
    # Each sampler setting: the flag, else the document's own (a story keeps its settings), else
    # TextJob's default.
    saved = dict(doc.sampler) if doc is not None and args.file else {}
    flags = {field: getattr(args, flag) for flag, field in SAMPLER_FLAGS.items() if getattr(args, flag) is not None}
    settings = {k: v for k, v in {**saved, **flags}.items() if k in SAMPLER_FLAGS.values() and v is not None}
    settings.setdefault("max_new_tokens", DEFAULT_WRITE_TOKENS)
    seed = resolve_seed(args.seed if args.seed is not None else saved.get("seed"))
    # A document goes to the engine as a story: it is assembled there with the model's own
    # tokenizer (memory, world info, author's note, trimmed to the model's window).
    spec = TextJob(
        model=args.model,
        prompt=args.prompt if doc is None else "",
        seed=seed,
        device=args.device,
        runtime=args.runtime,
        story=None if doc is None else doc.story_context(len(doc.text)),
        instruct=args.instruct,
        stop=tuple(args.stop if args.stop is not None else saved.get("stop", ())),
        banned=tuple(args.ban if args.ban is not None else saved.get("banned", ())),
        **settings,
    )
    spec.validate()
    if args.alternatives < 1:
        raise UsageError(f"--alternatives must be 1 or more, not {args.alternatives}.")
    show_bar = args.progress if args.progress is not None else not sys.stdout.isatty()
    texts: list[str] = []
    for index in range(args.alternatives):
        # Alternative i is seed + i: each can be made again alone with its own --seed.
        one = dataclasses.replace(spec, seed=seed + index)
        if args.alternatives > 1:
            sys.stdout.write(("\n" if index else "") + f"--- alternative {index + 1} (seed {one.seed}) ---\n")
        end = _stream_text(runner, one, args.echo, show_bar)
        if not isinstance(end, Finished):
            return _exit_code(end)  # the document is saved only when every alternative finished
        texts.append(_result_as(end, TextResult).text)
    if doc is not None and args.file:
        _save_continuations(doc, Path(args.file), texts, stamp)
        print(f"saved {args.file}", file=sys.stderr)
    return 0


def _stream_text(runner: Runner, spec: TextJob, echo: bool, show_bar: bool) -> Event:
    """Stream the job's tokens to stdout (after the prompt as the model read it, with `echo`)."""
    bar = StageProgress(f"seed {spec.seed}", unit="token") if show_bar else None
    count = 0

    def on_event(event: Event) -> None:
        nonlocal count
        if isinstance(event, ContextUsed) and echo:
            sys.stdout.write(event.context.prompt)
        elif isinstance(event, Token):
            sys.stdout.write(event.text)
            sys.stdout.flush()
            count += 1
            if bar:
                bar.update(count, spec.max_new_tokens)

    end = run_job(runner, spec, on_event)
    if count or echo:
        sys.stdout.write("\n")
    if bar:
        sys.stdout.flush()  # the text's last line first, where both streams go to one log
        bar.close()
    return end


def cmd_bench(args, runner: Runner) -> int:
    from studio.bench.suite import run_suite

    return run_suite(out_dir=Path(args.out), quick=args.quick, only=args.only)


def cmd_train(args, runner: Runner) -> int:
    from studio.training.commands import train_command

    return train_command(args)


def cmd_eval(args, runner: Runner) -> int:
    from studio.training.commands import eval_command

    return eval_command(args, runner.registry)


def cmd_convert(args, runner: Optional[Runner]) -> int:
    """The per-file opt-in for a pickle checkpoint: its tensors, read weights-only in a throw-away
    process, written once to safetensors, which is all the studio uses from then on."""
    from studio.models.pickle_import import convert

    for done in convert(Path(args.path), Path(args.out) if args.out else None):
        if done.already:
            print(
                f"{done.target} is already the converted copy of {done.source.name} ({done.tensors} tensors, "
                f"{_size(done.size_bytes)})."
            )
            continue
        dropped = f"; {done.dropped} entries that were not tensors left out" if done.dropped else ""
        print(
            f"wrote {done.target}: {done.tensors} tensors, {_size(done.size_bytes)} (from {done.source.name}{dropped})."
        )
    return 0


def cmd_to_gguf(args, runner: Runner) -> int:
    """A transformers GPT-2 or Llama folder written as one GGUF file for the llama.cpp runtime."""
    from studio.models.gguf_convert import convert_to_gguf

    model = runner.registry.resolve(args.model)
    if model.format != ModelFormat.TRANSFORMERS:
        raise UsageError(f"{model.id} is a {model.format} model; `studio to-gguf` converts transformers folders.")
    out = expand_user(args.out, UsageError) if args.out else paths.user_models_dir() / f"{model.id}-gguf"
    target = out / f"{model.id}.{args.type.upper()}.gguf" if out.suffix.lower() != ".gguf" else out
    target.parent.mkdir(parents=True, exist_ok=True)
    convert_to_gguf(model.path, target, args.type)
    print(f"wrote {target} ({_size(target.stat().st_size)}, {args.type.upper()}); `studio models` lists it.")
    return 0


def _exit_code(end: Event) -> int:
    if isinstance(end, Finished):
        return 0
    if isinstance(end, Cancelled):
        print("studio: cancelled.", file=sys.stderr)
        return EXIT_CANCELLED
    assert isinstance(end, Failed)
    print(f"studio: {printable(end.message)}", file=sys.stderr)
    return EXIT_BAD_INPUT if end.kind == ErrorKind.BAD_INPUT.value else EXIT_FAILED


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one sentence and exit 2, like every other bad input
        raise UsageError(message[0].upper() + message[1:] + ("" if message.endswith(".") else "."))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="studio", description="Offline generative studio: images, prose and latent spaces.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("models", help="list the models the studio can see, with the runtimes each runs on")

    x = sub.add_parser("export-onnx", help="export a model to ONNX (checked against torch) so it runs on ONNX Runtime")
    x.add_argument("model", help="an id from `studio models`, or a path")
    x.add_argument(
        "--out",
        help="the folder to write (default: the models folder, as MODEL-onnx, where the studio "
        "finds it and offers ONNX Runtime for the model)",
    )
    x.add_argument("--replace", action="store_true", help="replace --out when it already holds files")

    g = sub.add_parser("generate", help="make an image from a prompt")
    g.add_argument("prompt")
    g.add_argument("--model", required=True, help="an id from `studio models`, or a path")
    g.add_argument("--negative", default="", help="negative prompt")
    g.add_argument("--seed", type=int, help="random when left out (printed, so it can be reused)")
    g.add_argument("--steps", type=int, help=f"sampling steps (default: the model's suggestion, else {DEFAULT_STEPS})")
    g.add_argument("--cfg", type=float, help=f"guidance scale (default: the model's suggestion, else {DEFAULT_CFG})")
    g.add_argument("--size", help="512 or WIDTHxHEIGHT (default: the model's own size)")
    g.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        metavar="NAME",
        help="sampler, as A1111 names it: " + ", ".join(SCHEDULERS) + " (default: the model's own)",
    )
    g.add_argument("--count", type=int, default=1, help="how many images, with seeds SEED, SEED+1, ...")
    g.add_argument("--init", help="img2img: the image to start from")
    g.add_argument("--mask", help="inpainting: white where --init is repainted, black where it is kept")
    g.add_argument("--strength", type=float, default=0.75, help="img2img/inpainting: how much is repainted (0-1)")
    g.add_argument(
        "--lora", action="append", metavar="FILE:WEIGHT", help="a LoRA .safetensors, weight 1 unless given (repeatable)"
    )
    g.add_argument("--out", help="PNG file to write (default studio-SEED.png; more images get -1, -2, ...)")
    _device_args(g, runtime=True)

    m = sub.add_parser(
        "morph",
        help="a morph between keyframes as GIF/MP4: of a latent model (emoji-vae, emoji-gan), "
        "or seed or prompt travel on a diffusion model (emoji-sd, your SD models)",
    )
    m.add_argument("--model", required=True, help="an id from `studio models`, or a path")
    m.add_argument(
        "--seeds",
        help="keyframes as seeds, comma-separated: a latent model's standard normal latents, or "
        "a diffusion model's initial noises (seed travel; with --prompts, one seed per prompt)",
    )
    m.add_argument(
        "--prompts", metavar="'A|B|...'", help="diffusion models: keyframes as prompts separated by | (prompt travel)"
    )
    m.add_argument(
        "--latents", metavar="FILE", help="latent models: keyframes as a K x D .npy array or JSON list of lists"
    )
    m.add_argument("--frames", type=int, default=60, help="frames in all (default 60)")
    m.add_argument("--fps", type=float, default=24.0, help="frames per second (default 24)")
    m.add_argument(
        "--spacing",
        choices=("even", "uniform"),
        default="even",
        help="even: neighbouring frames differ about equally (default; a diffusion model spends up to "
        "--frames extra generations finding out); uniform: equal steps in time, every keyframe a frame",
    )
    m.add_argument(
        "--lerp",
        action="store_true",
        help="straight lines between keyframes instead of slerp (on a "
        "diffusion model: between the seeds' noises; prompts always blend in straight lines)",
    )
    m.add_argument(
        "--size",
        help="latent models: scale the frames so their longer side is this many pixels; "
        "diffusion models: 512 or WIDTHxHEIGHT, as for generate (default: the model's own size)",
    )
    m.add_argument("--prompt", help="diffusion models, seed travel: the prompt of every frame")
    m.add_argument("--negative", help="diffusion models: negative prompt")
    m.add_argument(
        "--seed",
        type=int,
        help="diffusion models, prompt travel: the seed of every frame (random when left "
        "out, shown on the progress bar)",
    )
    m.add_argument(
        "--steps",
        type=int,
        help=f"diffusion models: sampling steps per frame (default: the model's suggestion, else {DEFAULT_STEPS})",
    )
    m.add_argument(
        "--cfg",
        "--guidance",
        dest="cfg",
        type=float,
        help=f"diffusion models: guidance scale (default: the model's suggestion, else {DEFAULT_CFG})",
    )
    m.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        metavar="NAME",
        help="diffusion models: sampler, as for generate; an ancestral one (Euler a, DPM++ 2M SDE) is "
        "swapped for its deterministic counterpart, which a morph needs",
    )
    m.add_argument("--out", required=True, help="the .gif or .mp4 to write")
    _device_args(m, runtime=True)

    i = sub.add_parser("info", help="print the generation settings stored in an image (A1111, ComfyUI, ...)")
    i.add_argument("image")

    w = sub.add_parser("write", help="continue a text with a language model; tokens stream to stdout")
    w.add_argument("prompt", nargs="?", help="the text to continue (with --file: added to the document first)")
    w.add_argument(
        "--file",
        metavar="DOC",
        help="continue this document (.studio-doc.json, .txt or .md); the continuation is added to it and it is saved",
    )
    w.add_argument("--memory", help="text the model always sees first (overrides the document's)")
    w.add_argument("--note", help="author's note, placed a few sentences before the end (overrides the document's)")
    w.add_argument("--model", required=True, help="an id from `studio models`, or a path")
    w.add_argument("--max-tokens", type=int, help="new tokens at most (default: the document's, else 100)")
    w.add_argument("--seed", type=int)
    w.add_argument("--temperature", type=float)
    w.add_argument("--top-k", type=int)
    w.add_argument("--top-p", type=float)
    w.add_argument("--min-p", type=float, help="drop tokens below this share of the top one's probability")
    w.add_argument("--rep-pen", type=float, help="repetition penalty (1 = off)")
    w.add_argument("--rep-range", type=int, help="tokens the repetition penalty looks back (0 = all)")
    w.add_argument("--dry", type=float, help="DRY multiplier: penalise repeating earlier sequences (0 = off)")
    w.add_argument("--dry-base", type=float)
    w.add_argument("--dry-allowed-length", type=int)
    w.add_argument(
        "--xtc-threshold", type=float, help="XTC: the tokens at or above this probability are the top choices (0-0.5)"
    )
    w.add_argument(
        "--xtc-probability",
        type=float,
        help="XTC: how often to drop the top choices but the least likely of them (0 = off)",
    )
    w.add_argument("--stop", action="append", metavar="TEXT", help="end the text before this (repeatable)")
    w.add_argument("--ban", action="append", metavar="TEXT", help="never write this word or phrase (repeatable)")
    w.add_argument(
        "--alternatives", type=int, default=1, metavar="N", help="N continuations, with seeds SEED, SEED+1, ..."
    )
    w.add_argument(
        "--echo", action="store_true", help="print the prompt, as the model read it, before the continuation"
    )
    w.add_argument(
        "--instruct",
        action="store_true",
        help="wrap the text in the model's chat template (rendered in a sandbox) as a request",
    )
    w.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a token progress bar on stderr (default: on when stdout is not a terminal, "
        "so it never draws over the streamed text)",
    )
    _device_args(w, runtime=True)

    b = sub.add_parser("bench", help="run the performance suite (ratios against plain library calls)")
    b.add_argument("--out", default="benchmarks", help="folder for the JSON results and README table")
    b.add_argument("--quick", action="store_true", help="fewer repeats (for a smoke run)")
    b.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    t = sub.add_parser("train", help="train one of the embedded models from its open data (fetched from npm/apt)")
    t.add_argument("recipe", help="prose, emoji-sd, emoji-vae, emoji-gan or emoji-classifier")
    t.add_argument("--minutes", type=float, help="total training time, across resumes (default: the recipe's)")
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--out", help="run folder: checkpoint, metrics and model/ (default runs/RECIPE)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming from the checkpoint")
    t.add_argument("--max-steps", type=int, help=argparse.SUPPRESS)  # tests: a few steps
    t.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: tiny data and nets

    c = sub.add_parser(
        "convert",
        help="opt in to one pickle checkpoint (.ckpt .pt .pth .bin .pkl), or a model folder's: "
        "its tensors are read weights-only and written once to .safetensors, which is then used instead",
    )
    c.add_argument("path", help="the pickle file, or a diffusers/transformers folder holding pickle weights")
    c.add_argument("--out", help="the .safetensors file to write (default: beside it, same name)")

    g2 = sub.add_parser(
        "to-gguf", help="write a transformers GPT-2 or Llama folder as one GGUF file, for the llama.cpp runtime"
    )
    g2.add_argument("model", help="an id from `studio models`, or a path")
    g2.add_argument("--out", help="a .gguf file or a folder (default: the models folder, as MODEL-gguf)")
    g2.add_argument("--type", default="q8_0", choices=("q8_0", "f16", "f32"), help="the weights' type (default q8_0)")

    e = sub.add_parser("eval", help="measure an embedded model's quality (perplexity, FD-emoji, accuracy)")
    e.add_argument("model", help="an id from `studio models`, or a path")
    e.add_argument("--device", default="cpu", help="cpu or cuda")
    e.add_argument("--update-card", action="store_true", help="write the results into the model's MODEL_CARD.md")
    e.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # tests: fewer samples
    return p


def _device_args(parser: argparse.ArgumentParser, runtime: bool = False) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    if runtime:
        parser.add_argument("--runtime", default="auto", help="auto, torch, onnx or llama.cpp")


COMMANDS = {
    "models": cmd_models,
    "export-onnx": cmd_export_onnx,
    "generate": cmd_generate,
    "info": cmd_info,
    "write": cmd_write,
    "bench": cmd_bench,
    "train": cmd_train,
    "eval": cmd_eval,
    "morph": cmd_morph,
    "convert": cmd_convert,
    "to-gguf": cmd_to_gguf,
}
NO_RUNNER = ("convert",)  # commands that need no engine, so none is built (nor the models folder scanned)


def main(argv: Optional[Sequence[str]] = None) -> int:
    offline()
    try:
        args = build_parser().parse_args(argv)
        configure_logging(paths.log_dir(), logging.INFO)
        return COMMANDS[args.command](args, None if args.command in NO_RUNNER else make_runner())
    except UsageError as exc:
        print(f"studio: {printable(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StudioError as exc:
        # Messages quote file names and fields from files: no terminal escape reaches the screen.
        print(f"studio: {printable(exc.message)}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.kind is ErrorKind.BAD_INPUT else EXIT_FAILED
    except KeyboardInterrupt:
        print("studio: interrupted.", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # `studio write ... | head`: the reader has all it wanted
        sys.stdout = None  # type: ignore[assignment]  # nothing more can be flushed there
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
