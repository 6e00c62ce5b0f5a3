"""emoji-classifier: a small CNN that tells the eight emoji categories apart. It is not shipped as
a model; `studio eval` uses it to judge the image models (category accuracy of emoji-sd, and the
Fréchet distance "FD-emoji" in its 128-d feature space). Its output goes to studio/resources/eval/.

It trains on blurred copies half the time, so the soft images our small generators make are
judged by their content, not marked down for being soft."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from studio.training.data.emoji_data import CATEGORIES
from studio.training.images import batch, load_images, to_tensor
from studio.training.loop import Recipe, RunReport
from studio.training.model_card import EMOJI_DATA, write_card
from studio.training.shipping import finish_folder, save_fp16, write_json

IMAGE_SIZE, FEATURES = 64, 128
LR, BATCH = 2e-3, 64


class EmojiClassifier(nn.Module):
    """(N, 3, 64, 64) in [0, 1] -> logits (N, 8); `features` gives the pooled 128-d vector."""

    def __init__(self, base: int = 32, classes: int = len(CATEGORIES)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in (base, base * 2, base * 4, FEATURES):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2 - 1).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def soften(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Blur half the batch (3x3 box), as our generators' outputs are soft."""
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    pick = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(pick, blurred, x)


def load_classifier(folder: Path) -> EmojiClassifier:
    import json

    from studio.models.nets import apply_weights, load_weights

    manifest_path = folder / "studio.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    net = EmojiClassifier(base=int(manifest.get("base_channels", 32)))
    path = folder / "classifier.safetensors"
    apply_weights(net, load_weights(path), path.name)
    return net.eval()


class EmojiClassifierRecipe(Recipe):
    name = "emoji-classifier"
    default_minutes = 6.0

    def prepare(self) -> None:
        self.base = 8 if self.options.tiny else 24  # 0.8 MB in fp16: small enough to keep in the repo
        self.net = EmojiClassifier(base=self.base).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=LR, weight_decay=1e-4)
        data = load_images(self.options, IMAGE_SIZE)
        train, val = data.train(), data.validation()
        self.train_images = to_tensor(train.images, self.device)
        self.train_labels = torch.from_numpy(train.category).to(self.device)
        self.val_images = to_tensor(val.images, self.device)
        self.val_labels = torch.from_numpy(val.category).to(self.device)
        counts = torch.bincount(self.train_labels, minlength=len(CATEGORIES)).float().clamp_min(1)
        # People & Body has 2/3 of the images (skin tones); weight classes so each counts the same.
        self.class_weight = (counts.sum() / counts / len(CATEGORIES)).to(self.device)
        self.batch = min(BATCH, self.train_images.shape[0])

    def modules(self):
        return {"net": self.net, "optimizer": self.optimizer}

    def train_step(self, progress: float) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = LR * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))
        self.net.train()
        index, x = batch(self.train_images, self.batch)
        x = soften(x)
        loss = F.cross_entropy(self.net(x), self.train_labels[index.to(self.device)], weight=self.class_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.net.eval()
        if not self.val_images.shape[0]:
            return {}
        predicted = self.net(self.val_images).argmax(1)
        correct = (predicted == self.val_labels).float()
        per_class = [
            correct[self.val_labels == c].mean().item() for c in range(len(CATEGORIES)) if (self.val_labels == c).any()
        ]
        blurred = F.avg_pool2d(F.pad(self.val_images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return {
            "val_accuracy": correct.mean().item(),
            "val_balanced_accuracy": sum(per_class) / len(per_class),
            "val_accuracy_blurred": (self.net(blurred).argmax(1) == self.val_labels).float().mean().item(),
        }

    def export(self, folder: Path, report: RunReport) -> None:
        save_fp16(folder / "classifier.safetensors", self.net.state_dict())
        write_json(
            folder / "studio.json",
            {
                "format": "studio-classifier",
                "image_size": IMAGE_SIZE,
                "base_channels": self.base,
                "features": FEATURES,
                "categories": list(CATEGORIES),
            },
        )
        write_card(
            folder,
            "emoji-classifier",
            summary="An eight-category emoji classifier used only to measure the image models "
            "(category accuracy, FD-emoji). Not a generator; not listed as a model.",
            sections=[
                ("Data and licence", EMOJI_DATA),
                (
                    "Model",
                    f"4 stride-2 stages of two 3x3 conv + BatchNorm + ReLU ({self.base}-{self.base * 2}-"
                    f"{self.base * 4}-{FEATURES} channels), global average pool -> 128-d features -> 8 logits.",
                ),
            ],
            report=report,
            reproduce=f"studio train emoji-classifier --minutes {round(report.seconds / 60)} "
            "--out runs/emoji-classifier",
        )
        finish_folder(folder)
