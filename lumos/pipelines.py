"""`diffusers.DiffusionPipeline`s around a trained Lumos DiT: text-to-image and image-to-image.

A saved pipeline folder holds every part (transformer, VAE, scheduler, text or image encoder)
and loads without network access::

    from lumos.pipelines import LumosT2IPipeline
    pipe = LumosT2IPipeline.from_pretrained("results/t2i/lumos_i2i-t5-mixed-n0/pipeline")
    images = pipe(["a red circle left of a blue square"], generator=torch.Generator().manual_seed(0)).images

`model_index.json` records the DiT as ``["lumos.models.dit", "LumosDiT"]`` (diffusers stores a
class from outside its known libraries under its full module path). diffusers 0.42 resolves such
a library only from `sys.modules`, never by importing it; importing this module imports
`lumos.models.dit`, so `LumosT2IPipeline.from_pretrained(path)` finds the class.

Sampling is `lumos.diffusion.sampling.sample` with the pipeline's own scheduler, so a pipeline
draws exactly the latents the workflow's `sample` rule draws for the same condition and seed;
decoding is `LatentCodec.decode` with the VAE config's `scaling_factor`.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler, ImagePipelineOutput
from PIL import Image
from transformers import CLIPTextModel, PreTrainedTokenizerBase, T5EncoderModel, ViTModel

from lumos.components.encoders import VisionEncoder
from lumos.components.text import TextEncoder
from lumos.components.vae import LatentCodec, vae_factor
from lumos.diffusion.sampling import make_scheduler, sample
from lumos.features import condition_tokens
from lumos.models.dit import LumosDiT, micro_condition_inputs  # also puts lumos.models.dit in sys.modules

OUTPUT_TYPES = ("pil", "np", "latent")


class _LumosPipeline(DiffusionPipeline):
    """Shared sampling and decoding of the Lumos pipelines (not a pipeline on its own)."""

    def _eval(self) -> None:
        """Put every torch module in inference mode (a fresh LumosDiT drops conditions in training mode)."""
        for component in self.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()

    def _latent_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """Latent (h, w) for an image of `height` x `width` pixels (default: the model's square
        sample size); sides must be multiples of the VAE factor times the patch size."""
        cfg = self.transformer.config
        factor = vae_factor(self.vae)
        h, w = (height or cfg.sample_size * factor), (width or cfg.sample_size * factor)
        step = factor * cfg.patch_size
        if h % step or w % step:
            raise ValueError(f"height and width must be multiples of {step} (VAE factor {factor} x patch size "
                             f"{cfg.patch_size}), got {h} x {w}")
        return h // factor, w // factor

    def _generate(self, cond, cond_mask, num_inference_steps, guidance_scale, generator, output_type,
                  return_dict, progress, height=None, width=None):
        """Sample latents for a condition batch with `sample` and this pipeline's scheduler, then decode.
        A micro-conditioned transformer (the released T2I model) is given the image's size in
        pixels and its height / width ratio.

        Returns an `ImagePipelineOutput` whose `images` are PIL images (``"pil"``), a uint8
        (B, H, W, 3) array (``"np"``, the workflow's PNG pixels) or the (B, C, h, w) latents.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        cfg = self.transformer.config
        if cfg.extra_in_channels:
            raise ValueError("this pipeline does not supply extra input channels (extra_in_channels > 0)")
        shape = (cond.shape[0], cfg.in_channels, *self._latent_size(height, width))
        factor = vae_factor(self.vae)
        micro = micro_condition_inputs(shape[2] * factor, shape[3] * factor) if cfg.micro_conditions else None
        device = self._execution_device
        latents = sample(self.transformer, shape, cond, cond_mask, num_steps=num_inference_steps,
                         guidance_scale=guidance_scale, generator=generator, progress=progress,
                         device=device, scheduler=self.scheduler, model_kwargs=micro)
        if output_type == "latent":
            images = latents
        else:
            latents = latents.to(self.vae.dtype)
            images = LatentCodec(self.vae, float(self.vae.config.scaling_factor), device).decode(latents)
            if output_type == "pil":
                images = [Image.fromarray(img) for img in images]
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


class LumosT2IPipeline(_LumosPipeline):
    """Text-to-image with a cross-attention Lumos DiT conditioned on text-encoder tokens.

    Components: `transformer` (LumosDiT, injection ``"cross_attn"``), `vae` (AutoencoderKL whose
    config holds the latent `scaling_factor`), `scheduler` (DPM-Solver++ or DDPM, as built by
    `make_scheduler`), `text_encoder` (T5EncoderModel or CLIPTextModel) and `tokenizer`.
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(self, transformer: LumosDiT, vae: AutoencoderKL,
                 scheduler: DPMSolverMultistepScheduler | DDPMScheduler,
                 text_encoder: T5EncoderModel | CLIPTextModel, tokenizer: PreTrainedTokenizerBase):
        """Register the five components (all modules are put in eval mode)."""
        super().__init__()
        if transformer.config.injection != "cross_attn":
            raise ValueError(f"T2I needs a cross_attn transformer, got injection={transformer.config.injection!r}")
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler,
                              text_encoder=text_encoder, tokenizer=tokenizer)
        self._eval()

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], max_length: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
        """Text tokens (B, L, D) float32 and mask (B, L) bool: padded to `max_length` (capped at
        CLIP's position limit), truncated, last hidden state of the encoder; the workflow's own
        `TextEncoder`, so the pipeline conditions exactly as training did."""
        kind = "clip" if isinstance(self.text_encoder, CLIPTextModel) else "t5"
        return TextEncoder(self.text_encoder, self.tokenizer, kind, max_length, self.text_encoder.device)(prompts)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_inference_steps: int = 20, guidance_scale: float = 4.5,
                 generator: torch.Generator | None = None, max_length: int = 120, output_type: str = "pil",
                 return_dict: bool = True, progress: bool = False, height: int | None = None,
                 width: int | None = None):
        """Generate one image per prompt.

        Args:
            prompt: a prompt or a list of prompts.
            num_inference_steps: denoising steps of the scheduler.
            guidance_scale: classifier-free guidance against the model's own null condition (1 = off).
            generator: seeds the initial noise (and DDPM's noise).
            max_length: text tokens per prompt (padded and masked).
            output_type: ``"pil"``, ``"np"`` (uint8 (B, H, W, 3)) or ``"latent"``.
            return_dict: return an `ImagePipelineOutput` (else a 1-tuple).
            progress: show a progress bar over the denoising steps.
            height, width: image size in pixels (default: the model's training size); a model from
                the multi-scale stage (Table S1 stage 4) draws any of its buckets' sizes.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        cond, mask = self.encode_prompt(prompts, max_length)
        return self._generate(cond, mask, num_inference_steps, guidance_scale, generator, output_type,
                              return_dict, progress, height, width)


class LumosI2IPipeline(_LumosPipeline):
    """Image-to-image (Lumos-I2I / RCG): generate a new image from a reference image's CLS token.

    Components: `transformer` (LumosDiT, injection ``"cross_attn"`` or ``"adaln"``), `vae`,
    `scheduler` and `image_encoder` (a transformers ViTModel). The encoder's preprocessing
    (`input_size`, `mean`, `std`, `resize`: shorter side resized with the `resize` filter, centre
    crop, normalise, as `VisionEncoder.preprocess`) is stored in the pipeline config.
    """

    model_cpu_offload_seq = "image_encoder->transformer->vae"

    def __init__(self, transformer: LumosDiT, vae: AutoencoderKL,
                 scheduler: DPMSolverMultistepScheduler | DDPMScheduler, image_encoder: ViTModel,
                 input_size: int = 224, mean: list[float] | None = None, std: list[float] | None = None,
                 resize: str = "bicubic"):
        """Register the four components and the preprocessing settings (mean/std default to 0.5)."""
        super().__init__()
        if transformer.config.injection not in ("cross_attn", "adaln"):
            raise ValueError(f"I2I needs a cross_attn or adaln transformer, got {transformer.config.injection!r}")
        if getattr(image_encoder, "pooler", None) is not None:
            image_encoder.pooler = None  # unused (CLS = first token); from_pretrained adds a random one
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler, image_encoder=image_encoder)
        self.register_to_config(input_size=int(input_size), mean=[float(m) for m in (mean or [0.5] * 3)],
                                std=[float(s) for s in (std or [0.5] * 3)], resize=str(resize))
        self._eval()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """`DiffusionPipeline.from_pretrained`, loading the ViT without a pooler (none is saved;
        the generic loader would add a randomly initialised one and report it missing)."""
        if "image_encoder" not in kwargs:
            kwargs["image_encoder"] = ViTModel.from_pretrained(
                pretrained_model_name_or_path, subfolder="image_encoder", add_pooling_layer=False,
                **{k: kwargs[k] for k in ("cache_dir", "local_files_only", "revision") if k in kwargs})
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @staticmethod
    def _as_uint8_list(image) -> list[np.ndarray]:
        """PIL image, uint8 (H, W, 3) / (B, H, W, 3) array, or a list of those -> list of (H, W, 3) uint8."""
        items = list(image) if isinstance(image, (list, tuple)) else [image]
        out = []
        for item in items:
            if isinstance(item, Image.Image):
                out.append(np.asarray(item.convert("RGB")))
                continue
            arr = np.asarray(item)
            if arr.dtype != np.uint8 or arr.shape[-1] != 3 or arr.ndim not in (3, 4):
                raise ValueError(f"images must be uint8 (H, W, 3) or (B, H, W, 3), got {arr.dtype} {arr.shape}")
            out.extend(arr if arr.ndim == 4 else [arr])
        return out

    @torch.no_grad()
    def encode_image(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition (B, 1, D) and mask (B, 1): the CLS token, L2-normalised for cross-attention and
        raw for adaLN (`lumos.features.condition_tokens`, as in training)."""
        c = self.config
        enc = VisionEncoder(self.image_encoder, "transformers", c.input_size, c.mean, c.std, self.image_encoder.device,
                            resize=c.get("resize", "bicubic"))
        cls = torch.cat([enc(img[None])[0] for img in self._as_uint8_list(image)])
        return condition_tokens({"image_cls": cls.float().cpu().numpy()}, "image", "cls",
                                self.transformer.config.injection)

    @torch.no_grad()
    def __call__(self, image, num_inference_steps: int = 20, guidance_scale: float = 4.5,
                 generator: torch.Generator | None = None, output_type: str = "pil", return_dict: bool = True,
                 progress: bool = False):
        """Generate one image per input image (PIL, uint8 array (H, W, 3) or (B, H, W, 3), or a list).

        Other arguments as `LumosT2IPipeline.__call__`.
        """
        cond, mask = self.encode_image(image)
        return self._generate(cond, mask, num_inference_steps, guidance_scale, generator, output_type,
                              return_dict, progress)


def _load_parts(transformer_dir: str, vae_dir: str, sampler: str, scaling_factor: float | None):
    """The trained DiT, the VAE (with `scaling_factor` written into its config when given) and a
    scheduler matching training (`make_scheduler`)."""
    transformer = LumosDiT.from_pretrained(str(transformer_dir))
    vae = AutoencoderKL.from_pretrained(str(vae_dir))
    if scaling_factor is not None:
        vae.register_to_config(scaling_factor=float(scaling_factor))
    scheduler = make_scheduler(sampler, learn_sigma=transformer.config.learn_sigma,
                               prediction_type=transformer.config.prediction_type)
    return transformer, vae, scheduler


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


def assemble_i2i_pipeline(transformer_dir: str, vae_dir: str, encoder_dir: str, input_size: int, mean, std,
                          sampler: str = "dpm++", scaling_factor: float | None = None,
                          resize: str = "bicubic") -> LumosI2IPipeline:
    """Build a `LumosI2IPipeline` from saved parts: a transformers ViTModel encoder (no pooler)
    and its preprocessing (`input_size`, `mean`, `std`, `resize` of the `components.<encoder>` block)."""
    transformer, vae, scheduler = _load_parts(transformer_dir, vae_dir, sampler, scaling_factor)
    encoder = ViTModel.from_pretrained(str(encoder_dir), add_pooling_layer=False)
    return LumosI2IPipeline(transformer, vae, scheduler, encoder, input_size, list(mean), list(std), resize)


def pipeline_sampler(pipeline_dir: str, sample_cfg: dict, device):
    """`generate(prompts, seed) -> uint8 (n, H, W, 3)` from an exported T2I pipeline, with the
    configured sampler steps and guidance, at `sample_cfg["image_size"]` pixels square when the
    settings give one (the released T2I model's 1024), else at the model's training size."""
    pipe = LumosT2IPipeline.from_pretrained(pipeline_dir).to(device)
    size = sample_cfg.get("image_size")

    def generate(prompts: list[str], seed: int):
        return pipe(prompts, num_inference_steps=sample_cfg["steps"], guidance_scale=sample_cfg["guidance_scale"],
                    generator=torch.Generator().manual_seed(seed), output_type="np", height=size, width=size).images

    return generate
