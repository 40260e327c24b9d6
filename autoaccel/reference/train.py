"""Train the reference model from a seed: VAE, its decoder, the FLUX transformer (rectified flow), the classifier.

Usage::

    python -m autoaccel.reference.train --seed 0 --out autoaccel/reference/fashion_flux

Reads Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (see `autoaccel.reference.data`). Runs on CPU;
the defaults take about half an hour on one thread (see ``docs/reference-model.md``).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
from torch.nn import functional as F

from autoaccel.reference.classifier import CLASSIFIER_PATH, train_classifier
from autoaccel.reference.data import load_fashion_mnist
from autoaccel.reference.model import build_pipeline
from autoaccel.reference.prompts import CLASS_NAMES, class_prompts

__all__ = ["encode_dataset", "finetune_decoder", "main", "train_transformer", "train_vae"]

COND_DROPOUT = 0.1
"""Probability of replacing a training prompt by the empty prompt (enables true classifier-free guidance)."""


def _to_vae_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 32, 32)`` -> float ``(N, 3, 32, 32)`` in ``[-1, 1]`` (grey replicated to RGB)."""
    return (images.float() / 127.5 - 1).unsqueeze(1).expand(-1, 3, -1, -1)


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 5% of `peak`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_vae(vae: AutoencoderKL, images: torch.Tensor, *, steps: int, batch_size: int, seed: int) -> AutoencoderKL:
    """Train `vae` on uint8 images with L1 + MSE reconstruction and a light KL penalty."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    vae.train()
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, 1e-3, 100)
        x = _to_vae_input(images[torch.randint(len(images), (batch_size,), generator=gen)])
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample(generator=gen)).sample
        l1, mse = F.l1_loss(rec, x), F.mse_loss(rec, x)
        kl = posterior.kl().mean()
        loss = l1 + mse + 1e-6 * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"[vae] step {step}/{steps} l1 {l1.item():.4f} mse {mse.item():.4f} kl {kl.item():.1f} "
                f"({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    return vae.eval().requires_grad_(False)


def finetune_decoder(
    vae: AutoencoderKL,
    images: torch.Tensor,
    latents: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    seed: int,
) -> AutoencoderKL:
    """Train only the decoder on posterior samples of the frozen encoder (sharper images, same latent space)."""
    gen = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed + 1)
    decoder = vae.decoder.train().requires_grad_(True)
    opt = torch.optim.AdamW(decoder.parameters(), lr=5e-4, weight_decay=0.0)
    mean, std = latents
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, 5e-4, 50)
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        x = _to_vae_input(images[idx])
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
        rec = vae.decode(z).sample
        l1, mse = F.l1_loss(rec, x), F.mse_loss(rec, x)
        loss = l1 + mse
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"[decoder] step {step}/{steps} l1 {l1.item():.4f} mse {mse.item():.4f} "
                f"({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the VAE posterior ``(mean, std)`` of every image, each ``(N, C, 8, 8)``."""
    means, stds = [], []
    for i in range(0, len(images), 500):
        dist = vae.encode(_to_vae_input(images[i : i + 500])).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def _prompt_table(pipe: FluxPipeline) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[int]]]:
    """Encode every training prompt and ``""`` (last row) once: ``(embeds, pooled, text_ids, rows per class)``."""
    prompts: list[str] = []
    rows: list[list[int]] = []
    for label in range(len(CLASS_NAMES)):
        rows.append([len(prompts) + j for j in range(len(class_prompts(label)))])
        prompts.extend(class_prompts(label))
    prompts.append("")
    with torch.no_grad():
        embeds, pooled, text_ids = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            device=torch.device("cpu"),
            max_sequence_length=pipe.tokenizer_2.model_max_length,
        )
    return embeds, pooled, text_ids, rows


