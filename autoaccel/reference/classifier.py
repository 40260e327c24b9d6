"""A small Fashion-MNIST CNN that judges whether generated images show their prompt's class."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from autoaccel.errors import AutoAccelError
from autoaccel.reference.model import NATIVE_SIZE

__all__ = ["CLASSIFIER_PATH", "FashionClassifier", "classify", "load_classifier", "train_classifier"]

CLASSIFIER_PATH = Path(__file__).with_name("classifier.safetensors")
"""Committed classifier weights (trained by ``python -m autoaccel.reference.train --components classifier``)."""


class FashionClassifier(nn.Module):
    """Three conv blocks and two linear layers on 32x32 greyscale images (about 0.16M parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return class logits ``(N, 10)`` for ``(N, C, 32, 32)`` images in ``[0, 1]`` (channels are averaged)."""
        x = images.mean(dim=1, keepdim=True) * 2 - 1
        return self.head(self.features(x))


def load_classifier(path: Path | str = CLASSIFIER_PATH) -> FashionClassifier:
    """Load the committed classifier weights (safetensors) into an eval-mode `FashionClassifier`."""
    path = Path(path)
    if not path.is_file():
        raise AutoAccelError(
            f"classifier weights {path} not found; train them with `python -m autoaccel.reference.train "
            "--components classifier`"
        )
    model = FashionClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


@torch.no_grad()
def classify(images: torch.Tensor, model: FashionClassifier | None = None) -> torch.Tensor:
    """Return the predicted class index ``(N,)`` of each image.

    Args:
        images: float ``(N, C, 32, 32)`` tensor in ``[0, 1]`` (``C`` is 1 or 3; RGB is averaged to grey), e.g.
            ``pipe(prompts, output_type="pt").images``.
        model: classifier to use; defaults to `load_classifier()`.
    """
    if images.ndim != 4 or images.shape[-2:] != (NATIVE_SIZE, NATIVE_SIZE):
        raise ValueError(f"images must be (N, C, {NATIVE_SIZE}, {NATIVE_SIZE}) in [0, 1], got {tuple(images.shape)}")
    model = model if model is not None else load_classifier()
    return model(images.float()).argmax(dim=1)


def train_classifier(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    seed: int = 0,
    epochs: int = 4,
    batch_size: int = 128,
    out: Path | str = CLASSIFIER_PATH,
) -> float:
    """Train the classifier on uint8 ``(N, 32, 32)`` images, save it to `out`, and return its test accuracy."""
    torch.manual_seed(seed)
    model = FashionClassifier()
    images, labels = train
    steps = epochs * (len(images) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    start, step = time.perf_counter(), 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=gen)
        for i in range(len(images) // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            x = images[idx].unsqueeze(1).float() / 255
            shift = torch.randint(-2, 3, (2,), generator=gen).tolist()  # small translations
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        acc = evaluate_classifier(model, test)
        print(
            f"[classifier] epoch {epoch + 1}/{epochs} loss {loss.item():.3f} test acc {acc:.4f} "
            f"({time.perf_counter() - start:.0f}s)",
            flush=True,
        )
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return evaluate_classifier(model, test)


@torch.no_grad()
def evaluate_classifier(model: FashionClassifier, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Return the accuracy of `model` on uint8 ``(N, 32, 32)`` images and their labels."""
    model.eval()
    images, labels = test
    correct = 0
    for i in range(0, len(images), 1000):
        x = images[i : i + 1000].unsqueeze(1).float() / 255
        correct += (model(x).argmax(1) == labels[i : i + 1000]).sum().item()
    return correct / len(images)
