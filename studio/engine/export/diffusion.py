"""ONNX exports of Stable Diffusion pipelines (SD 1.x/2.x, their v-prediction and 9-channel
inpainting UNets, and SDXL), in Optimum's folder layout, so Optimum's ORTDiffusionPipeline and the
studio's ONNX backend (engine/backends/diffusion/onnx_diffusion) both read them:

    model_index.json                  the diffusers pipeline's own (its class says SD or SDXL)
    text_encoder/   model.onnx, config.json   input_ids (int32) -> last_hidden_state, pooler_output
    text_encoder_2/ model.onnx, config.json   (SDXL) input_ids -> text_embeds, last_hidden_state
    unet/           model.onnx, config.json   sample, timestep (float32 scalar), encoder_hidden_states
                                              [, text_embeds, time_ids (SDXL)] -> out_sample
    vae_encoder/    model.onnx, config.json   sample (image in [-1, 1]) -> latent_parameters
    vae_decoder/    model.onnx, config.json   latent_sample -> sample (image in [-1, 1])
    scheduler/, tokenizer/ [, tokenizer_2/]

SDXL's text encoders also give every layer's output as hidden_states.0 ... hidden_states.N (the
pipeline uses the penultimate one), as Optimum exports them. The VAE encoder gives the latent
distribution's parameters (mean and log-variance, newer Optimum's `latent_parameters`) rather
than a sample drawn inside the graph (older Optimum's `latent_sample`), so the sample is drawn
outside it from the job's seeded generator, exactly as diffusers draws it on torch; the backend
reads both. Batch, height, width and sequence length are dynamic axes everywhere.

The pipeline is loaded by the studio's own torch loader in float32 (so single-file checkpoints
export too); each network is wrapped in a small module with flat tensor inputs and outputs and
traced by `graph.export_graph`. Parity: each network on fixed inputs, then one whole generation
(same prompt, seed and steps on torch and on ONNX Runtime, both on the CPU), whose final images
in [0, 1] must agree within IMAGE_TOLERANCE.

torch, diffusers and the backends are imported inside the functions."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio.core.atomic import write_atomic
from studio.core.kinds import ModelFormat
from studio.engine.errors import collect_garbage
from studio.engine.export.graph import Parity, Say, export_graph
from studio.engine.export.onnx_export import ExportRefused
from studio.models.tokenizer_files import write_legacy_tokenizer_files

ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.json"
TEXT_ENCODER, TEXT_ENCODER_2, UNET = "text_encoder", "text_encoder_2", "unet"
VAE_ENCODER, VAE_DECODER = "vae_encoder", "vae_decoder"
# Output names: the VAE encoder's as this exporter writes it, and as older Optimum did (a sample).
LATENT_PARAMETERS, LATENT_SAMPLE = "latent_parameters", "latent_sample"
# The diffusers pipelines the studio exports and runs on ONNX Runtime (UNet pipelines).
PIPELINES = frozenset(
    {
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    }
)

PARITY_PROMPT = "a photo of a red cat"
PARITY_SEED = 0
PARITY_STEPS = 4
PARITY_GUIDANCE = 7.0  # classifier-free guidance on: both halves of the batch are compared
PARITY_MAX_SIZE = 512  # the whole generation runs at the model's size, at most this (SDXL: 512)
# The traced latent side: odd, so the UNet takes the path that upsamples to its skip connections'
# sizes (read from the tensors) rather than by a fixed factor of 2, which is the same arithmetic
# for sizes it divides and the only one that works for the others (e.g. 520 px in SD 1.5).
TRACE_LATENT = 9
TRACE_BATCH = 2


def pipeline_class_name(name: Any) -> str:
    """The diffusers pipeline class a model_index.json names, without Optimum's "ORT" prefix or
    diffusers' old "Onnx" one ("" when it names none)."""
    if not isinstance(name, str):
        return ""
    for prefix in ("ORT", "Onnx"):
        if name.startswith(prefix) and name[len(prefix) :] in PIPELINES:
            return name[len(prefix) :]
    return name


