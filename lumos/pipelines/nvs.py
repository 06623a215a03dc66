"""`LumosNVSPipeline`: novel view synthesis (Lumos-NVS): an input view and a camera -> the target view.

The model's inputs are those of `lumos.tasks.nvs.nvs_inputs`: the input view's CLS (L2-normalised)
through cross-attention, its VAE latent concatenated to the noisy latent, and the relative camera
pose from the input view to the target view, (R, T) flattened to 12 numbers
(`lumos.tasks.nvs.relative_pose_vectors`; `LumosNVSPipeline.relative_pose` computes it from two
camera-to-world matrices). Guidance drops the view (features and latent) and keeps the camera, as
the workflow's `nvs-eval` samples.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler
from transformers import ViTModel

from lumos.models.dit import LumosDiT  # also puts lumos.models.dit in sys.modules
from lumos.pipelines.base import pixels, repeat_rows, resize_pixels
from lumos.pipelines.i2i import VisionPipelineBase
from lumos.tasks.nvs import CAMERA_DIM, relative_pose_vectors


def camera_vectors(camera) -> torch.Tensor:
    """(B, 12) float32 relative poses from (12,) / (B, 12) vectors or (4, 4) / (B, 4, 4) (also
    3 x 4) relative transforms, whose rotation is flattened row-major before the translation."""
    if isinstance(camera, torch.Tensor):
        cam = camera.detach().cpu().float()
    else:
        cam = torch.as_tensor(np.asarray(camera, dtype=np.float32))
    if cam.ndim in (2, 3) and tuple(cam.shape[-2:]) in ((4, 4), (3, 4)):
        cam = cam.reshape(-1, *cam.shape[-2:])
        cam = torch.cat([cam[:, :3, :3].reshape(len(cam), 9), cam[:, :3, 3]], dim=1)
    cam = cam.reshape(-1, cam.shape[-1]) if cam.ndim else cam
    if cam.ndim != 2 or cam.shape[1] != CAMERA_DIM:
        raise ValueError(f"camera must be (B, {CAMERA_DIM}) relative poses or (B, 4, 4) relative transforms, "
                         f"got shape {tuple(cam.shape)}")
    return cam.float()


class LumosNVSPipeline(VisionPipelineBase):
    """Novel view synthesis with a Lumos-NVS DiT (an input view's latent concatenated, a camera).

    Components: `transformer` (LumosDiT with `extra_in_channels` = the latent channels and
    `camera_dim` 12), `vae` (its encoder makes the input view's latent, its decoder draws the
    view: the workflow's `nvs.decoder` fine-tunes the decoder only), `scheduler` and
    `image_encoder` (a transformers ViTModel, preprocessing in the pipeline config).
    """

    hub_module = "pipeline_lumos_nvs"
    _callback_tensor_inputs = ["latents", "image_embeds"]

    def __init__(self, transformer: LumosDiT, vae: AutoencoderKL,
                 scheduler: DPMSolverMultistepScheduler | DDPMScheduler, image_encoder: ViTModel,
                 input_size: int = 224, mean: list[float] | None = None, std: list[float] | None = None,
                 resize: str = "bicubic"):
        """Register the four components and the encoder's preprocessing settings."""
        super().__init__()
        cfg = transformer.config
        if cfg.camera_dim != CAMERA_DIM or cfg.extra_in_channels != cfg.in_channels:
            raise ValueError(f"NVS needs a transformer with camera_dim {CAMERA_DIM} and extra_in_channels = "
                             f"in_channels, got {cfg.camera_dim} and {cfg.extra_in_channels}")
        self._register_vision(transformer, vae, scheduler, image_encoder, input_size, mean, std, resize)

    @staticmethod
    def relative_pose(c2w_input, c2w_target) -> np.ndarray:
        """(B, 12) cameras of the target views in their input views' frames from (B, 4, 4)
        camera-to-world matrices (`lumos.tasks.nvs.relative_pose_vectors`)."""
        return relative_pose_vectors(np.asarray(c2w_input).reshape(-1, 4, 4), np.asarray(c2w_target).reshape(-1, 4, 4))

    @torch.no_grad()
    def encode_view(self, image, height: int, width: int) -> torch.Tensor:
        """(B, C, h, w) scaled VAE latents of the input views, each resized to height x width."""
        return torch.cat([self.encode_pixels(resize_pixels(x, height, width)) for x in pixels(image)])

    def _inputs(self, image, camera, image_embeds, image_latents, height, width):
        """(cond, mask, concat, camera), broadcast so that one view may take many cameras or one
        camera many views."""
        if image is None and (image_embeds is None or image_latents is None):
            raise ValueError("pass `image`, or both `image_embeds` and `image_latents`")
        cond, mask = self.vision_condition(image if image_embeds is None else None, image_embeds, "cross_attn")
        if image_latents is None:
            concat = self.encode_view(image, height, width)
        else:
            concat = torch.as_tensor(image_latents).float()
        cam = camera_vectors(camera)
        b = max(len(cond), len(cam))
        parts = [cond, mask, concat, cam]
        for k, part in enumerate(parts):
            if len(part) not in (1, b):
                raise ValueError(f"{len(cond)} views and {len(cam)} cameras: give one of either, or as many of both")
            parts[k] = part.expand(b, *part.shape[1:]) if len(part) == 1 else part
        return parts

    @torch.no_grad()
    def __call__(self, image=None, camera=None, num_inference_steps: int = 20, guidance_scale: float = 4.5,
                 num_images_per_prompt: int = 1, height: int | None = None, width: int | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
                 image_embeds: torch.Tensor | None = None, image_latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: list[str] = ["latents"]):
        """Generate the target view of each (input view, camera) pair, `num_images_per_prompt` each.

        Args:
            image: the input view(s), in any form `LumosI2IPipeline` takes; resized to height x width
                for the VAE (the encoder resizes for itself).
            camera: (12,) / (B, 12) relative poses or (4, 4) / (B, 4, 4) relative transforms of the
                target cameras in the input camera's frame (`relative_pose` computes them); one
                view with B cameras gives B views of it.
            image_embeds, image_latents: the input views' CLS (B, D) and scaled VAE latents
                (B, C, h, w) instead of `image` (e.g. the workflow's features).
            height, width: view size in pixels (default: the model's training size).
            Other arguments as `LumosI2IPipeline.__call__`.
        """
        if camera is None:
            raise ValueError("pass the target cameras: camera=(B, 12) relative poses (see relative_pose)")
        names = self.check_common_inputs(output_type, num_images_per_prompt, callback_on_step_end,
                                         callback_on_step_end_tensor_inputs)
        h, w = self.latent_size(height, width)
        factor = self.vae_scale_factor
        cond, mask, concat, cam = self._inputs(image, camera, image_embeds, image_latents, h * factor, w * factor)
        if tuple(concat.shape[-2:]) != (h, w):
            raise ValueError(f"image_latents are {tuple(concat.shape[-2:])} latent cells; the views are {(h, w)}")
        n = int(num_images_per_prompt)
        cond, mask, concat, cam = (repeat_rows(v, n) for v in (cond, mask, concat, cam))
        cfg = self.transformer.config
        lat = self.sample_latents((len(cond), cfg.in_channels, h, w), {"cond": cond, "cond_mask": mask},
                                  {"concat": concat, "camera": cam}, num_inference_steps, guidance_scale, generator,
                                  latents, callback_on_step_end, names, cond_name="image_embeds")
        return self.finish_images(lat, output_type, return_dict)
