"""What every diffusion and flow model of genlab shares: the denoising network, conditioning on class
labels and captions with condition dropout, classifier-free guidance, the ODE samplers and editing
(image-to-image, inpainting), and super-resolution: a run trained with `--condition low_res` learns
p(x | its own image shrunk `low_res_factor` times), the upsampled low-resolution image concatenated to
the network's input (SR3, Saharia et al. 2022).

Captions go through a small transformer encoder (`nn.transformer`, Vaswani et al. 2017) whose tokens
the UNet cross-attends to and whose mean joins the time embedding (GLIDE, Nichol et al. 2022; latent
diffusion, Rombach et al. 2022).

A subclass says how its time variable maps to noise levels (`noise_levels`) and how its network's
output becomes an x0 estimate at a noise level (`denoiser`); everything else here is written once.
The samplers themselves live in `genlab.schedulers` and never see the network.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch

import torch.nn.functional as F

from ...batch import LABEL, LOW_RES, MASK, SOURCE, TEXT, TEXT_MASK, X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.embeddings import drop_labels
from ...nn.transformer import TransformerEncoder
from ...nn.unet import denoising_network
from ...schedulers.editing import check_strength, inpaint_sample, strength_start
from ...schedulers.guidance import classifier_free, classifier_guided
from ...schedulers.ode import ODE_SAMPLERS, Denoised, ode_network_calls
from ..base import GenerativeModel

@dataclass
class DiffusionNetConfig:
    """The settings every diffusion model's network and conditioning share (a model's config extends it)."""

    base_channels: int = 32
    channel_mults: tuple[int, ...] | None = None  # None: chosen from the image size
    num_res_blocks: int = 1
    patch_size: int | None = None  # None: 2 for images of 28 pixels and more, else 1
    # where the UNet self-attends: "middle" only, or "lowest-level", also in every block of the lowest
    # resolution (Ho et al.'s placement: 4 attention layers in the mnist UNet instead of 1). On mnist,
    # 10 minutes on 2 cores: the middle alone trained 12% more steps, sampled 1.1-1.2x faster (bf16,
    # batch 500, eager or compiled; benchmarks/speed.py sampling) and scored FID 1.52 against 1.72
    # (DPM++ 10, 5,000 samples, one seed each)
    attention: Literal["middle", "lowest-level"] = "middle"
    dropout: float = 0.0
    mlp_hidden: int = 128  # network width for 2-D point data
    label_dropout: float = 0.1  # share of items trained without their label or caption (classifier-free guidance)
    text_dim: int = 64  # caption encoder width (runs trained with --condition text)
    text_depth: int = 2
    low_res_factor: int = 4  # super-resolution runs (--condition low_res): 7x7 -> 28x28 on mnist


NetworkOutput = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> float32 prediction


class DiffusionModel(GenerativeModel, abc.ABC):
    family = "diffusion"
    accepted_conditions = (LABEL, TEXT, LOW_RES)
    # every run can edit at sampling: an input alone is image-to-image, an input and a mask inpainting
    sampling_inputs = (SOURCE, MASK)
    # a 2-core CPU compiles the mnist UNet for sampling in 5-20 s (warm cache) and then takes about 0.2 s
    # a call at batch 500 instead of 0.3 (benchmarks/speed.py sampling, bf16). That pays from a few
    # hundred such calls, but a cold cache costs up to a minute and small batches gain less, so only
    # long jobs compile by default (10,000 samples with DDIM 100 are 2,000 calls); training never gained
    compile_pays_after = {"sample": {"cpu": 2000}, "train": {}}
    # sampler names this model takes; the ODE samplers are common to all
    samplers: tuple[str, ...] = tuple(ODE_SAMPLERS)
    run_options = ("classifier",)  # a noise-classifier run that guides sampling towards --class
    ode_path: str = "ve"  # the coordinates Heun integrates in (schedulers.ode): "flow" for flow models

    def __init__(self, config: Any, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        cond_classes = self.num_classes if LABEL in self.conditions else 0
        self.text_encoder = None
        if TEXT in self.conditions:
            if "text_vocab_size" not in spec.extras or not self.is_image:
                raise ArgumentError("--condition text needs captioned images (digits, mnist); this data has no captions")
            self.text_encoder = TransformerEncoder(spec.extras["text_vocab_size"], config.text_dim, config.text_depth,
                                                   heads=4, max_len=spec.extras["text_length"])
        extra = 0
        if LOW_RES in self.conditions:
            if not self.is_image or self.data_shape[-1] % config.low_res_factor:
                raise ArgumentError(f"--condition low_res needs images whose side divides by low_res_factor="
                                    f"{config.low_res_factor}; this data is {self.data_shape}")
            extra = self.data_shape[0]
        self.net, self.config = denoising_network(config, self.diffusion_shape, self.is_image, cond_classes,
                                                  config.text_dim if self.text_encoder is not None else 0, extra)

    @classmethod
    def migrate_config(cls, config):
        config.setdefault("attention", "lowest-level")  # runs saved before the setting attended there
        return config

    @property
    def low_res_size(self) -> int | None:
        return self.data_shape[-1] // self.config.low_res_factor if LOW_RES in self.conditions else None

    def shrink(self, x: torch.Tensor) -> torch.Tensor:
        """The low-resolution version of images x that a super-resolution run learns to undo (area average)."""
        return F.avg_pool2d(x.float(), self.config.low_res_factor)

    @property
    def diffusion_shape(self) -> tuple[int, ...]:
        """The shape of what the diffusion runs over: the data's items, or a latent diffusion's latents."""
        return self.data_shape

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time the network sees for the model's time t (a timestep index, or a flow's t in [0, 1]).

        Always float32: the discrete samplers pass integer timesteps and the ODE samplers fractional ones,
        and one dtype means one compiled graph for both."""
        return t.float()

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None,
                low_res: torch.Tensor | None = None) -> torch.Tensor:
        """The network's prediction at x_t; a model trained with captions and given none sees the null caption."""
        if LOW_RES in self.conditions:
            if low_res is None:
                raise ArgumentError("this run upscales: give the low-resolution images (genlab upscale RUN --input ...)")
            size = self.data_shape[-1]
            if low_res.shape[-1] != self.low_res_size:
                low_res = F.interpolate(low_res.float(), size=(self.low_res_size,) * 2, mode="area")
            up = F.interpolate(low_res.float(), size=(size, size), mode="bicubic", align_corners=False)
            x = torch.cat([x, up.to(x.dtype)], dim=1)  # (B, 2C, H, W)
        context = None
        if self.text_encoder is not None:
            if text is None:
                text = torch.zeros(x.shape[0], self.spec.extras["text_length"], dtype=torch.long, device=x.device)
                text_mask = torch.zeros_like(text, dtype=torch.bool)
            text_mask = torch.ones_like(text, dtype=torch.bool) if text_mask is None else text_mask
            context = self.text_encoder(text, text_mask)  # (B, L, text_dim)
        return self.net(x, self.network_time(t), labels, context, text_mask if context is not None else None)

    # ------------------------------------------------------------------ what a subclass provides
    @abc.abstractmethod
    def noise_levels(self, steps: int, strength: float = 1.0) -> list[float]:
        """Decreasing sigmas for `steps` ODE steps, from the level `strength` picks (1: pure noise) to 0."""

    @abc.abstractmethod
    def denoiser(self, output: NetworkOutput, n: int, clip: float | None) -> Denoised:
        """(x = x0 + sigma eps, sigma) -> x0 estimate, from the network output at the matching time."""

    def default_steps(self, sampler: str) -> int:
        return self.config.sampling_steps

    # ------------------------------------------------------------------ shared
    def training_conditions(self, batch, generator) -> dict[str, torch.Tensor]:
        """The network's condition inputs for a batch, each dropped for `label_dropout` of the items
        (labels to "no class", captions to no tokens) so one network learns the unconditional model too."""
        out = {}
        if LABEL in self.conditions and batch.get(LABEL) is not None:
            out["labels"] = drop_labels(batch[LABEL], self.config.label_dropout, self.num_classes, generator)
        if TEXT in self.conditions and batch.get(TEXT) is not None:
            mask = batch.get(TEXT_MASK, torch.ones_like(batch[TEXT], dtype=torch.bool))
            kept = torch.rand(mask.shape[0], device=mask.device, generator=generator) >= self.config.label_dropout
            out["text"], out["text_mask"] = batch[TEXT], mask & kept[:, None]
        if LOW_RES in self.conditions:
            out["low_res"] = batch[LOW_RES] if batch.get(LOW_RES) is not None else self.shrink(batch[X])
        return out

    def _guidance_inputs(self, conditions) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(the network's condition inputs for `conditions`, the same inputs meaning "no condition"), for
        the conditions this run was trained with."""
        given, null = {}, {}
        if LABEL in conditions and LABEL in self.conditions:
            given["labels"] = conditions[LABEL]
            null["labels"] = torch.full_like(conditions[LABEL], self.num_classes)
        if TEXT in conditions and TEXT in self.conditions:
            text = conditions[TEXT].long()
            given["text"] = text
            given["text_mask"] = conditions.get(TEXT_MASK, torch.ones_like(text, dtype=torch.bool)).bool()
            null["text"], null["text_mask"] = torch.zeros_like(text), torch.zeros_like(given["text_mask"])
        if LOW_RES in conditions and LOW_RES in self.conditions:
            given["low_res"] = null["low_res"] = conditions[LOW_RES].float()  # guidance is on the other conditions
        elif LOW_RES in self.conditions and X in conditions:  # a batch of data: its own images, shrunk
            given["low_res"] = null["low_res"] = self.shrink(conditions[X])
        return given, null

    def sample_options(self, **given: Any) -> dict[str, Any]:
        sampler = given.get("sampler") or self.config.sampler
        return {"sampler": sampler, "steps": self.default_steps(sampler), **{k: v for k, v in given.items() if v is not None}}

    def network_calls(self, **options: Any) -> int:
        opts = self.sample_options(**options)
        sampler, steps = opts["sampler"], opts["steps"]
        calls = ode_network_calls(sampler, steps) if sampler in ODE_SAMPLERS else steps
        return calls * (2 if opts.get("guidance_scale", 1.0) != 1.0 else 1)

    def _check_sampler(self, sampler: str) -> None:
        if sampler not in self.samplers:
            raise ArgumentError(f"unknown sampler '{sampler}'; choose from {', '.join(self.samplers)}")

    def evaluation_conditions(self, n: int, real=None, **options: Any):
        """As for every model; with a guiding classifier, every class equally even for an unconditional run;
        a super-resolution run upscales the real items shrunk (cycled to n)."""
        if options.get("classifier") is not None and self.num_classes:
            conditions = {LABEL: torch.arange(n) % self.num_classes}
        else:
            conditions = dict(super().evaluation_conditions(n) or {})
        if LOW_RES in self.conditions:
            if real is None or real.get(X) is None:
                raise ArgumentError("a super-resolution run samples from low-resolution images: give them "
                                    "(genlab upscale RUN --input ...)")
            images = real[X].float()
            conditions[LOW_RES] = self.shrink(images[torch.arange(n) % len(images)]).cpu()
        return conditions or None

    def _classifier_labels(self, classifier, conditions) -> torch.Tensor:
        """The classes a guiding classifier steers towards (taken out of conditions the run lacks)."""
        if getattr(classifier, "log_prob_gradient", None) is None:
            raise ArgumentError("--classifier takes a noise-classifier run (genlab train noise-classifier --data ...)")
        if tuple(classifier.data_shape) != tuple(self.diffusion_shape) or classifier.num_classes != self.num_classes:
            raise ArgumentError(f"the classifier was trained on {tuple(classifier.data_shape)} images with "
                                f"{classifier.num_classes} classes; this run samples {tuple(self.diffusion_shape)} "
                                f"with {self.num_classes}: train the classifier on this run's data")
        labels = conditions.get(LABEL) if LABEL in self.conditions else conditions.pop(LABEL, None)
        if labels is None:
            raise ArgumentError("classifier guidance needs the class to steer towards: give --class (e.g. --class 3)")
        return self.checked_labels(labels)

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, sampler: str | None = None, steps: int | None = None,
               guidance_scale: float = 1.0, strength: float = 1.0, resample: int = 5, progress=None,
               classifier=None, **options: Any) -> torch.Tensor:
        """n samples; with conditions[SOURCE] an edit of those images: image-to-image with `strength`
        (the share of the noise path redone), or inpainting where conditions[MASK] is False.

        With a `classifier` (a noise-classifier model), `guidance_scale` is the classifier guidance's
        scale towards conditions[LABEL] (Dhariwal & Nichol 2021), and a label-conditioned run also gets
        the labels as its own condition, unguided; otherwise it is classifier-free guidance's scale."""
        conditions = dict(conditions or {})
        labels = self._classifier_labels(classifier, conditions) if classifier is not None else None
        conditions = self.check_conditions(n, conditions)
        sampler = sampler or self.config.sampler
        self._check_sampler(sampler)
        if (conditions.get(SOURCE) is not None or classifier is not None) and sampler not in ODE_SAMPLERS:
            sampler = "euler"  # edits and classifier guidance run on the ODE samplers; euler is DDIM's update
        steps = self.default_steps(sampler) if steps is None else steps
        output = classifier_free(self, *self._guidance_inputs(conditions), 1.0 if classifier is not None else guidance_scale)
        clip = 1.0 if (self.config.clip_denoised and self.is_image) else None

        denoised = self.denoiser(output, n, clip)
        if classifier is not None:
            denoised = classifier_guided(denoised, lambda x, sigma: classifier.log_prob_gradient(x, sigma, labels),
                                         guidance_scale, clip)
        source = conditions.get(SOURCE)
        if source is None and MASK in conditions:
            raise ArgumentError("a mask needs the image it masks: give --input IMAGE with --mask")
        if source is None and sampler in ODE_SAMPLERS:
            return ODE_SAMPLERS[sampler](denoised, self.noise_levels(steps), (n, *self.diffusion_shape),
                                         generator=generator, device=self.device, dtype=self.dtype, progress=progress,
                                         path=self.ode_path)
        if source is None:
            return self.discrete_sample(n, output, sampler, steps, clip, generator, progress, **options)
        source = source.to(self.dtype)
        if MASK in conditions:
            mask = conditions[MASK].bool().reshape(n, 1, *self.diffusion_shape[1:])
            return inpaint_sample(denoised, self.noise_levels(steps), source, mask,
                                  resample=resample, generator=generator, progress=progress)
        strength = check_strength(strength)
        sigmas = self.noise_levels(max(1, round(steps * strength)), strength)
        return ODE_SAMPLERS[sampler](denoised, sigmas, source.shape, generator=generator,
                                     progress=progress, start=strength_start(source, sigmas[0], generator),
                                     path=self.ode_path)

    def discrete_sample(self, n, output, sampler, steps, clip, generator, progress, **options) -> torch.Tensor:
        """Samplers of a model's own discrete time (the DDPM's ancestral and DDIM)."""
        raise ArgumentError(f"unknown sampler '{sampler}'; choose from {', '.join(self.samplers)}")