def _refuse(model: Any, class_name: str) -> ExportRefused:
    return ExportRefused(
        f"{model.id} is a {class_name}; the studio exports only Stable Diffusion 1.x/2.x and SDXL "
        "(UNet) pipelines to ONNX, not transformer pipelines such as SD3 or Flux."
    )


def check_source(model: Any) -> None:
    """Refuse what cannot be exported before the (slow) load: a diffusers folder says its class."""
    from studio.models.formats import read_json

    index = Path(model.path) / "model_index.json"
    if model.format == ModelFormat.DIFFUSERS and index.is_file():
        name = str(read_json(index).get("_class_name") or "")
        if name not in PIPELINES:
            raise _refuse(model, name or "pipeline of unknown class")


def _load_pipeline(model: Any) -> Any:
    from studio.engine.backends.diffusion.diffusers_image import DiffusersImageBackend

    check_source(model)
    pipe = DiffusersImageBackend.load(model, "cpu", "float32").pipe
    if type(pipe).__name__ not in PIPELINES or getattr(pipe, "unet", None) is None:
        raise _refuse(model, type(pipe).__name__)
    if getattr(pipe, "text_encoder", None) is None:  # SDXL's refiner: image-to-image only
        raise ExportRefused(
            f"{model.id} has no first text encoder (an SDXL refiner?); the studio exports "
            "text-to-image pipelines to ONNX."
        )
    return pipe


# ---------------------------------------------------------------------------------------------
# The graphs: each network with flat tensor inputs and outputs


@dataclass
class Graph:
    """One network as it is exported: the module to trace, example inputs, and its ONNX IO."""

    folder: str
    module: Any
    example: tuple
    inputs: list[str]
    outputs: list[str]
    axes: dict[str, dict[int, str]]
    config: Callable[[Path], None]  # writes the folder's config.json

    @property
    def file(self) -> str:
        return f"{self.folder}/{ONNX_FILE}"


def _flat(inner: Any, run: Callable[..., Any]) -> Any:
    """`inner` as a module whose forward is `run(inner, *tensors)`, giving a tuple of tensors."""
    import torch

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: Any) -> Any:
            return run(self.inner, *tensors)

    return Flat().eval()


def _rng_tensor(rng: np.random.Generator, *shape: int) -> Any:
    import torch

    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def _token_ids(tokenizer: Any, prompts: list[str]) -> Any:
    """The ids a pipeline gives its text encoder: padded to the tokenizer's length, as int32."""
    import torch

    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return ids.to(torch.int32)


def _text_encoder_graph(folder: str, encoder: Any, tokenizer: Any, hidden_states: bool) -> Graph:
    import torch

    projection = hasattr(encoder, "text_projection")  # SDXL's second encoder: pooled text_embeds first
    outputs = ["text_embeds", "last_hidden_state"] if projection else ["last_hidden_state", "pooler_output"]
    if hidden_states:
        outputs += [f"hidden_states.{i}" for i in range(encoder.config.num_hidden_layers + 1)]

    def run(inner: Any, input_ids: Any) -> tuple:
        out = inner(input_ids.to(torch.int64), output_hidden_states=hidden_states, return_dict=True)
        first = [out.text_embeds, out.last_hidden_state] if projection else [out.last_hidden_state, out.pooler_output]
        return tuple(first + (list(out.hidden_states) if hidden_states else []))

    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}}
    for name in outputs:
        axes[name] = (
            {0: "batch_size"} if name in ("text_embeds", "pooler_output") else {0: "batch_size", 1: "sequence_length"}
        )
    example = (_token_ids(tokenizer, [PARITY_PROMPT, ""]),)
    return Graph(
        folder,
        _flat(encoder, run),
        example,
        ["input_ids"],
        outputs,
        axes,
        lambda path: encoder.config.save_pretrained(str(path)),
    )


