"""Tiny random-weight diffusers pipelines for fast, offline tests.

Each pipeline has the real pipeline class and component classes with tiny sizes (hidden size 32, a 2-level VAE so
``vae_scale_factor == 2``), random float32 CPU weights fixed by ``seed``, and in-code tokenizers
(:mod:`autoaccel.tokenizers`), so nothing is downloaded. A 32x32 image is a 16x16 latent, i.e. 64 image tokens for
every transformer. ``pipe.save_pretrained(d)`` reloads with ``DiffusionPipeline.from_pretrained(d)`` to identical
outputs.

Per kind: pipeline class, denoiser attribute, and its block ModuleLists (attribute: length):

- ``flux``: ``FluxPipeline``, ``pipe.transformer`` (``FluxTransformer2DModel``, guidance-embedded like FLUX.1-dev):
  ``transformer_blocks``: 2 (double-stream), ``single_transformer_blocks``: 3.
- ``sd3``: ``StableDiffusion3Pipeline``, ``pipe.transformer`` (``SD3Transformer2DModel``): ``transformer_blocks``: 4.
- ``pixart``: ``PixArtAlphaPipeline``, ``pipe.transformer`` (``PixArtTransformer2DModel``): ``transformer_blocks``: 4.
- ``dit``: ``DiTPipeline``, ``pipe.transformer`` (``DiTTransformer2DModel``): ``transformer_blocks``: 4; labels in
  `TINY_DIT_LABELS`.
- ``sd``: ``StableDiffusionPipeline``, ``pipe.unet`` (``UNet2DConditionModel``): ``down_blocks``: 2, ``mid_block``,
  ``up_blocks``: 2; no safety checker.

PixArt's call defaults to ``use_resolution_binning=True``, which generates at 256x256 and resizes back (about 2 s);
pass ``use_resolution_binning=False`` as `default_call_kwargs` does. Tiny models run fastest on one thread
(``torch.set_num_threads(1)``); more threads mostly add contention.

Example:
    >>> pipe = tiny_pipeline("flux")
    >>> pipe(**default_call_kwargs("flux")).images.shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

__all__ = [
    "TINY_DIT_LABELS",
    "TINY_KINDS",
    "TINY_NEGATIVE_PROMPT",
    "TINY_PROMPT",
    "TINY_SIZE",
    "default_call_kwargs",
    "tiny_pipeline",
]

TINY_KINDS: tuple[str, ...] = ("flux", "sd3", "pixart", "dit", "sd")
"""Kinds accepted by `tiny_pipeline` and `default_call_kwargs`."""

TINY_SIZE = 32
"""Image height and width (pixels) used by `default_call_kwargs`; the DiT pipeline always makes this size."""

TINY_PROMPT = "a photo of a red cat sitting on a wooden table"
"""Prompt used by `default_call_kwargs`."""

TINY_NEGATIVE_PROMPT = "blurry, low quality"
"""Negative prompt used by `default_call_kwargs` when classifier-free guidance is on."""

TINY_DIT_LABELS: dict[int, str] = {
    0: "cat, kitty",
    1: "dog, puppy",
    2: "horse",
    3: "bird",
    4: "fish",
    5: "tree",
    6: "flower",
    7: "car",
    8: "house",
    9: "mountain",
}
"""``id2label`` of the tiny DiT pipeline (`pipe.get_label_ids("dog")` is ``[1]``)."""

_HIDDEN = 32  # width of every text encoder and transformer
_LATENT_CHANNELS = 4
_MAX_SEQUENCE_LENGTH = 32  # T5 tokens used by default_call_kwargs


def _seeded(seed: int, name: str, build: Callable[[], Any]) -> Any:
    """Build one component right after seeding torch from ``(seed, name)`` so each component has its own stream."""
    torch.manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
    return build()


def _vae(seed: int, *, quant_conv: bool, scaling_factor: float, shift_factor: float | None = None) -> Any:
    from diffusers import AutoencoderKL

    return _seeded(
        seed,
        "vae",
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=_LATENT_CHANNELS,
            norm_num_groups=4,
            sample_size=TINY_SIZE,
            scaling_factor=scaling_factor,
            shift_factor=shift_factor,
            use_quant_conv=quant_conv,
            use_post_quant_conv=quant_conv,
        ),
    )


def _clip_config(tokenizer: Any, *, projection_dim: int = _HIDDEN) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="quick_gelu",
    )


def _t5(seed: int, tokenizer: Any, *, d_model: int = _HIDDEN) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _seeded(seed, "text_encoder_t5", lambda: T5EncoderModel(config))


def _flux(seed: int) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    from autoaccel.tokenizers import clip_tokenizer, t5_tokenizer

    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    transformer = _seeded(
        seed,
        "transformer",
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=_LATENT_CHANNELS * 4,  # latents are packed 2x2
            num_layers=2,
            num_single_layers=3,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_HIDDEN,
            pooled_projection_dim=_HIDDEN,
            guidance_embeds=True,  # like FLUX.1-dev: guidance_scale is an input, not CFG
            axes_dims_rope=(4, 4, 8),
        ),
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(  # FLUX.1-dev scheduler settings
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        ),
        vae=_vae(seed, quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=_seeded(seed, "text_encoder", lambda: CLIPTextModel(_clip_config(tokenizer))),
        tokenizer=tokenizer,
        text_encoder_2=_t5(seed, tokenizer_2),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
        image_encoder=None,
        feature_extractor=None,
    )


def _sd3(seed: int) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    from autoaccel.tokenizers import clip_tokenizer, t5_tokenizer

    tokenizer, tokenizer_2, tokenizer_3 = clip_tokenizer(), clip_tokenizer(), t5_tokenizer()
    t5_dim = 2 * _HIDDEN  # SD3 pads the concatenated CLIP states (2 x 32) to the T5 width
    transformer = _seeded(
        seed,
        "transformer",
        lambda: SD3Transformer2DModel(
            sample_size=TINY_SIZE // 2,
            patch_size=2,
            in_channels=_LATENT_CHANNELS,
            out_channels=_LATENT_CHANNELS,
            num_layers=4,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=t5_dim,
            caption_projection_dim=_HIDDEN,
            pooled_projection_dim=2 * _HIDDEN,
            pos_embed_max_size=TINY_SIZE,
        ),
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(seed, quant_conv=False, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=_seeded(seed, "text_encoder", lambda: CLIPTextModelWithProjection(_clip_config(tokenizer))),
        tokenizer=tokenizer,
        text_encoder_2=_seeded(seed, "text_encoder_2", lambda: CLIPTextModelWithProjection(_clip_config(tokenizer_2))),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5(seed, tokenizer_3, d_model=t5_dim),
        tokenizer_3=tokenizer_3,
    )


def _pixart(seed: int) -> Any:
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    from autoaccel.tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    transformer = _seeded(
        seed,
        "transformer",
        lambda: PixArtTransformer2DModel(
            sample_size=TINY_SIZE,  # must be 32, 64 or 128 for the pipeline's (default on) resolution binning
            patch_size=2,
            in_channels=_LATENT_CHANNELS,
            out_channels=2 * _LATENT_CHANNELS,  # learned sigma, like PixArt-alpha
            num_layers=4,
            attention_head_dim=8,
            num_attention_heads=4,
            cross_attention_dim=_HIDDEN,
            caption_channels=_HIDDEN,
            norm_num_groups=4,
        ),
    )
    return PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5(seed, tokenizer),
        vae=_vae(seed, quant_conv=True, scaling_factor=0.18215),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )


def _dit(seed: int) -> Any:
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    transformer = _seeded(
        seed,
        "transformer",
        lambda: DiTTransformer2DModel(
            sample_size=TINY_SIZE // 2,  # latent size: DiTPipeline always generates this
            patch_size=2,
            in_channels=_LATENT_CHANNELS,
            out_channels=2 * _LATENT_CHANNELS,  # learned sigma, like DiT-XL-2
            num_layers=4,
            attention_head_dim=8,
            num_attention_heads=4,
            norm_num_groups=4,
            num_embeds_ada_norm=1000,  # DiTPipeline hard-codes 1000 as the null (unconditional) class
        ),
    )
    id2label = dict(TINY_DIT_LABELS)
    pipe = DiTPipeline(
        transformer=transformer,
        vae=_vae(seed, quant_conv=True, scaling_factor=0.18215),
        scheduler=DDIMScheduler(),
        id2label=id2label,
    )
    pipe.register_to_config(id2label=id2label)  # saved in model_index.json so from_pretrained restores labels
    return pipe


def _sd(seed: int) -> Any:
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from autoaccel.tokenizers import clip_tokenizer

    tokenizer = clip_tokenizer()
    unet = _seeded(
        seed,
        "unet",
        lambda: UNet2DConditionModel(
            sample_size=TINY_SIZE // 2,
            in_channels=_LATENT_CHANNELS,
            out_channels=_LATENT_CHANNELS,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            norm_num_groups=4,
            cross_attention_dim=_HIDDEN,
            attention_head_dim=4,
        ),
    )
    return StableDiffusionPipeline(
        vae=_vae(seed, quant_conv=True, scaling_factor=0.18215),
        text_encoder=_seeded(seed, "text_encoder", lambda: CLIPTextModel(_clip_config(tokenizer))),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


_BUILDERS: dict[str, Callable[[int], Any]] = {"flux": _flux, "sd3": _sd3, "pixart": _pixart, "dit": _dit, "sd": _sd}


def _check_kind(kind: str) -> None:
    if kind not in _BUILDERS:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}; valid kinds: {', '.join(TINY_KINDS)}")


def tiny_pipeline(kind: str, seed: int = 0) -> DiffusionPipeline:
    """Build a tiny random-weight diffusers pipeline (float32, CPU, progress bar off).

    The global torch RNG state is left untouched.

    Args:
        kind: one of `TINY_KINDS`: ``"flux"``, ``"sd3"``, ``"pixart"``, ``"dit"`` or ``"sd"``.
        seed: fixes every weight (each component is built right after seeding from ``(seed, component name)``).

    Returns:
        The `diffusers.DiffusionPipeline` subclass named in this module's table.

    Raises:
        ValueError: ``kind`` is not one of `TINY_KINDS`.
    """
    _check_kind(kind)
    with torch.random.fork_rng(devices=[]):
        pipe = _BUILDERS[kind](seed)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # as from_pretrained does: no dropout (T5) or random class dropout (DiT)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def default_call_kwargs(kind: str, *, cfg: bool | None = None, steps: int = 4, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for a fast deterministic call ``pipe(**default_call_kwargs(kind))`` of `tiny_pipeline`.

    Every call returns a fresh ``torch.Generator().manual_seed(seed)``. Images are ``TINY_SIZE`` x ``TINY_SIZE``;
    ``output_type="pt"``, so ``.images`` is a float32 tensor of shape ``(1, 3, 32, 32)`` in ``[0, 1]`` for every kind.

    Per kind:

    - ``flux``: `TINY_PROMPT`, ``guidance_scale=3.5`` (embedded guidance, one transformer pass per step),
      ``max_sequence_length=32``. With ``cfg=True`` also ``negative_prompt`` and ``true_cfg_scale=2.0``
      (true classifier-free guidance: a second transformer pass per step). Default: no CFG.
    - ``sd3``: `TINY_PROMPT`, ``negative_prompt``, ``max_sequence_length=32``, ``guidance_scale=5.0`` (CFG, batch of 2).
    - ``pixart``: `TINY_PROMPT`, ``negative_prompt``, ``max_sequence_length=32``, ``guidance_scale=4.5`` (CFG),
      ``use_resolution_binning=False`` (binning would generate at 256x256 and resize back), ``clean_caption=False``
      (needs bs4 and ftfy).
    - ``sd``: `TINY_PROMPT`, ``negative_prompt``, ``guidance_scale=7.5`` (CFG).
    - ``dit``: ``class_labels=[1]`` ("dog"), ``guidance_scale=4.0`` (CFG against the null class 1000); no prompt,
      height or width (DiT always makes 32x32 here).

    Args:
        kind: one of `TINY_KINDS`.
        cfg: classifier-free guidance. ``None`` (default): the kind's native behaviour (on for sd3, pixart, sd and
            dit; off for flux). ``True``: on for every kind. ``False``: off (``guidance_scale=1.0``, flux without
            ``true_cfg_scale``).
        steps: ``num_inference_steps``.
        seed: seed of the returned generator.

    Raises:
        ValueError: ``kind`` is not one of `TINY_KINDS`.
    """
    _check_kind(kind)
    use_cfg = kind != "flux" if cfg is None else cfg
    kwargs: dict[str, Any] = {
        "num_inference_steps": steps,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "pt",
    }
    if kind == "dit":
        return {"class_labels": [1], "guidance_scale": 4.0 if use_cfg else 1.0, **kwargs}
    kwargs.update(prompt=TINY_PROMPT, height=TINY_SIZE, width=TINY_SIZE)
    if kind != "sd":
        kwargs["max_sequence_length"] = _MAX_SEQUENCE_LENGTH
    if kind == "flux":
        kwargs["guidance_scale"] = 3.5
        if use_cfg:
            kwargs.update(negative_prompt=TINY_NEGATIVE_PROMPT, true_cfg_scale=2.0)
        return kwargs
    kwargs["guidance_scale"] = {"sd3": 5.0, "pixart": 4.5, "sd": 7.5}[kind] if use_cfg else 1.0
    if use_cfg:
        kwargs["negative_prompt"] = TINY_NEGATIVE_PROMPT
    if kind == "pixart":
        kwargs.update(use_resolution_binning=False, clean_caption=False)
    return kwargs
