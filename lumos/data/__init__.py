"""Synthetic data for the Lumos reproduction: the procedural Shapes world."""