def unet_extra_inputs(config: Any) -> list[str]:
    """The UNet inputs beyond sample, timestep and encoder_hidden_states its config asks for."""
    extra = []
    if config.get("addition_embed_type") == "text_time":  # SDXL: pooled text and size conditioning
        extra += ["text_embeds", "time_ids"]
    if config.get("time_cond_proj_dim") is not None:  # LCM-distilled UNets: the guidance embedding
        extra.append("timestep_cond")
    return extra


def _sdxl_sizes(pipe: Any) -> tuple[int, int]:
    """(pooled text width, number of time ids) of an SDXL UNet's added conditions."""
    config = pipe.unet.config
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    text_dim = encoder_2.config.projection_dim if encoder_2 is not None else 1280
    return text_dim, (config.projection_class_embeddings_input_dim - text_dim) // config.addition_time_embed_dim


def _unet_extras(pipe: Any, rng: np.random.Generator, batch: int, size: int) -> list[Any]:
    import torch

    extras = []
    for name in unet_extra_inputs(pipe.unet.config):
        if name == "text_embeds":
            extras.append(_rng_tensor(rng, batch, _sdxl_sizes(pipe)[0]))
        elif name == "time_ids":
            n = _sdxl_sizes(pipe)[1]
            extras.append(torch.tensor([[size, size, 0, 0, size, size][:n]] * batch, dtype=torch.float32))
        else:
            extras.append(_rng_tensor(rng, batch, pipe.unet.config.time_cond_proj_dim))
    return extras


def unet_inputs(pipe: Any, rng: np.random.Generator, batch: int, latent: int, size: int, timestep: float) -> tuple:
    """Example UNet inputs: noise latents of side `latent`, random text states, `timestep`."""
    import torch

    config = pipe.unet.config
    length = pipe.tokenizer.model_max_length
    return (
        _rng_tensor(rng, batch, config.in_channels, latent, latent),
        torch.tensor(timestep, dtype=torch.float32),
        _rng_tensor(rng, batch, length, config.cross_attention_dim),
        *_unet_extras(pipe, rng, batch, size),
    )


def _unet_graph(pipe: Any) -> Graph:
    unet = pipe.unet
    extra = unet_extra_inputs(unet.config)

    def run(inner: Any, sample: Any, timestep: Any, states: Any, *more: Any) -> tuple:
        named = dict(zip(extra, more))
        added = {k: named[k] for k in ("text_embeds", "time_ids") if k in named} or None
        return (
            inner(
                sample,
                timestep,
                states,
                timestep_cond=named.get("timestep_cond"),
                added_cond_kwargs=added,
                return_dict=False,
            )[0],
        )

    axes = {
        "sample": {0: "batch_size", 2: "height", 3: "width"},
        "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
        "out_sample": {0: "batch_size", 2: "height", 3: "width"},
    }
    axes.update({name: {0: "batch_size"} for name in extra})
    example = unet_inputs(
        pipe, np.random.default_rng(1), TRACE_BATCH, TRACE_LATENT, TRACE_LATENT * pipe.vae_scale_factor, 500.0
    )
    return Graph(
        UNET,
        _flat(unet, run),
        example,
        ["sample", "timestep", "encoder_hidden_states", *extra],
        ["out_sample"],
        axes,
        lambda path: unet.save_config(str(path)),
    )


