"""prose: a small GPT-2 (4 layers, width 256, context 512) with its own 8k byte-level BPE, trained
from scratch on public-domain prose (Austen, Moby-Dick, a down-weighted World English Bible, the
Devil's Dictionary). Held out: Persuasion, chapters 13-24, never trained on; perplexity there
is the number in the card.

Paragraphs are joined by blank lines and books end with <|endoftext|>, so the model learns the
paragraph breaks a writer's document has. On CPU the forward/backward run under bf16 autocast
(about 1.5x faster on CPUs with AMX/AVX-512 bf16); the weights stay fp32 and ship as fp16."""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import torch

from studio.models.tokenizer_files import write_legacy_tokenizer_files
from studio.training.loop import Recipe, RunReport
from studio.training.model_card import write_card
from studio.training.shipping import finish_folder, write_json
from studio.training.text_tokenizer import EOS, check_round_trip, train_byte_level_bpe

VOCAB, CONTEXT = 8192, 512
LR, WARMUP = 1e-3, 0.02
SEQ, BATCH = 512, 8
TINY_CHARS = 60_000
SAMPLE_PROMPT = "It was a dark and stormy night, and"


def lr_at(progress: float) -> float:
    if progress < WARMUP:
        return LR * max(progress / WARMUP, 0.01)
    return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (progress - WARMUP) / (1 - WARMUP))))


