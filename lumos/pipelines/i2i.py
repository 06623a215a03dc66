"""`LumosI2IPipeline`: image-to-image from a reference image's vision features (Lumos-I2I, RCG).

`VisionPipelineBase` is what the image-conditioned pipelines (I2I, NVS, I2V) share: a
transformers ViT `image_encoder` whose preprocessing (`input_size`, `mean`, `std`, `resize`) is
stored in the pipeline config, and the CLS token of an image as the workflow's features hold it.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler
from transformers import ViTModel

from lumos.features import condition_tokens
from lumos.models.dit import LumosDiT  # also puts lumos.models.dit in sys.modules
from lumos.pipelines.base import LumosPipelineBase, encoder_input, pixels, repeat_rows


def with_pooler(encoder: ViTModel) -> ViTModel:
    """`encoder`, given a pooler of zeros when it has none (the workflow's encoders are saved
    without one), so that its saved folder loads as transformers loads any ViTModel, with nothing
    missing. The pipelines never read the pooler: the condition is the CLS token of the last
    hidden state, as the workflow's `VisionEncoder` reads it."""
    if getattr(encoder, "pooler", "absent") is None:
        from transformers.models.vit.modeling_vit import ViTPooler

        pooler = ViTPooler(encoder.config).to(device=encoder.device, dtype=encoder.dtype)
        torch.nn.init.zeros_(pooler.dense.weight)
        torch.nn.init.zeros_(pooler.dense.bias)
        encoder.pooler = pooler
    return encoder


class VisionPipelineBase(LumosPipelineBase):
    """A Lumos pipeline conditioned on a ViT's CLS token (not a pipeline on its own)."""

    model_cpu_offload_seq = "image_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "image_embeds"]

    def _register_vision(self, transformer, vae, scheduler, image_encoder, input_size, mean, std, resize) -> None:
        """Register the four components and the encoder's preprocessing (mean / std default 0.5)."""
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler,
                              image_encoder=with_pooler(image_encoder))
        self.register_to_config(input_size=int(input_size), mean=[float(m) for m in (mean or [0.5] * 3)],
                                std=[float(s) for s in (std or [0.5] * 3)], resize=str(resize))
        self._set_up()

    @torch.no_grad()
    def image_cls(self, image) -> torch.Tensor:
        """(B, D) float32 CLS tokens of the encoder's last hidden state, one image at a time, after
        the workflow's preprocessing (`VisionEncoder`): a uint8 image gives its features exactly."""
        c, device = self.config, self._execution_device
        out = []
        for x in pixels(image):
            inp = encoder_input(x, c.input_size, c.mean, c.std, c.get("resize", "bicubic"))
            hidden = self.image_encoder(pixel_values=inp.to(device, self.image_encoder.dtype)).last_hidden_state
            out.append(hidden[:, 0].float())
        return torch.cat(out)

    def vision_condition(self, image, image_embeds, injection: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition (B, 1, D) and mask (B, 1) from images or given CLS `image_embeds` (B, D):
        L2-normalised for cross-attention, raw for adaLN (`lumos.features.condition_tokens`)."""
        if (image is None) == (image_embeds is None):
            raise ValueError("pass either `image` or `image_embeds`")
        cls = self.image_cls(image) if image is not None else torch.as_tensor(image_embeds).float()
        if cls.ndim == 3:
            cls = cls[:, 0]
        return condition_tokens({"image_cls": cls.cpu().numpy()}, "image", "cls", injection)


class LumosI2IPipeline(VisionPipelineBase):
    """Image-to-image (Lumos-I2I / RCG): generate new images from a reference image's CLS token.

    Components: `transformer` (LumosDiT, injection ``"cross_attn"`` or ``"adaln"``), `vae`,
    `scheduler` and `image_encoder` (a transformers ViTModel). The encoder's preprocessing
    (`input_size`, `mean`, `std`, `resize`: shorter side resized with the `resize` filter, centre
    crop, normalise, as `VisionEncoder.preprocess`) is stored in the pipeline config.
    """

    hub_module = "pipeline_lumos_i2i"

    def __init__(self, transformer: LumosDiT, vae: AutoencoderKL,
                 scheduler: DPMSolverMultistepScheduler | DDPMScheduler, image_encoder: ViTModel,
                 input_size: int = 224, mean: list[float] | None = None, std: list[float] | None = None,
                 resize: str = "bicubic"):
        """Register the four components and the preprocessing settings (mean/std default to 0.5)."""
        super().__init__()
        if transformer.config.injection not in ("cross_attn", "adaln"):
            raise ValueError(f"I2I needs a cross_attn or adaln transformer, got {transformer.config.injection!r}")
        if transformer.config.injection == "cross_attn" and transformer.config.max_cond_tokens != 1:
            raise ValueError(f"the I2I pipeline gives the CLS token only; this transformer reads "
                             f"{transformer.config.max_cond_tokens} condition tokens (a patch-token run)")
        self._register_vision(transformer, vae, scheduler, image_encoder, input_size, mean, std, resize)

    def encode_image(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition (B, 1, D) and mask (B, 1) of images (see `vision_condition`)."""
        return self.vision_condition(image, None, self.transformer.config.injection)

    @torch.no_grad()
    def __call__(self, image=None, num_inference_steps: int = 20, guidance_scale: float = 4.5,
                 num_images_per_prompt: int = 1, height: int | None = None, width: int | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
                 image_embeds: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs: list[str] = ["latents"]):
        """Generate `num_images_per_prompt` images per reference image.

        Args:
            image: a PIL image, a uint8 or float [0, 1] array (H, W, 3) / (B, H, W, 3), a tensor
                in [0, 1] (3, H, W) / (B, 3, H, W), or a list of those (any sizes: the encoder
                resizes and crops).
            image_embeds: (B, D) CLS tokens instead of `image` (e.g. the workflow's cached features).
            height, width: output size in pixels (default: the model's training size).
            Other arguments as `LumosT2IPipeline.__call__` (guidance against the model's null
            condition; `callback_kwargs` may hold `latents` and `image_embeds`, the condition).
        """
        names = self.check_common_inputs(output_type, num_images_per_prompt, callback_on_step_end,
                                         callback_on_step_end_tensor_inputs)
        cond, mask = self.vision_condition(image, image_embeds, self.transformer.config.injection)
        n = int(num_images_per_prompt)
        cond, mask = repeat_rows(cond, n), repeat_rows(mask, n)
        cfg = self.transformer.config
        if cfg.extra_in_channels or cfg.camera_dim:
            raise ValueError("this pipeline supplies no concatenated latent or camera (see LumosNVSPipeline)")
        h, w = self.latent_size(height, width)
        lat = self.sample_latents((len(cond), cfg.in_channels, h, w), {"cond": cond, "cond_mask": mask}, {},
                                  num_inference_steps, guidance_scale, generator, latents, callback_on_step_end,
                                  names, cond_name="image_embeds")
        return self.finish_images(lat, output_type, return_dict)