def _vae_graphs(pipe: Any) -> list[Graph]:
    vae = pipe.vae
    factor = pipe.vae_scale_factor
    rng = np.random.default_rng(2)
    side = 8  # latent side of the examples; any works
    encoder = Graph(
        VAE_ENCODER,
        _flat(vae, lambda inner, sample: (inner.encode(sample).latent_dist.parameters,)),
        (_rng_tensor(rng, TRACE_BATCH, vae.config.in_channels, side * factor, side * factor).clamp(-1, 1),),
        ["sample"],
        [LATENT_PARAMETERS],
        {
            "sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
            LATENT_PARAMETERS: {0: "batch_size", 2: f"sample_height / {factor}", 3: f"sample_width / {factor}"},
        },
        lambda path: vae.save_config(str(path)),
    )
    decoder = Graph(
        VAE_DECODER,
        _flat(vae, lambda inner, latent: (inner.decode(latent, return_dict=False)[0],)),
        (_rng_tensor(rng, TRACE_BATCH, vae.config.latent_channels, side, side),),
        [LATENT_SAMPLE],
        ["sample"],
        {
            LATENT_SAMPLE: {0: "batch_size", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch_size", 2: f"latent_height * {factor}", 3: f"latent_width * {factor}"},
        },
        lambda path: vae.save_config(str(path)),
    )
    return [encoder, decoder]


def graphs(pipe: Any) -> list[Graph]:
    """Every network of a pipeline as it is exported, in Optimum's subfolders."""
    xl = getattr(pipe, "text_encoder_2", None) is not None
    found = [_text_encoder_graph(TEXT_ENCODER, pipe.text_encoder, pipe.tokenizer, hidden_states=xl)]
    if xl:
        found.append(_text_encoder_graph(TEXT_ENCODER_2, pipe.text_encoder_2, pipe.tokenizer_2, hidden_states=True))
    return found + [_unet_graph(pipe), *_vae_graphs(pipe)]


# ---------------------------------------------------------------------------------------------
# The folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_pipeline_files(pipe: Any, source: Path, out: Path) -> None:
    """model_index.json and the scheduler as torch loaded them, and the tokenizers: copied from a
    diffusers folder (the very files the torch loader read), saved from the loaded ones for a
    single-file checkpoint (built from the studio's CLIP merges)."""
    import diffusers

    index = {k: v for k, v in dict(pipe.config).items() if not k.startswith("_")}
    _write_json(
        out / "model_index.json",
        {"_class_name": type(pipe).__name__, "_diffusers_version": diffusers.__version__, **index},
    )
    pipe.scheduler.save_pretrained(str(out / "scheduler"))
    for name in ("tokenizer", "tokenizer_2"):
        tokenizer = getattr(pipe, name, None)
        if tokenizer is None:
            continue
        if source.is_dir() and (source / name).is_dir():
            shutil.copytree(source / name, out / name, copy_function=shutil.copyfile)  # not read-only bits
        else:
            tokenizer.save_pretrained(str(out / name))
        # Optimum's pipelines (transformers 4) build a CLIPTokenizer from vocab.json + merges.txt.
        write_legacy_tokenizer_files(out / name, "CLIPTokenizer")


def export_diffusion(model: Any, out: Path, say: Say) -> Parity:
    """Export a Stable Diffusion model (diffusers folder or single-file checkpoint) into the empty
    folder `out` in Optimum's layout, and return the parity check against torch."""
    out = Path(out)
    say(f"loading {model.id} on torch (float32)…")
    pipe = _load_pipeline(model)
    found = graphs(pipe)
    for graph in found:
        say(f"exporting {graph.file}…")
        (out / graph.folder).mkdir()
        export_graph(graph.module, graph.example, out / graph.file, graph.inputs, graph.outputs, graph.axes)
        graph.config(out / graph.folder)
    say("writing model_index.json, the scheduler and the tokenizers…")
    _write_pipeline_files(pipe, Path(model.path), out)
    size = _parity_size(model)
    say(f"checking parity: each network, then {PARITY_STEPS} steps at {size}×{size}, on torch…")
    reference = torch_reference(pipe, found, size)
    # torch's weights go before ONNX Runtime loads its copy: the two never share memory.
    del pipe, found
    collect_garbage()
    say("checking parity: the same on ONNX Runtime…")
    return check_parity(reference, out)


# ---------------------------------------------------------------------------------------------
# Parity


def _parity_size(model: Any) -> int:
    """The side of the parity generation: the model's own, at most PARITY_MAX_SIZE."""
    return max(64, min(int(model.default_size), PARITY_MAX_SIZE)) // 8 * 8


def generation_inputs(pipe: Any, size: int, seed: int = PARITY_SEED, steps: int = PARITY_STEPS) -> dict[str, Any]:
    """The call that makes the parity image: what a txt2img job of the parity prompt passes its
    pipeline; an inpainting model repaints the left half of a noise picture.

    Not the backends' txt2img on an inpainting model (a grey picture, all masked): its masked
    picture is all zeros, and a VAE whose GroupNorm groups hold one channel (tiny test models)
    normalises constant maps there, where ONNX Runtime's InstanceNormalization and torch round
    differently by far more than the limit; real VAEs (4+ channels a group) never see that."""
    import torch
    from PIL import Image

    inputs: dict[str, Any] = dict(
        prompt=PARITY_PROMPT,
        negative_prompt=None,
        num_inference_steps=steps,
        guidance_scale=PARITY_GUIDANCE,
        width=size,
        height=size,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(seed),
    )
    if getattr(pipe.unet.config, "in_channels", 4) == 9:
        pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[:, : size // 2] = 255
        inputs.update(image=Image.fromarray(pixels), mask_image=Image.fromarray(mask), strength=1.0)
    return inputs


def _generate(pipe: Any, size: int) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.asarray(pipe(**generation_inputs(pipe, size)).images, dtype=np.float32)


def _component_inputs(pipe: Any, graph: Graph, size: int) -> tuple:
    """Fixed inputs for one network's comparison, at the parity size (not the traced one)."""
    rng = np.random.default_rng(3)
    latent = size // pipe.vae_scale_factor
    if graph.folder == UNET:
        return unet_inputs(pipe, rng, 2, latent, size, 321.5)
    if graph.folder == VAE_ENCODER:
        return (_rng_tensor(rng, 1, pipe.vae.config.in_channels, size, size).clamp(-1, 1),)
    if graph.folder == VAE_DECODER:
        return (_rng_tensor(rng, 1, pipe.vae.config.latent_channels, latent, latent),)
    tokenizer = pipe.tokenizer_2 if graph.folder == TEXT_ENCODER_2 else pipe.tokenizer
    return (_token_ids(tokenizer, ["a blue house under the sky", ""]),)


@dataclass
class Reference:
    """What torch computed for the parity check: each network's inputs and outputs, and the image."""

    size: int
    inputs: dict[str, tuple]
    outputs: dict[str, list[np.ndarray]]
    image: np.ndarray


def torch_reference(pipe: Any, found: list[Graph], size: int) -> Reference:
    """Each network on fixed inputs, then one whole generation, on torch (CPU, float32)."""
    import torch

    inputs = {graph.folder: _component_inputs(pipe, graph, size) for graph in found}
    with torch.inference_mode():
        outputs = {graph.folder: [t.numpy() for t in graph.module(*inputs[graph.folder])] for graph in found}
    return Reference(size, inputs, outputs, _generate(pipe, size))


def check_parity(reference: Reference, out: Path) -> Parity:
    """The same networks and generation on ONNX Runtime (CPU) from the folder `out`, compared
    with torch's: the largest difference of each network's outputs (against their scale, see
    Parity.scaled) and of the whole image (absolute, pixels in [0, 1])."""
    from studio.engine.backends.diffusion.onnx_diffusion import OnnxDiffusionBackend

    backend = OnnxDiffusionBackend.from_folder(out, "cpu")
    try:
        parity = Parity()
        for folder, want in reference.outputs.items():
            session = backend.sessions[folder]
            names = [i.name for i in session.get_inputs()]
            got = session.run(None, {n: t.numpy() for n, t in zip(names, reference.inputs[folder])})
            parity.scaled(
                f"{folder}/{ONNX_FILE}",
                max(float(np.abs(a - b).max()) for a, b in zip(got, want)),
                max(float(np.abs(b).max()) for b in want),
            )
        size = reference.size
        image = _generate(backend.pipe, size)
        parity.image(
            f"whole generation ({PARITY_STEPS} steps, {size}×{size}, seed {PARITY_SEED}, image in [0, 1])",
            float(np.abs(image - reference.image).max()),
        )
        return parity
    finally:
        backend.close()
