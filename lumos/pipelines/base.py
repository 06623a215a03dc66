"""What every Lumos pipeline shares: the denoising loop, the inputs, the outputs and the saved folder.

`LumosPipelineBase` is a `diffusers.DiffusionPipeline` (not a pipeline on its own) that gives its
subclasses diffusers' conventions:

- sampling: `prepare_latents` draws the initial noise with diffusers' `randn_tensor` (one generator
  or one per sample; `latents` given instead), then `denoise` runs the scheduler's loop with the
  pipeline's own `progress_bar`, `callback_on_step_end(pipe, step, timestep, callback_kwargs)` and
  classifier-free guidance. For a single generator the loop performs exactly the operations of
  `lumos.diffusion.sampling.sample`, so a pipeline draws the latents the workflow draws for the same
  condition and seed (tests/test_pipelines.py checks it bit for bit);
- outputs: latents decoded by the VAE and converted by diffusers' `VaeImageProcessor` (`pil`, `np`
  float in [0, 1] NHWC, `pt` float in [0, 1] NCHW, or `latent`);
- inputs (`pixels`): PIL images, uint8 or float [0, 1] arrays (HWC / NHWC), tensors in [0, 1]
  (CHW / NCHW; [-1, 1] is taken as diffusers takes it, with a warning), or a list of them;
- the folder: `save_pretrained` records the class in `model_index.json` as
  ``["pipeline_lumos_<kind>", "<Class>"]`` and writes that small module beside it, which imports the
  class from the installed `lumos` package: the Hub's convention for a pipeline defined outside
  diffusers, so ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` loads it.
  ``<Class>.from_pretrained(folder)`` needs no flag when the module is exactly the one lumos writes
  (`load_config` then reads the recorded class as the class itself: nothing of the folder runs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from lumos.components.encoders import crop_offsets, resized_size
from lumos.components.vae import vae_factor
from lumos.utils import log

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class LumosVideoPipelineOutput(BaseOutput):
    """Output of `LumosI2VPipeline`, as diffusers' video pipelines return theirs.

    frames: a list (one per clip) of lists of PIL images (``"pil"``), a float (B, T, H, W, 3) array
    in [0, 1] (``"np"``), a float (B, T, 3, H, W) tensor in [0, 1] (``"pt"``) or the (B, C, T, h, w)
    latents (``"latent"``).
    """

    frames: list | np.ndarray | torch.Tensor


def hub_module_text(cls: type) -> str:
    """The module `save_pretrained` writes beside `model_index.json`: it imports `cls` (and no other
    pipeline class, as diffusers' `find_pipeline_class` needs) from the installed `lumos` package."""
    return (f'"""Loads {cls.__name__} from the installed `lumos` package (see README.md)."""\n\n'
            f"from {cls.__module__} import {cls.__name__}  # noqa: F401\n")


class LumosPipelineBase(DiffusionPipeline):
    """Shared sampling, inputs, outputs and saving of the Lumos pipelines (not a pipeline on its own).

    A subclass registers `transformer` (a `LumosDiT`), `vae` (an `AutoencoderKL` whose config holds
    the latent `scaling_factor`) and `scheduler`, sets `hub_module`, and calls `_set_up()`."""

    hub_module = "pipeline_lumos"  # file (without .py) of the module that save_pretrained writes
    _callback_tensor_inputs = ["latents"]

    def _set_up(self) -> None:
        """After `register_modules`: inference mode for every module (a fresh LumosDiT drops
        conditions in training mode) and the output processor for the VAE's downsampling factor."""
        for component in self.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()
        self.vae_scale_factor = vae_factor(self.vae)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # ------------------------------------------------------------------ properties (diffusers')

    @property
    def guidance_scale(self) -> float:
        """The guidance scale of the running (or last) call."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether guidance runs: any scale but 1, as the workflow's `sample` decides."""
        return self._guidance_scale != 1

    @property
    def num_timesteps(self) -> int:
        """The number of denoising steps of the running (or last) call."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` (e.g. in a callback) to skip the remaining steps."""
        return getattr(self, "_interrupt", False)

    # ------------------------------------------------------------------ saving and loading

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`DiffusionPipeline.save_pretrained`, then the class recorded as ``[hub_module, class]``
        in `model_index.json` with the module written beside it (the Hub's custom-pipeline layout).
        With `push_to_hub`, the folder is uploaded once complete (module and any README.md in it)."""
        push = kwargs.pop("push_to_hub", False)
        hub = {k: kwargs.pop(k) for k in ("commit_message", "private", "create_pr", "token", "repo_id") if k in kwargs}
        super().save_pretrained(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        (folder / f"{self.hub_module}.py").write_text(hub_module_text(type(self)))
        index = json.loads((folder / "model_index.json").read_text())
        index["_class_name"] = [self.hub_module, type(self).__name__]
        (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        # a T2I tokenizer recorded by a class every transformers the package allows can load
        from lumos.components.text import make_pipeline_tokenizer_portable

        make_pipeline_tokenizer_portable(folder)
        if push:
            from huggingface_hub import create_repo

            repo_id = create_repo(hub.get("repo_id", folder.name), exist_ok=True, private=hub.get("private"),
                                  token=hub.get("token")).repo_id
            self._upload_folder(str(folder), repo_id, token=hub.get("token"), commit_message=hub.get("commit_message"),
                                create_pr=hub.get("create_pr", False))

    @classmethod
    def _writes_module_of(cls, folder) -> bool:
        """Whether local `folder` holds exactly the module `save_pretrained` writes for this class."""
        module = Path(str(folder)) / f"{cls.hub_module}.py"
        return bool(cls.__dict__.get("hub_module")) and module.is_file() and module.read_text() == hub_module_text(cls)

    @classmethod
    def load_config(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`ConfigMixin.load_config`; for ``<Class>.from_pretrained(folder)`` on a folder whose
        module is exactly the one lumos writes for this class (it only imports the class), the
        recorded ``[module, class]`` reads as the class itself: the class is already imported, so
        nothing of the folder runs and no `trust_remote_code` is needed. Any other module is left
        to diffusers, which runs it only with `trust_remote_code=True`."""
        out = super().load_config(pretrained_model_name_or_path, *args, **kwargs)
        config = out[0] if isinstance(out, tuple) else out
        if config.get("_class_name") == [cls.hub_module, cls.__name__] and cls._writes_module_of(
                pretrained_model_name_or_path):
            config["_class_name"] = cls.__name__
        return out

    # ------------------------------------------------------------------ checks and sizes

    def check_common_inputs(self, output_type: str, num_images_per_prompt: int, callback_on_step_end,
                            callback_on_step_end_tensor_inputs) -> list[str]:
        """Validate the arguments every pipeline takes; returns the callback's tensor names (a
        `PipelineCallback` names its own)."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if int(num_images_per_prompt) < 1:
            raise ValueError(f"num_images_per_prompt must be at least 1, got {num_images_per_prompt}")
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        names = list(callback_on_step_end_tensor_inputs or [])
        unknown = [k for k in names if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs has to be in {self._callback_tensor_inputs}, "
                             f"but found {unknown}")
        return names

    def latent_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """Latent (h, w) for an image of `height` x `width` pixels (default: the model's square
        sample size); sides must be multiples of the VAE factor times the patch size."""
        cfg = self.transformer.config
        factor = self.vae_scale_factor
        h, w = (height or cfg.sample_size * factor), (width or cfg.sample_size * factor)
        step = factor * cfg.patch_size
        if h % step or w % step:
            raise ValueError(f"height and width must be multiples of {step} (VAE factor {factor} x patch size "
                             f"{cfg.patch_size}), got {h} x {w}")
        return h // factor, w // factor

    # ------------------------------------------------------------------ sampling

    def prepare_latents(self, shape: tuple, device, generator, latents: torch.Tensor | None = None) -> torch.Tensor:
        """The initial noise (float32), scaled by the scheduler's `init_noise_sigma`: drawn with
        `randn_tensor` (a CPU generator draws on the CPU, as the workflow does), or `latents`."""
        if isinstance(generator, list) and len(generator) != shape[0]:
            raise ValueError(f"You have passed a list of generators of length {len(generator)}, but requested an "
                             f"effective batch size of {shape[0]}. Make sure the batch size matches the length of "
                             "the generators.")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=torch.float32)
        else:
            if tuple(latents.shape) != tuple(shape):
                raise ValueError(f"latents have shape {tuple(latents.shape)}; expected {tuple(shape)}")
            latents = latents.to(device=device, dtype=torch.float32)
        return latents * self.scheduler.init_noise_sigma

    def _predict(self, x: torch.Tensor, t: torch.Tensor, cond, cond_mask, extra: dict, negative) -> torch.Tensor:
        """The model's output for one step: plain at guidance 1; else guided against the model's
        null condition (`forward_with_cfg`, as the workflow) or against `negative` (tokens, mask)."""
        model = self.transformer
        if not self.do_classifier_free_guidance:
            return model(x, t, cond, cond_mask, **extra)
        if negative is None:
            return model.forward_with_cfg(x, t, cond, cond_mask, guidance_scale=self._guidance_scale, **extra)
        neg, neg_mask = negative
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, neg]),
                     torch.cat([cond_mask, neg_mask]), **extra)
        positive, uncond = both.chunk(2)
        return uncond + self._guidance_scale * (positive - uncond)

    def denoise(self, latents: torch.Tensor, conditions: dict, num_inference_steps: int, generator, extra: dict,
                callback_on_step_end=None, callback_names=(), negative=None, cond_name: str = "cond") -> torch.Tensor:
        """Run the scheduler's loop from the initial noise `latents` (after `prepare_latents`).

        `conditions` holds `cond` (B, L, D) and `cond_mask` (B, L) (both may be None for a model
        without a condition); `extra` the further inputs of every model call (micro-conditions,
        `concat` and `camera`, `first`). Each step: scale the input, predict (guided by
        `_predict`), keep the variance half only for a learned-variance DDPM (as `sample`), step
        the scheduler with `generator`, then call `callback_on_step_end(self, i, t, kwargs)`,
        whose returned `latents` (and condition, under `cond_name`) replace the current ones.
        """
        device, scheduler = latents.device, self.scheduler
        dtype = next(self.transformer.parameters()).dtype
        learned_var = getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range")
        keep_variance = isinstance(scheduler, DDPMScheduler) and learned_var
        cond, cond_mask = conditions.get("cond"), conditions.get("cond_mask")
        extra = {k: v.to(device) for k, v in extra.items()}
        timesteps = scheduler.timesteps
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                inp = scheduler.scale_model_input(latents, t).to(dtype)
                out = self._predict(inp, t.to(device).expand(latents.shape[0]), cond, cond_mask, extra,
                                    negative).float()
                if not keep_variance and out.shape[1] == 2 * latents.shape[1]:
                    out = out[:, : latents.shape[1]]
                latents = scheduler.step(out, t, latents, generator=generator).prev_sample
                if callback_on_step_end is not None:
                    tensors = {"latents": latents, cond_name: cond}
                    outputs = callback_on_step_end(self, i, t, {k: tensors[k] for k in callback_names})
                    latents = outputs.pop("latents", latents)
                    cond = outputs.pop(cond_name, cond)
                bar.update()
        return latents

    def sample_latents(self, shape: tuple, conditions: dict, extra: dict, num_inference_steps: int,
                       guidance_scale: float, generator, latents, callback_on_step_end, callback_names,
                       negative=None, cond_name: str = "cond") -> torch.Tensor:
        """Set the scheduler's timesteps, draw the initial noise and denoise (see `denoise`)."""
        device = self._execution_device
        self._guidance_scale = float(guidance_scale)
        self._interrupt = False
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        x = self.prepare_latents(shape, device, generator, latents)
        conditions = {k: (v.to(device) if v is not None else None) for k, v in conditions.items()}
        if negative is not None:
            negative = tuple(v.to(device) for v in negative)
        return self.denoise(x, conditions, num_inference_steps, generator, extra, callback_on_step_end,
                            callback_names, negative, cond_name)

    # ------------------------------------------------------------------ decoding

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, H, W) images in [-1, 1], as `LatentCodec.decode`
        computes them (latents / the VAE config's `scaling_factor`, then the decoder)."""
        scaled = latents / float(self.vae.config.scaling_factor)
        return self.vae.decode(scaled.to(self._execution_device, self.vae.dtype), return_dict=False)[0]

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(3, H, W) pixels on the 0..255 scale -> (1, C, h, w) scaled latent: the posterior mean
        times `scaling_factor`, as the workflow's features are (`LatentCodec.encode`)."""
        x = batch_of_one(pixels).to(self._execution_device).div(127.5).sub(1.0).to(self.vae.dtype)
        return self.vae.encode(x).latent_dist.mean.float() * float(self.vae.config.scaling_factor)

    def finish_images(self, latents: torch.Tensor, output_type: str, return_dict: bool):
        """Decode and convert (`VaeImageProcessor.postprocess`), free offload hooks, wrap the images."""
        from diffusers import ImagePipelineOutput

        images = latents if output_type == "latent" else self.image_processor.postprocess(
            self.decode_latents(latents), output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


# ---------------------------------------------------------------------------------------- inputs


def _warn_signed(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1] -> the 0..255 scale; values below 0 mean [-1, 1] (diffusers' rule)."""
    if x.numel() and float(x.min()) < 0:
        log.warning("an image with values below 0 is taken as [-1, 1]; images are expected in [0, 1]")
        return (x.float() + 1.0) * 127.5
    return x.float() * 255.0


def pixels(image) -> list[torch.Tensor]:
    """Images as a list of float32 (3, H, W) tensors on the 0..255 scale.

    Accepts a PIL image, a uint8 or float array (H, W, 3) / (B, H, W, 3), a tensor (3, H, W) /
    (B, 3, H, W) (float in [0, 1], or uint8), or a list of those. Float values are expected in
    [0, 1], as diffusers' image processor expects them; below 0 they are read as [-1, 1]. uint8
    and PIL input stay exact integers, so the encoders see what the workflow's encoders see."""
    items = list(image) if isinstance(image, (list, tuple)) else [image]
    out = []
    for item in items:
        if isinstance(item, PIL.Image.Image):
            out.append(torch.from_numpy(np.asarray(item.convert("RGB")).copy()).permute(2, 0, 1).float())
            continue
        if isinstance(item, np.ndarray):
            if item.ndim not in (3, 4) or item.shape[-1] != 3:
                raise ValueError(f"image arrays must be (H, W, 3) or (B, H, W, 3), got {item.shape}")
            t = torch.from_numpy(np.ascontiguousarray(item)).movedim(-1, -3)
        elif isinstance(item, torch.Tensor):
            if item.ndim not in (3, 4) or item.shape[-3] != 3:
                raise ValueError(f"image tensors must be (3, H, W) or (B, 3, H, W), got {tuple(item.shape)}")
            t = item.detach().cpu()
        else:
            raise ValueError(f"images must be PIL images, arrays or tensors, got {type(item).__name__}")
        t = t.float() if t.dtype == torch.uint8 else _warn_signed(t)
        out.extend(list(t) if t.ndim == 4 else [t])
    if not out:
        raise ValueError("no image given")
    return out


def batch_of_one(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (1, 3, H, W) laid out in memory as the workflow's batches are (a (B, H, W, 3)
    array permuted: channels last), which the convolutions' results depend on, to the last bit."""
    return x.permute(1, 2, 0).contiguous()[None].permute(0, 3, 1, 2)


def resize_pixels(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, H, W) pixels resized to `height` x `width` (bicubic, antialiased, clamped to 0..255);
    unchanged when already that size."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x[None], size=(height, width), mode="bicubic", antialias=True)[0].clamp(0, 255)


def encoder_input(x: torch.Tensor, input_size: int, mean, std, resize: str) -> torch.Tensor:
    """(3, H, W) pixels (0..255) -> (1, 3, S, S) encoder input: the shorter side resized to
    `input_size` with the `resize` filter, centre crop, normalised; the operations of
    `VisionEncoder.preprocess` (so a uint8 image gives the workflow's encoder input exactly)."""
    x = batch_of_one(x) / 255.0
    h, w = resized_size(*x.shape[-2:], input_size, resize)
    if (h, w) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=(h, w), mode=resize, antialias=True)
    top, left = crop_offsets(h, w, input_size, resize)
    x = x[..., top: top + input_size, left: left + input_size]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def repeat_rows(x: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Each row of `x` `n` times in a row (diffusers' order for num_images_per_prompt)."""
    return x if x is None or n == 1 else x.repeat_interleave(n, dim=0)
