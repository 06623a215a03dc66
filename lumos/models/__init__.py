"""Lumos denoising backbones: the image DiT and its video extension (Lumos-I2V)."""

from lumos.models.dit import DIT_SIZES, LumosDiT
from lumos.models.video import LumosVideoDiT

__all__ = ["DIT_SIZES", "LumosDiT", "LumosVideoDiT"]