def token_stream(tokenizer, corpus) -> torch.Tensor:
    """All training paragraphs as one id stream: blank lines between paragraphs of a source,
    <|endoftext|> between sources."""
    eos = tokenizer.convert_tokens_to_ids(EOS)
    ids: list[int] = []
    previous = None
    texts: list[str] = []

    def flush():
        if texts:
            ids.extend(tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"])
            ids.append(eos)
            texts.clear()

    for source, paragraph in corpus.train:
        if source != previous:
            flush()
            previous = source
        texts.append(paragraph)
    flush()
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def perplexity(model, ids: torch.Tensor, context: int, device, stride: int | None = None) -> tuple[float, int]:
    """Sliding-window perplexity of `ids`: each window sees up to `context` tokens, and every token
    after the first is scored exactly once, with at least `context - stride - 1` tokens of history
    after the first window. Returns (perplexity, tokens scored)."""
    model.eval()
    stride = stride or context // 2
    total, count, start = 0.0, 0, 0
    while True:
        end = min(start + context, ids.numel())
        window = ids[start:end][None].to(device)
        logits = model(window).logits.float()
        # Window k's position j predicts token start + j + 1; the tokens up to start + context - 1
        # were scored by the window before, so scoring starts at position context - stride - 1.
        first = 0 if start == 0 else context - stride - 1
        scored = torch.nn.functional.cross_entropy(logits[0, first:-1], window[0, first + 1 :], reduction="sum")
        total += scored.item()
        count += window.shape[1] - 1 - first
        if end == ids.numel():
            break
        start += stride
    return math.exp(total / max(count, 1)), count


class ProseRecipe(Recipe):
    name = "prose"
    default_minutes = 30.0

    def prepare(self) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        from studio.training.data.prose_corpus import load_prose

        tiny = self.options.tiny
        self.corpus = load_prose(limit_chars=TINY_CHARS if tiny else None)
        # Trained once per run and kept in the checkpoint, so a resumed run keeps its token ids.
        self.tokenizer = train_byte_level_bpe(
            (p for _, p in self.corpus.train), 512 if tiny else VOCAB, model_max_length=CONTEXT
        )
        self.extra["tokenizer"] = self.tokenizer.backend_tokenizer.to_str()
        self.encode_corpus()
        eos = cast(int, self.tokenizer.convert_tokens_to_ids(EOS))  # one token: one id (the annotation allows lists)
        self.seq = 64 if tiny else SEQ
        config = GPT2Config(
            vocab_size=len(self.tokenizer),
            n_positions=CONTEXT,
            n_embd=64 if tiny else 256,
            n_layer=2 if tiny else 4,
            n_head=4,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
            resid_pdrop=0.1,
            embd_pdrop=0.1,
            attn_pdrop=0.1,
        )
        torch.manual_seed(self.options.seed)
        # transformers wraps `to` in @wraps(Module.to), which hides its binding from pyright.
        self.model = GPT2LMHeadModel(config).to(self.device)  # pyright: ignore[reportArgumentType]
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
            lr=LR,
            betas=(0.9, 0.95),
        )
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16)

    def encode_corpus(self) -> None:
        self.train_ids = token_stream(self.tokenizer, self.corpus)
        self.heldout_ids = torch.tensor(self.tokenizer(self.corpus.heldout, add_special_tokens=False)["input_ids"])

    def restored(self) -> None:
        from tokenizers import Tokenizer

        self.tokenizer._tokenizer = Tokenizer.from_str(self.extra["tokenizer"])
        self.encode_corpus()

    def modules(self):
        return {"model": self.model, "optimizer": self.optimizer}

    def train_step(self, progress: float) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(progress)
        self.model.train()
        starts = torch.randint(0, self.train_ids.numel() - self.seq - 1, (BATCH,))
        x = torch.stack([self.train_ids[s : s + self.seq + 1] for s in starts.tolist()]).to(self.device)
        with self.autocast:
            loss = self._loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": loss.item()}

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x[:, :-1]).logits
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))

    def evaluate(self) -> dict[str, float]:
        ppl, _ = perplexity(self.model, self.heldout_ids, CONTEXT if not self.options.tiny else 64, self.device)
        return {
            "heldout_perplexity": ppl,
            "heldout_tokens": float(self.heldout_ids.numel()),
            "train_tokens": float(self.train_ids.numel()),
        }

    @torch.no_grad()
    def sample(self, prompt: str = SAMPLE_PROMPT, tokens: int = 80, seed: int = 1) -> str:
        self.model.eval()
        ids = torch.tensor([self.tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=self.device)
        with torch.random.fork_rng(devices=[]):  # the card's sample is the same for every run
            torch.manual_seed(seed)
            # transformers' self-type for generate() is a Protocol its own GPT-2 class does not match.
            out = self.model.generate(  # pyright: ignore[reportAttributeAccessIssue]
                ids,
                max_new_tokens=tokens,
                do_sample=True,
                temperature=0.8,
                top_p=0.95,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        return prompt + cast(str, self.tokenizer.decode(out[0, ids.shape[1] :]))  # one sequence: one string

    def export(self, folder: Path, report: RunReport) -> None:
        self.model.eval()
        sample = self.sample()
        half = self.model.to(torch.float16)  # pyright: ignore[reportArgumentType] - @wraps(Module.to) hides the binding
        half.save_pretrained(str(folder), safe_serialization=True)
        self.model.float()
        self.tokenizer.save_pretrained(str(folder))
        write_legacy_tokenizer_files(folder)
        check_round_trip(folder)
        write_json(
            folder / "studio.json",
            {
                "title": "Prose (GPT-2, 5 M)",
                "kind": "text",
                "licence": "CC0-1.0",
                "description": "A small public-domain prose model for drafting.",
            },
        )
        n = sum(p.numel() for p in self.model.parameters())
        data = "; ".join(f"{s.title} ({s.package}, {s.licence}, weight {s.weight})" for s in self.corpus.sources)
        write_card(
            folder,
            "prose",
            summary="A small GPT-2 language model for Studio's writer, trained from scratch by Studio's own "
            "code on public-domain prose. It writes English-looking sentences with a 19th-century "
            "flavour; it has no long-range coherence and no knowledge worth trusting.",
            sections=[
                (
                    "Model",
                    f"GPT-2 architecture (transformers `GPT2LMHeadModel`): 4 layers, width 256, 4 heads, "
                    f"context {CONTEXT}, {n / 1e6:.1f} M parameters (tied embeddings). Byte-level BPE "
                    f"tokenizer with {len(self.tokenizer)} tokens trained on the training text. fp16 safetensors.",
                ),
                (
                    "Data and licence",
                    f"Training text ({self.train_ids.numel():,} tokens): {data}. All texts are "
                    f"public domain. Held out, never trained on: {self.corpus.heldout_name} "
                    f"({self.heldout_ids.numel():,} tokens). The weights are released as CC0-1.0.",
                ),
                ("Sample", f"Seed 1, temperature 0.8, top-p 0.95:\n\n> {sample.strip()}"),
                (
                    "Limitations",
                    "Tiny by language-model standards: expect local grammar, repetitive turns and no "
                    "plot. It has seen only old English prose and scripture; modern words tokenize into "
                    "pieces and come out oddly.",
                ),
            ],
            report=report,
            reproduce=f"studio train prose --minutes {round(report.seconds / 60)} --device {report.device}",
        )
        finish_folder(folder)
