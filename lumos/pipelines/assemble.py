"""Build the Lumos pipelines from the workflow's saved parts (a trained DiT, the VAE, an encoder).

Each `assemble_*` function loads the parts the way the workflow's commands load them and returns
a pipeline ready for `save_pretrained`; `pipeline_sampler` is the workflow's own use of an
exported T2I pipeline (the official benchmarks' images, the prompt grids).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextModel, T5EncoderModel

from lumos.diffusion.gaussian import prediction_type_of
from lumos.diffusion.sampling import make_scheduler
from lumos.models.dit import LumosDiT
from lumos.pipelines.i2i import LumosI2IPipeline, with_pooler
from lumos.pipelines.i2v import LumosI2VPipeline
from lumos.pipelines.nvs import LumosNVSPipeline
from lumos.pipelines.t2i import LumosT2IPipeline


def _load_parts(transformer_dir: str, vae_dir: str, sampler: str, scaling_factor: float | None,
                model_class=LumosDiT):
    """The trained DiT, the VAE (with `scaling_factor` written into its config when given) and a
    scheduler matching training (`make_scheduler`)."""
    transformer = model_class.from_pretrained(str(transformer_dir))
    vae = AutoencoderKL.from_pretrained(str(vae_dir))
    if scaling_factor is not None:
        vae.register_to_config(scaling_factor=float(scaling_factor))
    scheduler = make_scheduler(sampler, learn_sigma=transformer.config.learn_sigma,
                               prediction_type=prediction_type_of(transformer))
    return transformer, vae, scheduler


def load_vit(encoder_dir: str):
    """A transformers ViTModel (the pipelines read the CLS token of its last hidden state, as
    `lumos.components.encoders.load_encoder` does). Its pooler, unused, is replaced by a zero one
    (`lumos.pipelines.i2i.with_pooler`): the workflow saves its encoders without one."""
    from transformers import AutoConfig, ViTModel

    model_type = AutoConfig.from_pretrained(str(encoder_dir)).model_type
    if model_type != "vit":
        raise ValueError(f"vision encoder at {encoder_dir} has model_type {model_type!r}; the pipelines take a "
                         "transformers ViT (components.<encoder>.format: transformers, a ViT folder or hub id)")
    return with_pooler(ViTModel.from_pretrained(str(encoder_dir), add_pooling_layer=False))


def assemble_t2i_pipeline(transformer_dir: str, vae_dir: str, text_encoder_dir: str, sampler: str = "dpm++",
                          scaling_factor: float | None = None) -> LumosT2IPipeline:
    """Build a `LumosT2IPipeline` from saved parts; the text encoder class (T5EncoderModel or
    CLIPTextModel) follows the folder's `model_type` ("t5", or "clip"/"clip_text_model": a full
    CLIP folder gives its text tower); the tokenizer is loaded with AutoTokenizer from the same folder."""
    from transformers import AutoConfig, AutoTokenizer

    transformer, vae, scheduler = _load_parts(transformer_dir, vae_dir, sampler, scaling_factor)
    model_type = AutoConfig.from_pretrained(str(text_encoder_dir)).model_type
    classes = {"t5": T5EncoderModel, "clip": CLIPTextModel, "clip_text_model": CLIPTextModel}
    if model_type not in classes:
        raise ValueError(f"text encoder at {text_encoder_dir} has model_type {model_type!r}; expected t5 or clip")
    text_encoder = classes[model_type].from_pretrained(str(text_encoder_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(text_encoder_dir))
    return LumosT2IPipeline(transformer, vae, scheduler, text_encoder, tokenizer)


def _assemble_vision(pipeline_class, model_class, transformer_dir, vae_dir, encoder_dir, input_size, mean, std,
                     sampler, scaling_factor, resize):
    """A vision-conditioned pipeline (I2I, NVS, I2V) from saved parts."""
    transformer, vae, scheduler = _load_parts(transformer_dir, vae_dir, sampler, scaling_factor, model_class)
    return pipeline_class(transformer, vae, scheduler, load_vit(encoder_dir), input_size, list(mean), list(std),
                          resize)


def assemble_i2i_pipeline(transformer_dir: str, vae_dir: str, encoder_dir: str, input_size: int, mean, std,
                          sampler: str = "dpm++", scaling_factor: float | None = None,
                          resize: str = "bicubic") -> LumosI2IPipeline:
    """Build a `LumosI2IPipeline` from saved parts: a transformers ViTModel encoder (no pooler)
    and its preprocessing (`input_size`, `mean`, `std`, `resize` of the `components.<encoder>` block)."""
    return _assemble_vision(LumosI2IPipeline, LumosDiT, transformer_dir, vae_dir, encoder_dir, input_size, mean, std,
                            sampler, scaling_factor, resize)


def assemble_nvs_pipeline(transformer_dir: str, vae_dir: str, encoder_dir: str, input_size: int, mean, std,
                          sampler: str = "dpm++", scaling_factor: float | None = None,
                          resize: str = "bicubic") -> LumosNVSPipeline:
    """Build a `LumosNVSPipeline` from saved parts (as `assemble_i2i_pipeline`; `vae_dir` may be
    the VAE whose decoder is fine-tuned on the renders, `nvs.decoder`)."""
    return _assemble_vision(LumosNVSPipeline, LumosDiT, transformer_dir, vae_dir, encoder_dir, input_size, mean, std,
                            sampler, scaling_factor, resize)


def assemble_i2v_pipeline(transformer_dir: str, vae_dir: str, encoder_dir: str, input_size: int, mean, std,
                          sampler: str = "dpm++", scaling_factor: float | None = None,
                          resize: str = "bicubic") -> LumosI2VPipeline:
    """Build a `LumosI2VPipeline` from saved parts (a LumosVideoDiT, as `assemble_i2i_pipeline`)."""
    from lumos.models.video import LumosVideoDiT

    return _assemble_vision(LumosI2VPipeline, LumosVideoDiT, transformer_dir, vae_dir, encoder_dir, input_size, mean,
                            std, sampler, scaling_factor, resize)


def pipeline_sampler(pipeline_dir: str, sample_cfg: dict, device):
    """`generate(prompts, seed, per_prompt=1) -> uint8 (n * per_prompt, H, W, 3)` from an exported
    T2I pipeline (each prompt encoded once, its images consecutive), with the
    configured sampler steps and guidance, at `sample_cfg["image_size"]` pixels square when the
    settings give one (the released T2I model's 1024), else at the model's training size. The
    pixels are the PIL output's, which round as the workflow's PNGs round."""
    pipe = LumosT2IPipeline.from_pretrained(pipeline_dir).to(device)
    pipe.set_progress_bar_config(disable=True)
    size = sample_cfg.get("image_size")

    def generate(prompts: list[str], seed: int, per_prompt: int = 1):
        images = pipe(prompts, num_inference_steps=sample_cfg["steps"], guidance_scale=sample_cfg["guidance_scale"],
                      num_images_per_prompt=per_prompt, generator=torch.Generator().manual_seed(seed), height=size,
                      width=size).images
        return np.stack([np.asarray(img) for img in images])

    return generate
