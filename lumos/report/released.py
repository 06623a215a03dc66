"""What the tables say about the authors' released T2I model (config `released.t2i`): its row label
and how it was sampled (config `released.t2i_sample`), shared by Tables 2 and 3."""

from __future__ import annotations

RELEASED_T2I_LABEL = "Lumos-T2I (released weights, evaluated here)"
SAMPLER_NAMES = {"dpm++": "DPM-Solver++", "ddpm": "DDPM"}  # config value -> name in the notes


def released_t2i_sampling(sampling: dict) -> str:
    """One sentence: the released T2I model's text encoder, size, micro-conditions, sampler and guidance."""
    size = sampling["image_size"]
    return (f"`{RELEASED_T2I_LABEL}`: the authors' Lumos_T2I.pth imported here, prompted through T5 v1.1 XXL (the "
            f"text encoder it was trained with, 120 tokens with a mask) and sampled at {size} x {size} px with "
            f"micro-conditions ({size}, {size}) and aspect ratio 1, {SAMPLER_NAMES[sampling['sampler']]} {sampling['steps']} steps, "
            f"guidance {sampling['guidance_scale']} (the official sampler's settings).")
