"""lumos: a reproducible pipeline for the Lumos paper ("Learning Visual Generative Priors without Text")."""

__version__ = "0.1.0"
