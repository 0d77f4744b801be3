"""Noise schedules and diffusion samplers: no parameters and no network inside.

Discrete-time samplers (ancestral, DDIM) take a `denoiser(x_t, t) -> predicted noise` callable; the ODE
samplers (Euler, Heun, DPM-Solver++) take `denoised(x, sigma) -> x0 estimate` and a list of sigmas. A
model of any prediction type reaches either through one conversion (`prediction.to_x0_and_eps`), so
swapping samplers never touches a model.
"""

from .noise_schedule import NoiseSchedule
from .ode import ODE_SAMPLERS, dpmpp_2m_sample, euler_sample, heun_sample, karras_sigmas
from .samplers import SAMPLERS, ancestral_sample, ddim_sample

__all__ = ["NoiseSchedule", "SAMPLERS", "ODE_SAMPLERS", "ancestral_sample", "ddim_sample", "euler_sample",
           "heun_sample", "dpmpp_2m_sample", "karras_sigmas"]