def train_transformer(
    pipe: FluxPipeline,
    latents: tuple[torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float = 1e-3,
    ema_decay: float = 0.999,
) -> FluxTransformer2DModel:
    """Train ``pipe.transformer`` with the rectified-flow loss; return its EMA copy.

    Latents are posterior samples normalised with the VAE's ``shift_factor`` and ``scaling_factor``, packed into 2x2
    patches as FluxPipeline does. Noise level ``sigma ~ U(0, 1)``, ``x_t = (1 - sigma) x_0 + sigma * noise`` and the
    target velocity is ``noise - x_0`` (FlowMatchEulerDiscreteScheduler's convention); the transformer receives
    ``timestep = sigma`` as in the pipeline. Prompts are random paraphrases of the label's class, replaced by ``""``
    with probability `COND_DROPOUT`.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = pipe.transformer.train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    embeds, pooled, text_ids, rows = _prompt_table(pipe)
    row_start = torch.tensor([r[0] for r in rows])
    row_count = torch.tensor([len(r) for r in rows])
    empty_row = len(embeds) - 1
    mean, std = latents
    n, c, h, w = mean.shape
    shift, scale = pipe.vae.config.shift_factor, pipe.vae.config.scaling_factor
    img_ids = FluxPipeline._prepare_latent_image_ids(batch_size, h // 2, w // 2, torch.device("cpu"), torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    start, running = time.perf_counter(), 0.0
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, 200)
        idx = torch.randint(n, (batch_size,), generator=gen)
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
        x0 = FluxPipeline._pack_latents((z - shift) * scale, batch_size, c, h, w)
        label = labels[idx]
        row = row_start[label] + (torch.rand(batch_size, generator=gen) * row_count[label]).long()
        row = torch.where(torch.rand(batch_size, generator=gen) < COND_DROPOUT, empty_row, row)
        sigma = torch.rand(batch_size, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        xt = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
        pred = model(
            hidden_states=xt,
            timestep=sigma,
            pooled_projections=pooled[row],
            encoder_hidden_states=embeds[row],
            txt_ids=text_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        loss = F.mse_loss(pred, noise - x0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"[transformer] step {step}/{steps} loss {running:.4f} ({time.perf_counter() - start:.0f}s)", flush=True
            )
    return ema


def _save_pipeline(pipe: FluxPipeline, out: Path) -> None:
    """Save as a plain ``FluxPipeline`` folder (safetensors) so it loads with ``DiffusionPipeline.from_pretrained``."""
    for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):  # batch calls leave padding state in tokenizer.json
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.backend_tokenizer.no_truncation()
    FluxPipeline(**pipe.components).save_pretrained(str(out), safe_serialization=True)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("fashion_flux"))
    parser.add_argument(
        "--components",
        default="vae,decoder,transformer,classifier",
        help="comma-separated subset of vae,decoder,transformer,classifier; others are loaded from --out",
    )
    parser.add_argument("--vae-steps", type=int, default=1200)
    parser.add_argument("--vae-batch-size", type=int, default=64)
    parser.add_argument("--decoder-steps", type=int, default=1500)
    parser.add_argument("--transformer-steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--classifier-epochs", type=int, default=4)
    parser.add_argument("--classifier-out", type=Path, default=CLASSIFIER_PATH)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    components = set(args.components.split(","))
    unknown = components - {"vae", "decoder", "transformer", "classifier"}
    if unknown:
        parser.error(f"unknown components {sorted(unknown)}")
    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    train_images, train_labels = load_fashion_mnist("train")
    if "classifier" in components:
        acc = train_classifier(
            (train_images, train_labels),
            load_fashion_mnist("test"),
            seed=args.seed,
            epochs=args.classifier_epochs,
            out=args.classifier_out,
        )
        print(f"[classifier] test accuracy {acc:.4f}, saved to {args.classifier_out}", flush=True)
    if not components & {"vae", "decoder", "transformer"}:
        return
    pipe = build_pipeline(args.seed)
    if "transformer" not in components and (args.out / "transformer").is_dir():
        pipe.transformer = FluxTransformer2DModel.from_pretrained(str(args.out / "transformer"))
    if "vae" in components:
        train_vae(pipe.vae, train_images, steps=args.vae_steps, batch_size=args.vae_batch_size, seed=args.seed)
        latents = encode_dataset(pipe.vae, train_images)
        # Normalise latents to zero mean, unit variance (FluxPipeline decodes latents / scaling + shift).
        shift = latents[0].mean().item()
        scale = 1 / (latents[0] - shift).pow(2).add(latents[1].pow(2)).mean().sqrt().item()
        pipe.vae.register_to_config(shift_factor=shift, scaling_factor=scale)
        args.out.mkdir(parents=True, exist_ok=True)
        _save_pipeline(pipe, args.out)
        print(f"[vae] shift_factor {shift:.4f} scaling_factor {scale:.4f}, saved to {args.out}", flush=True)
    else:
        pipe.vae = AutoencoderKL.from_pretrained(str(args.out / "vae")).eval().requires_grad_(False)
        latents = encode_dataset(pipe.vae, train_images)
    if "decoder" in components:
        finetune_decoder(
            pipe.vae, train_images, latents, steps=args.decoder_steps, batch_size=args.vae_batch_size, seed=args.seed
        )
        _save_pipeline(pipe, args.out)
        print(f"[decoder] saved to {args.out}", flush=True)
    if "transformer" in components:
        pipe.transformer = train_transformer(
            pipe,
            latents,
            train_labels,
            steps=args.transformer_steps,
            batch_size=args.batch_size,
            seed=args.seed,
            lr=args.lr,
        )
        _save_pipeline(pipe, args.out)
        print(f"[transformer] saved to {args.out}", flush=True)
    print(f"done in {time.perf_counter() - total:.0f}s", flush=True)


if __name__ == "__main__":
    main()
