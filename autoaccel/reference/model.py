"""Construction of the small FLUX-family reference pipeline (architecture only; weights come from training)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from autoaccel.reference.prompts import all_prompts
from autoaccel.tokenizers import clip_tokenizer, t5_tokenizer

__all__ = [
    "DEFAULT_STEPS",
    "NATIVE_SIZE",
    "TEXT_MAX_LENGTH",
    "FashionFluxPipeline",
    "build_pipeline",
    "build_transformer",
    "build_vae",
]

NATIVE_SIZE = 32
"""Native image size in pixels (Fashion-MNIST's 28x28 padded to 32x32, grey replicated to RGB)."""
DEFAULT_STEPS = 28
"""Default number of denoising steps (FluxPipeline's default)."""
TEXT_MAX_LENGTH = 16
"""Token length of both text encoders (CLIP and T5 prompts are padded or truncated to it)."""
_TEXT_DIM = 64  # width of both random frozen text encoders


class FashionFluxPipeline(FluxPipeline):
    """`FluxPipeline` whose defaults match the reference model: native 32x32 size and 16-token T5 prompts.

    The saved folder names plain ``FluxPipeline`` (so ``DiffusionPipeline.from_pretrained(path)`` works without
    AutoAccel); a plain ``FluxPipeline`` must then be called with ``height=32, width=32, max_sequence_length=16``.
    This subclass only changes those defaults; it loads the same folder with ``FashionFluxPipeline.from_pretrained``.
    """

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        text_encoder_2: T5EncoderModel,
        tokenizer_2: T5TokenizerFast,
        transformer: FluxTransformer2DModel,
        image_encoder: Any = None,
        feature_extractor: Any = None,
    ) -> None:
        super().__init__(
            scheduler,
            vae,
            text_encoder,
            tokenizer,
            text_encoder_2,
            tokenizer_2,
            transformer,
            image_encoder,
            feature_extractor,
        )
        self.default_sample_size = NATIVE_SIZE // self.vae_scale_factor

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run `FluxPipeline.__call__` with ``max_sequence_length`` defaulting to the T5 tokenizer's length."""
        kwargs.setdefault("max_sequence_length", self.tokenizer_2.model_max_length)
        return super().__call__(*args, **kwargs)


def build_vae() -> AutoencoderKL:
    """Return the untrained VAE: 32x32x3 images <-> 8x8x8 latents (two downsamplings, no quant convs as in FLUX)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=8,
        norm_num_groups=16,
        sample_size=NATIVE_SIZE,
        scaling_factor=1.0,
        shift_factor=0.0,
        use_quant_conv=False,
        use_post_quant_conv=False,
        force_upcast=False,
    )


def build_transformer(latent_channels: int = 8) -> FluxTransformer2DModel:
    """Return the untrained denoiser: a FLUX transformer with 2 double-stream and 4 single-stream blocks, width 128."""
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=latent_channels * 4,  # 2x2 latent patches are packed into tokens by FluxPipeline
        num_layers=2,
        num_single_layers=4,
        attention_head_dim=32,
        num_attention_heads=4,
        joint_attention_dim=_TEXT_DIM,
        pooled_projection_dim=_TEXT_DIM,
        guidance_embeds=False,
        axes_dims_rope=(8, 12, 12),
    )


def build_text_encoders(seed: int) -> tuple[CLIPTokenizer, CLIPTextModel, T5TokenizerFast, T5EncoderModel]:
    """Return ``(clip_tokenizer, clip_encoder, t5_tokenizer, t5_encoder)``; encoders are random, seeded by `seed`."""
    words = [prompt for prompt, _ in all_prompts()]
    tokenizer = clip_tokenizer(words, model_max_length=TEXT_MAX_LENGTH)
    tokenizer_2 = t5_tokenizer(words, model_max_length=TEXT_MAX_LENGTH)
    torch.manual_seed(seed)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=_TEXT_DIM,
            intermediate_size=2 * _TEXT_DIM,
            projection_dim=_TEXT_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TEXT_MAX_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=_TEXT_DIM,
            d_kv=16,
            d_ff=2 * _TEXT_DIM,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=TEXT_MAX_LENGTH,
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            decoder_start_token_id=tokenizer_2.pad_token_id,
        )
    )
    return tokenizer, clip.eval().requires_grad_(False), tokenizer_2, t5.eval().requires_grad_(False)


def build_pipeline(seed: int = 0) -> FashionFluxPipeline:
    """Return an untrained reference pipeline (text encoders at their fixed random initialisation from `seed`)."""
    tokenizer, clip, tokenizer_2, t5 = build_text_encoders(seed)
    torch.manual_seed(seed + 1)
    vae = build_vae()
    transformer = build_transformer(vae.config.latent_channels)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    return FashionFluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=tokenizer,
        text_encoder_2=t5,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
