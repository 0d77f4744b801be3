"""Generative models, one per file, each meeting the contract in `base.py`."""

from .base import GenerativeModel, LossOutput

__all__ = ["GenerativeModel", "LossOutput"]
