"""`LumosI2VPipeline`: image-to-video (Lumos-I2V): a first frame -> a clip that starts with it.

The model's inputs are those of `lumos.tasks.i2v.i2v_inputs`: the first frame's CLS
(L2-normalised) through cross-attention and its VAE latent as the clean frame 0 (`first`); frame 0
of the sampled latents is set to that latent, as `lumos.tasks.i2v.sample_videos` sets it, and
every frame is decoded by the image VAE. Output frames follow diffusers' video pipelines
(`LumosVideoPipelineOutput.frames`, converted by diffusers' `VideoProcessor`).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.video_processor import VideoProcessor
from transformers import ViTModel

from lumos.models.video import LumosVideoDiT
from lumos.pipelines.base import LumosVideoPipelineOutput, pixels, repeat_rows, resize_pixels
from lumos.pipelines.i2i import VisionPipelineBase

class LumosI2VPipeline(VisionPipelineBase):
    """Image-to-video with a Lumos-I2V video DiT (temporal attention after each spatial block).

    Components: `transformer` (LumosVideoDiT), `vae` (the image AutoencoderKL, frame by frame),
    `scheduler` and `image_encoder` (a transformers ViTModel, preprocessing in the pipeline config).
    """

    hub_module = "pipeline_lumos_i2v"
    _callback_tensor_inputs = ["latents", "image_embeds"]

    def __init__(self, transformer: LumosVideoDiT, vae: AutoencoderKL,
                 scheduler: DPMSolverMultistepScheduler | DDPMScheduler, image_encoder: ViTModel,
                 input_size: int = 224, mean: list[float] | None = None, std: list[float] | None = None,
                 resize: str = "bicubic"):
        """Register the four components and the encoder's preprocessing settings."""
        super().__init__()
        if not isinstance(transformer, LumosVideoDiT):
            raise ValueError(f"I2V needs a LumosVideoDiT, got {type(transformer).__name__}")
        self._register_vision(transformer, vae, scheduler, image_encoder, input_size, mean, std, resize)
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor)

    @torch.no_grad()
    def encode_first_frames(self, image, height: int, width: int) -> torch.Tensor:
        """(B, C, h, w) scaled VAE latents of the first frames, each resized to height x width."""
        return torch.cat([self.encode_pixels(resize_pixels(x, height, width)) for x in pixels(image)])

    @torch.no_grad()
    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, T, h, w) latents -> (B, 3, T, H, W) in [-1, 1]: every frame through the VAE
        decoder in one batch, as the workflow's `decode_video`."""
        b, c, t = latents.shape[:3]
        frames = self.decode_latents(latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, *latents.shape[3:]))
        return frames.reshape(b, t, *frames.shape[1:]).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def __call__(self, image=None, num_frames: int | None = None, num_inference_steps: int = 20,
                 guidance_scale: float = 4.5, num_videos_per_prompt: int = 1, height: int | None = None,
                 width: int | None = None, generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None,
                 image_latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs: list[str] = ["latents"]):
        """Generate `num_videos_per_prompt` clips of `num_frames` frames per first frame.

        Args:
            image: the first frame(s), in any form `LumosI2IPipeline` takes; resized to
                height x width for the VAE (the encoder resizes for itself).
            num_frames: frames per clip, the first one included (default: the transformer's
                `num_frames`, the clip length it was trained on).
            num_videos_per_prompt: clips per first frame (each frame's clips are consecutive).
            latents: (B, C, T, h, w) initial noise instead of drawing it.
            image_embeds, image_latents: the first frames' CLS (B, D) and scaled VAE latents
                (B, C, h, w) instead of `image` (e.g. the workflow's video features).
            output_type: ``"pil"`` (a list of lists of PIL images), ``"np"`` (float
                (B, T, H, W, 3) in [0, 1]), ``"pt"`` (float (B, T, 3, H, W) in [0, 1]) or ``"latent"``.
            return_dict: return a `LumosVideoPipelineOutput` (else a 1-tuple).
            Other arguments as `LumosI2IPipeline.__call__`.
        """
        names = self.check_common_inputs(output_type, num_videos_per_prompt, callback_on_step_end,
                                         callback_on_step_end_tensor_inputs)
        h, w = self.latent_size(height, width)
        factor = self.vae_scale_factor
        if image is None and (image_embeds is None or image_latents is None):
            raise ValueError("pass `image`, or both `image_embeds` and `image_latents`")
        cond, mask = self.vision_condition(image if image_embeds is None else None, image_embeds, "cross_attn")
        first = (self.encode_first_frames(image, h * factor, w * factor) if image_latents is None
                 else torch.as_tensor(image_latents).float())
        if tuple(first.shape[-2:]) != (h, w) or len(first) != len(cond):
            raise ValueError(f"{len(first)} first-frame latents of {tuple(first.shape[-2:])} cells for "
                             f"{len(cond)} conditions; expected one per condition of {(h, w)}")
        n = int(num_videos_per_prompt)
        cond, mask, first = repeat_rows(cond, n), repeat_rows(mask, n), repeat_rows(first, n)
        frames = int(num_frames or self.transformer.config.num_frames)
        shape = (len(cond), self.transformer.config.in_channels, frames, h, w)
        lat = self.sample_latents(shape, {"cond": cond, "cond_mask": mask}, {"first": first}, num_inference_steps,
                                  guidance_scale, generator, latents, callback_on_step_end, names,
                                  cond_name="image_embeds")
        lat[:, :, 0] = first.to(lat)
        video = lat if output_type == "latent" else self.video_processor.postprocess_video(
            self.decode_video(lat), output_type=output_type)
        self.maybe_free_model_hooks()
        return LumosVideoPipelineOutput(frames=video) if return_dict else (video,)
