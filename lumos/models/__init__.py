"""Lumos denoising backbones."""

from lumos.models.dit import DIT_SIZES, LumosDiT

__all__ = ["DIT_SIZES", "LumosDiT"]
