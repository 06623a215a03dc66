"""`LumosT2IPipeline`: text-to-image with a cross-attention Lumos DiT (Lumos-T2I).

Prompts are tokenised and encoded as the workflow's `TextEncoder` encodes them (padded to the
model's `max_cond_tokens`, masked, last hidden state), so a pipeline conditions exactly as training
did; a micro-conditioned transformer (the released T2I model) is given the image's size in pixels
and its height / width ratio, as the workflow's `released-t2i-sample` gives them.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler
from transformers import CLIPTextModel, PreTrainedTokenizerBase, T5EncoderModel

from lumos.models.dit import LumosDiT, micro_condition_inputs  # also puts lumos.models.dit in sys.modules
from lumos.pipelines.base import LumosPipelineBase, repeat_rows


class LumosT2IPipeline(LumosPipelineBase):
    """Text-to-image with a cross-attention Lumos DiT conditioned on text-encoder tokens.

    Components: `transformer` (LumosDiT, injection ``"cross_attn"``), `vae` (AutoencoderKL whose
    config holds the latent `scaling_factor`), `scheduler` (DPM-Solver++ or DDPM, as built by
    `make_scheduler`), `text_encoder` (T5EncoderModel or CLIPTextModel) and `tokenizer`.
    """

    hub_module = "pipeline_lumos_t2i"
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds"]

    def __init__(self, transformer: LumosDiT, vae: AutoencoderKL,
                 scheduler: DPMSolverMultistepScheduler | DDPMScheduler,
                 text_encoder: T5EncoderModel | CLIPTextModel, tokenizer: PreTrainedTokenizerBase):
        """Register the five components (all modules are put in eval mode)."""
        super().__init__()
        if transformer.config.injection != "cross_attn":
            raise ValueError(f"T2I needs a cross_attn transformer, got injection={transformer.config.injection!r}")
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler,
                              text_encoder=text_encoder, tokenizer=tokenizer)
        self._set_up()

    def max_tokens(self, max_sequence_length: int | None = None) -> int:
        """Text tokens per prompt: `max_sequence_length`, by default the transformer's
        `max_cond_tokens` (the length it was trained on), capped at CLIP's position limit."""
        n = int(max_sequence_length or self.transformer.config.max_cond_tokens)
        if isinstance(self.text_encoder, CLIPTextModel):
            n = min(n, self.text_encoder.config.max_position_embeddings)
        return n

    @torch.no_grad()
    def encode_prompt(self, prompt: str | list[str], max_sequence_length: int | None = None,
                      device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text tokens (B, L, D) float32 and mask (B, L) bool: padded to `max_tokens`, truncated,
        the encoder's last hidden state (the operations of the workflow's `TextEncoder`)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        device = device or self._execution_device
        enc = self.tokenizer(prompts, padding="max_length", truncation=True,
                             max_length=self.max_tokens(max_sequence_length), return_tensors="pt")
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        return self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask.bool()

    def _conditions(self, prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                    negative_prompt_attention_mask, max_sequence_length):
        """(tokens, mask, negative (tokens, mask) or None) from prompts or given embeddings."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass either `prompt` or `prompt_embeds` (with `prompt_attention_mask`)")
        if prompt is not None:
            prompt_embeds, prompt_attention_mask = self.encode_prompt(prompt, max_sequence_length)
        elif prompt_attention_mask is None:
            prompt_attention_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.bool)
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("pass `negative_prompt` or `negative_prompt_embeds`, not both")
        if negative_prompt is not None:
            negs = [negative_prompt] * len(prompt_embeds) if isinstance(negative_prompt, str) else list(negative_prompt)
            if len(negs) != len(prompt_embeds):
                raise ValueError(f"{len(negs)} negative prompts for {len(prompt_embeds)} prompts")
            negative_prompt_embeds, negative_prompt_attention_mask = self.encode_prompt(
                negs, prompt_embeds.shape[1])
        negative = None
        if negative_prompt_embeds is not None:
            if negative_prompt_attention_mask is None:
                negative_prompt_attention_mask = torch.ones(negative_prompt_embeds.shape[:2], dtype=torch.bool)
            negative = (negative_prompt_embeds, negative_prompt_attention_mask.bool())
        return prompt_embeds, prompt_attention_mask.bool(), negative

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, negative_prompt: str | list[str] | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = 4.5, num_images_per_prompt: int = 1,
                 height: int | None = None, width: int | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None, prompt_attention_mask: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_attention_mask: torch.Tensor | None = None, output_type: str = "pil",
                 return_dict: bool = True, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: list[str] = ["latents"], max_sequence_length: int | None = None):
        """Generate `num_images_per_prompt` images per prompt.

        Args:
            prompt: a prompt or a list of prompts (or give `prompt_embeds`).
            negative_prompt: what the unconditional branch of guidance reads instead of the model's
                learned null condition (the workflow's guidance); one, or one per prompt.
            num_inference_steps: denoising steps of the scheduler.
            guidance_scale: classifier-free guidance scale (1 = off).
            num_images_per_prompt: images per prompt (each prompt's images are consecutive).
            height, width: image size in pixels (default: the model's training size); a model from
                the multi-scale stage (Table S1 stage 4) draws any of its buckets' sizes.
            generator: one generator (the whole batch's noise, as the workflow draws it) or one
                per image.
            latents: (B, C, h, w) initial noise instead of drawing it (B = prompts x images).
            prompt_embeds, prompt_attention_mask: text tokens (B, L, D) and mask (B, L) instead of
                `prompt` (e.g. the workflow's cached text features).
            negative_prompt_embeds, negative_prompt_attention_mask: the same for `negative_prompt`.
            output_type: ``"pil"``, ``"np"`` (float (B, H, W, 3) in [0, 1]), ``"pt"`` (float
                (B, 3, H, W) in [0, 1]) or ``"latent"``.
            return_dict: return an `ImagePipelineOutput` (else a 1-tuple).
            callback_on_step_end: ``f(pipe, step, timestep, callback_kwargs) -> dict`` after each
                step; may return replaced `latents` / `prompt_embeds`.
            callback_on_step_end_tensor_inputs: the tensors in `callback_kwargs`, of
                `_callback_tensor_inputs`.
            max_sequence_length: text tokens per prompt (default: the transformer's `max_cond_tokens`).
        """
        names = self.check_common_inputs(output_type, num_images_per_prompt, callback_on_step_end,
                                         callback_on_step_end_tensor_inputs)
        cond, mask, negative = self._conditions(prompt, negative_prompt, prompt_embeds, prompt_attention_mask,
                                                negative_prompt_embeds, negative_prompt_attention_mask,
                                                max_sequence_length)
        n = int(num_images_per_prompt)
        cond, mask = repeat_rows(cond, n), repeat_rows(mask, n)
        if negative is not None:
            negative = tuple(repeat_rows(v, n) for v in negative)
        cfg = self.transformer.config
        if cfg.extra_in_channels or cfg.camera_dim:
            raise ValueError("this pipeline supplies no concatenated latent or camera (see LumosNVSPipeline)")
        h, w = self.latent_size(height, width)
        factor = self.vae_scale_factor
        micro = micro_condition_inputs(h * factor, w * factor) if cfg.micro_conditions else {}
        lat = self.sample_latents((len(cond), cfg.in_channels, h, w), {"cond": cond, "cond_mask": mask}, micro,
                                  num_inference_steps, guidance_scale, generator, latents, callback_on_step_end,
                                  names, negative, cond_name="prompt_embeds")
        return self.finish_images(lat, output_type, return_dict)
