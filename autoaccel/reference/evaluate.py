"""Evaluate the reference model: classifier accuracy, per-class generation accuracy, timing, step redundancy, grid.

Usage::

    python -m autoaccel.reference.evaluate --samples-per-class 30 --grid docs/reference_samples.png

Prints a report (the numbers in ``docs/reference-model.md``) and optionally writes it as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from autoaccel.reference import CLASS_NAMES, class_prompts, classify, load_classifier, load_reference_pipeline
from autoaccel.reference.classifier import evaluate_classifier
from autoaccel.reference.data import DatasetMissingError, load_fashion_mnist
from autoaccel.reference.model import FashionFluxPipeline

__all__ = [
    "generation_accuracy",
    "main",
    "reconstruction_accuracy",
    "sample_grid",
    "step_relative_change",
    "timing_breakdown",
]


def _prompts_for(label: int, count: int) -> list[str]:
    """`count` prompts of class `label`, cycling through its paraphrases."""
    paraphrases = class_prompts(label)
    return [paraphrases[i % len(paraphrases)] for i in range(count)]


@torch.no_grad()
def generation_accuracy(
    pipe: FashionFluxPipeline, samples_per_class: int, *, seed: int = 0, **call_kwargs: Any
) -> list[float]:
    """Return, per class, the fraction of generated images the classifier assigns to the prompt's class.

    Images of class ``c`` come from one batched call with ``generator=torch.Generator().manual_seed(seed + c)``.
    """
    model = load_classifier()
    accuracies = []
    for label in range(len(CLASS_NAMES)):
        images = pipe(
            _prompts_for(label, samples_per_class),
            generator=torch.Generator().manual_seed(seed + label),
            output_type="pt",
            **call_kwargs,
        ).images
        accuracies.append((classify(images, model) == label).float().mean().item())
    return accuracies


@torch.no_grad()
def reconstruction_accuracy(pipe: FashionFluxPipeline, test: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
    """Per-class classifier accuracy on VAE reconstructions of test images (an upper bound for generations)."""
    model = load_classifier()
    images, labels = test
    hits = torch.zeros(len(CLASS_NAMES))
    for i in range(0, len(images), 500):
        x = (images[i : i + 500].float() / 127.5 - 1).unsqueeze(1).expand(-1, 3, -1, -1)
        rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample
        pred = classify((rec / 2 + 0.5).clamp(0, 1), model)
        hits += torch.bincount(labels[i : i + 500][pred == labels[i : i + 500]], minlength=len(CLASS_NAMES))
    return (hits / torch.bincount(labels, minlength=len(CLASS_NAMES))).tolist()


def _timed_forward(module: torch.nn.Module, times: list[float]) -> Callable[[], None]:
    """Record the wall time of each forward of `module` in `times`; return a function that removes the hooks."""
    starts: list[float] = []
    pre = module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    post = module.register_forward_hook(lambda *_: times.append(time.perf_counter() - starts.pop()))

    def remove() -> None:
        pre.remove()
        post.remove()

    return remove


@torch.no_grad()
def timing_breakdown(pipe: FashionFluxPipeline, *, repeats: int = 7, **call_kwargs: Any) -> dict[str, float]:
    """Median wall time of a one-prompt default call and the shares of denoiser, VAE decoder and text encoders.

    Run it with ``torch.set_num_threads(1)`` to measure the single-thread numbers.
    """
    rows: list[dict[str, float]] = []
    for i in range(repeats + 1):
        times: dict[str, list[float]] = {"transformer": [], "vae": [], "text": []}
        removers = [
            _timed_forward(pipe.transformer, times["transformer"]),
            _timed_forward(pipe.vae.decoder, times["vae"]),
            _timed_forward(pipe.text_encoder, times["text"]),
            _timed_forward(pipe.text_encoder_2, times["text"]),
        ]
        start = time.perf_counter()
        pipe("a photo of a sneaker", generator=torch.Generator().manual_seed(i), **call_kwargs)
        total = time.perf_counter() - start
        for remove in removers:
            remove()
        if i:  # the first call warms up
            rows.append({"total_s": total, **{k: sum(v) for k, v in times.items()}})
    total = statistics.median(r["total_s"] for r in rows)
    return {
        "total_s": total,
        "denoiser_share": statistics.median(r["transformer"] / r["total_s"] for r in rows),
        "vae_decode_share": statistics.median(r["vae"] / r["total_s"] for r in rows),
        "text_encoders_share": statistics.median(r["text"] / r["total_s"] for r in rows),
    }


@torch.no_grad()
def step_relative_change(pipe: FashionFluxPipeline, *, seed: int = 0, **call_kwargs: Any) -> list[float]:
    """Return ``||v_i - v_(i-1)|| / ||v_(i-1)||`` of the transformer output per step ``i >= 1``.

    Averaged over the ten canonical class prompts (one image each, one batched call).
    """
    outputs: list[torch.Tensor] = []
    hook = pipe.transformer.register_forward_hook(lambda _m, _a, out: outputs.append(out[0].clone()))
    try:
        pipe(
            [class_prompts(c)[0] for c in range(len(CLASS_NAMES))],
            generator=torch.Generator().manual_seed(seed),
            **call_kwargs,
        )
    finally:
        hook.remove()
    changes = []
    for prev, cur in zip(outputs, outputs[1:], strict=False):
        per_image = (cur - prev).flatten(1).norm(dim=1) / prev.flatten(1).norm(dim=1)
        changes.append(per_image.mean().item())
    return changes


@torch.no_grad()
def sample_grid(pipe: FashionFluxPipeline, path: Path, *, columns: int = 10, seed: int = 0, scale: int = 2) -> None:
    """Write a PNG grid of samples: one row per class (canonical prompt, default call), labelled on the left."""
    size = pipe.default_sample_size * pipe.vae_scale_factor * scale
    margin = 80
    grid = Image.new("RGB", (margin + columns * size, len(CLASS_NAMES) * size), "white")
    draw = ImageDraw.Draw(grid)
    for label, name in enumerate(CLASS_NAMES):
        images = pipe([class_prompts(label)[0]] * columns, generator=torch.Generator().manual_seed(seed + label)).images
        for col, image in enumerate(images):
            grid.paste(image.resize((size, size), Image.NEAREST), (margin + col * size, label * size))
        draw.text((4, label * size + size // 2 - 6), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-per-class", type=int, default=30)
    parser.add_argument("--cfg-scale", type=float, default=2.0, help="true_cfg_scale of the CFG evaluation")
    parser.add_argument("--grid", type=Path, default=None, help="where to write the sample grid PNG")
    parser.add_argument("--json", type=Path, default=None, help="where to write the report as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pipe = load_reference_pipeline()
    report: dict[str, Any] = {}
    try:
        test = load_fashion_mnist("test")
        report["classifier_test_accuracy"] = evaluate_classifier(load_classifier(), test)
        print(f"classifier test accuracy: {report['classifier_test_accuracy']:.4f}")
        recon = reconstruction_accuracy(pipe, test)
        report["vae_reconstruction_accuracy"] = dict(zip(CLASS_NAMES, recon, strict=True))
        print(f"classifier accuracy on VAE reconstructions of the test set: mean {sum(recon) / len(recon):.3f}")
        for name, acc in zip(CLASS_NAMES, recon, strict=True):
            print(f"  {name:12s} {acc:.3f}")
    except DatasetMissingError as err:
        print(f"classifier test accuracy: skipped ({err})")
    for key, kwargs in {
        "default": {},
        f"true_cfg_{args.cfg_scale:g}": {"true_cfg_scale": args.cfg_scale, "negative_prompt": ""},
    }.items():
        accs = generation_accuracy(pipe, args.samples_per_class, seed=args.seed, **kwargs)
        report[f"generation_accuracy_{key}"] = dict(zip(CLASS_NAMES, accs, strict=True))
        print(f"generation accuracy ({key}, {args.samples_per_class}/class): mean {sum(accs) / len(accs):.3f}")
        for name, acc in zip(CLASS_NAMES, accs, strict=True):
            print(f"  {name:12s} {acc:.3f}")
    report["timing_1_thread"] = timing_breakdown(pipe)
    print("timing (1 thread, 1 prompt, default call):", json.dumps(report["timing_1_thread"]))
    changes = step_relative_change(pipe, seed=args.seed)
    report["step_relative_change"] = changes
    print("relative change of the transformer output vs previous step:")
    print("  " + " ".join(f"{c:.3f}" for c in changes))
    if args.grid is not None:
        sample_grid(pipe, args.grid, seed=args.seed)
        print(f"sample grid written to {args.grid}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
