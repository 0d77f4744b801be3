"""Noise schedules and diffusion samplers: no parameters and no network inside.

A sampler takes a `denoiser(x, t) -> predicted noise` callable, so swapping samplers never touches a model.
"""

from .noise_schedule import NoiseSchedule
from .samplers import SAMPLERS, ancestral_sample, ddim_sample

__all__ = ["NoiseSchedule", "SAMPLERS", "ancestral_sample", "ddim_sample"]
