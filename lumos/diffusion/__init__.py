"""Diffusion process (training loss) and samplers."""

from lumos.diffusion.gaussian import GaussianDiffusion
from lumos.diffusion.sampling import make_scheduler, sample

__all__ = ["GaussianDiffusion", "make_scheduler", "sample"]
