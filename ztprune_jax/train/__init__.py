"""Supervised training of the ViTs: `training` (preprocessing, augmentation, optimiser, steps)."""

from ztprune_jax.train import training

__all__ = ["training"]
