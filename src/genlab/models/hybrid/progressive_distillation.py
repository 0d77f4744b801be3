"""Progressive distillation of a trained diffusion run into a few-step sampler (Salimans & Ho 2022,
"Progressive Distillation for Fast Sampling of Diffusion Models").

The student is the teacher's own network, initialised with the teacher's weights. In each round it
learns to do in one deterministic DDIM step what its teacher does in two: from z_t, two teacher DDIM
steps reach z_t''; the student's target is the clean image x~ whose single DDIM step from z_t lands
exactly on z_t'',

    x~ = (z_t'' - (s_t'' / s_t) z_t) / (a_t'' - (s_t'' / s_t) a_t),

on the student's own grid of N/2 steps, with the paper's truncated-SNR weight max(SNR_t, 1) on the
squared error of its clean-image estimate. After `round_steps` training steps the student becomes the
next round's teacher and N halves again, from `teacher_steps` down to `student_steps`; the last round
goes on until training stops.

The student predicts v (or x0): with one or two steps the first step starts from pure noise, where a
noise prediction says nothing about the image (the paper's point). Distil a teacher trained to predict
v (`genlab train ddpm --set prediction=v`) and the student starts as its exact copy.

Why this method here: it needs no other network (consistency distillation's best results use a
perceptual LPIPS network), gives the 4-, 2- and 1-step students of the benchmark one after the other
in one run, and starts each round from a student that is already nearly right, which matters when the
whole budget is minutes on two cores.

`adversarial_weight` > 0 adds adversarial diffusion distillation's extra term (Sauer et al. 2023, "ADD")
in the last round: a convolutional discriminator judges the student's clean estimate at its last step
(from a noised real image, where that estimate is the sample itself) against real images, and the student
minimises the distillation loss plus that weight times the non-saturating generator loss; the
discriminator has an R1 penalty on real images (`r1_weight`), as ADD's has. The discriminator reuses the
student phase's estimates, so it costs no extra UNet call; it trains in every round, so it is warm when
its term starts.

The teacher run is named by `teacher` (`genlab distill TEACHER_RUN`); it is checked like any run
reference, and a changed teacher is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from ...batch import X, Batch
from ...nn.convnets import ConvEncoder
from ...train.optim import OptimizerSpec
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...registry import get_model_class
from ...schedulers.prediction import to_x0_and_eps
from ...schedulers.samplers import ddim_timesteps
from ..base import GenerativeModel, LossOutput
from ..gan.losses import generator_loss, regularised_discriminator_loss


@dataclass
class ProgressiveDistillationConfig:
    teacher: str = ""  # the diffusion run distilled (genlab distill TEACHER_RUN, or --set teacher=RUN)
    teacher_steps: int = 16  # DDIM steps of the first round's teacher
    student_steps: int = 2  # DDIM steps of the final student; teacher_steps / student_steps is a power of 2
    round_steps: int = 500  # training steps per halving round; the last round goes on until training stops
    # what the student predicts; auto: the teacher's, when it is v or x0 (the student then starts as an exact
    # copy of the teacher), else v. A noise-predicting teacher makes a poor start: its network's output, read
    # as v, is right at low noise (where v ~ eps) and wrong at high noise (where v ~ -x0)
    prediction: Literal["auto", "v", "x0"] = "auto"
    adversarial_weight: float = 0.0  # ADD's adversarial term in the last round; 0: distillation alone
    discriminator_channels: int = 32  # the discriminator's first width (DCGAN's strided convolutions)
    # R1's gamma on real images (Mescheder et al. 2018, as in ADD): unpenalised, the discriminator of one
    # mnist seed of three won outright (d_loss 0.08) and its term pushed the student off its teacher
    r1_weight: float = 0.1


class ProgressiveDistillation(GenerativeModel):
    family = "hybrid"
    description = "progressive distillation of a DDPM run into a few-step DDIM student (Salimans & Ho 2022)"
    config_class = ProgressiveDistillationConfig
    references = ("teacher",)
    data_kinds = ("image",)
    # the paper's Adam at lr 1e-4 for a round of 50k steps; a round here is a few hundred steps. A short
    # EMA, because the student's step count changes at every round and an average must not span two
    train_defaults = {"lr": 2e-4, "batch_size": 64, "ema_decay": 0.99, "warmup_steps": 0}

    def __init__(self, config: ProgressiveDistillationConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        from ...runs import Run  # runs imports the registry, which imports this module lazily

        if not config.teacher:
            raise ArgumentError("progressive distillation needs the diffusion run to distil: "
                                "genlab distill TEACHER_RUN (or --set teacher=RUN)")
        ratio = config.teacher_steps / max(config.student_steps, 1)
        if config.student_steps < 1 or ratio < 2 or not math.log2(ratio).is_integer():
            raise ArgumentError(f"teacher_steps={config.teacher_steps} must be student_steps={config.student_steps} "
                                "times a power of 2 (each round halves the steps), e.g. 16 and 2")
        teacher_run = Run(config.teacher)
        teacher_cls = get_model_class(teacher_run.model_name)
        if teacher_cls.references or not hasattr(teacher_cls, "discrete_sample"):
            raise ArgumentError(f"the teacher run {config.teacher} is a '{teacher_run.model_name}' run; progressive "
                                "distillation takes a pixel-space DDPM run (genlab train ddpm ...)")
        trained_on = [c for c in teacher_run.conditions if c in teacher_cls.accepted_conditions]
        if trained_on:  # a guided student would also need the teacher's guidance distilled (Meng et al. 2023)
            raise ArgumentError(f"the teacher run was trained with --condition {' '.join(trained_on)}; this genlab "
                                "distils unconditional diffusion runs only")
        if tuple(teacher_run.spec.shape) != tuple(spec.shape):
            raise ArgumentError(f"the teacher run was trained on {tuple(teacher_run.spec.shape)} items, this data has "
                                f"{tuple(spec.shape)}: distil it on its own data (genlab distill sets it)")
        self.num_rounds = int(math.log2(ratio))
        prediction = config.prediction
        if prediction == "auto":
            prediction = teacher_run.model_config.prediction if teacher_run.model_config.prediction != "epsilon" else "v"
        student_config = replace(teacher_run.model_config, prediction=prediction, sampler="ddim",
                                 sampling_steps=config.student_steps)
        self.student = teacher_cls(student_config, spec, conditions)
        # the teacher of rounds after the first: the student as it ended the round before. Saved with the run,
        # never trained: its weights are buffers, which no optimizer sees
        self.round_teacher = _frozen(teacher_cls(student_config, spec, conditions))
        self.register_buffer("round", torch.zeros((), dtype=torch.long))
        if config.adversarial_weight < 0:
            raise ArgumentError(f"--set adversarial_weight={config.adversarial_weight}: the weight must be >= 0 "
                                "(0 = distillation alone)")
        if config.adversarial_weight:
            self.discriminator = ConvEncoder(spec.shape[0], spec.shape[-1], config.discriminator_channels, 1)
        # the student phase's last-step estimates and real images, for the discriminator phase of the same step
        self._judged: tuple[torch.Tensor, torch.Tensor] | None = None
        self._grids: dict[tuple[int, str], torch.Tensor] = {}

    def attach_reference(self, name: str, model) -> None:
        if type(model) is not type(self.student):
            raise ArgumentError(f"the teacher run's model is a {type(model).__name__}, this student a "
                                f"{type(self.student).__name__}: the run changed since this run was made")
        super().attach_reference(name, model)
        # a new run starts from the teacher's weights; a saved one loads its own over them afterwards
        self.student.load_state_dict(model.state_dict())
        self.round_teacher.load_state_dict(model.state_dict())

    def ema_modules(self) -> list[str]:
        return ["student"]

    def optimizers(self) -> list[OptimizerSpec]:
        # "model" first: its phase computes the estimates the discriminator phase then judges
        specs = [OptimizerSpec.over("model", self.student)]
        if self.config.adversarial_weight:
            specs.append(OptimizerSpec.over("discriminator", self.discriminator, betas=(0.5, 0.999)))
        return specs

    # ------------------------------------------------------------------ the rounds
    def steps_of_round(self, r: int) -> int:
        """The student's DDIM steps in round r (0-based): teacher_steps / 2^(r + 1)."""
        return self.config.teacher_steps // 2 ** (r + 1)

    @property
    def current_steps(self) -> int:
        """The step count the student has been trained for so far (the last round's once training ends)."""
        return self.steps_of_round(int(self.round))

    def _grid(self, r: int, device: torch.device) -> torch.Tensor:
        """Round r's teacher timesteps from the top, then T for "clean" (alpha_bar = 1); copied to the device once."""
        key = (r, str(device))
        if key not in self._grids:
            T = self.student.config.num_timesteps
            self._grids[key] = torch.tensor(ddim_timesteps(T, self.config.teacher_steps // 2 ** r)[::-1] + [T],
                                            device=device)
        return self._grids[key]

    def _teacher_x0(self, teacher, z: torch.Tensor, t: torch.Tensor, a, s, conditions) -> torch.Tensor:
        x0 = to_x0_and_eps(teacher.config.prediction, z.float(), teacher(z, t, **conditions).float(), a, s)[0]
        return x0.clamp(-1, 1) if teacher.config.clip_denoised and self.is_image else x0

    def training_loss(self, batch: Batch, phase: str, step: int, generator: torch.Generator) -> LossOutput:
        if phase == "discriminator":
            return self._discriminator_loss()
        cfg = self.config
        r = min(step // cfg.round_steps, self.num_rounds - 1)
        if step and step % cfg.round_steps == 0 and step // cfg.round_steps < self.num_rounds:
            # a new round: the student so far becomes the teacher (idempotent within the step)
            self.round_teacher.load_state_dict(self.student.state_dict())
            self.round.fill_(r)
        teacher = self.referenced("teacher") if r == 0 else self.round_teacher
        x = batch[X].float()
        n = len(x)
        grid = self._grid(r, x.device)
        ab = torch.cat([self.student.schedule.on("alpha_bars", x.device).float(), torch.ones(1, device=x.device)])
        k = len(grid) // 2  # the student's steps this round
        if cfg.adversarial_weight:
            # stratified: every k-th item at each step, so the items at the last step (which the discriminator
            # judges) are a fixed slice, and picking them out needs no host sync
            j = 2 * (torch.arange(n, device=x.device) % k)
        else:
            j = 2 * torch.randint(0, k, (n,), generator=generator, device=x.device)  # the student's times
        t, t1, t2 = grid[j], grid[j + 1], grid[j + 2]
        shape = (-1, *([1] * (x.dim() - 1)))
        a, a1, a2 = (ab[i].sqrt().view(shape) for i in (t, t1, t2))
        s, s1, s2 = ((1 - ab[i]).clamp(min=0).sqrt().view(shape) for i in (t, t1, t2))
        conditions = self.student.training_conditions(batch, generator)
        z = a * x + s * torch.randn(x.shape, generator=generator, device=x.device)
        with torch.no_grad():  # two deterministic DDIM steps of the teacher: t -> t' -> t''
            x0 = self._teacher_x0(teacher, z.to(batch[X].dtype), t, a, s, conditions)
            z1 = a1 * x0 + s1 * (z - a * x0) / s
            x0 = self._teacher_x0(teacher, z1.to(batch[X].dtype), t1, a1, s1.clamp(min=1e-8), conditions)
            z2 = a2 * x0 + s2 * (z1 - a1 * x0) / s1.clamp(min=1e-8)
            ratio = s2 / s
            target = (z2 - ratio * z) / (a2 - ratio * a)
        out = self.student(z.to(batch[X].dtype), t, **conditions).float()
        x0_student = to_x0_and_eps(self.student.config.prediction, z, out, a, s)[0]
        snr = (a / s) ** 2
        per_item = (x0_student - target).pow(2).flatten(1).mean(1) * snr.flatten().clamp(min=1.0)
        loss = per_item.mean()
        logs = {"loss": loss.detach(), "round": torch.tensor(float(r), device=x.device)}
        if cfg.adversarial_weight:
            fake, real = x0_student[k - 1::k], x  # the items at the student's last step: their estimate is the sample
            self._judged = (fake.detach(), real)  # judged in this step's discriminator phase
            if r == self.num_rounds - 1 and len(fake):
                adversarial = generator_loss("non-saturating", self.discriminator(fake))
                loss = loss + cfg.adversarial_weight * adversarial
                logs["g_loss"] = adversarial.detach()
        return LossOutput(loss, logs)

    def _discriminator_loss(self) -> LossOutput:
        if self._judged is None:
            raise RuntimeError("the discriminator phase runs after the student's, which gives it the items to judge")
        fake, real = self._judged
        self._judged = None
        if not len(fake):  # a batch smaller than the student's steps has no item at the last one
            return LossOutput(0 * self.discriminator(real).sum(), {})
        loss, logs = regularised_discriminator_loss("non-saturating", self.discriminator, real, fake,
                                                    r1_weight=self.config.r1_weight)
        return LossOutput(loss, logs)

    # ------------------------------------------------------------------ sampling
    def sample_options(self, **given: Any) -> dict[str, Any]:
        options = {k: v for k, v in given.items() if v is not None}
        steps = options.setdefault("steps", self.current_steps)
        options.setdefault("sampler", "ddim")
        if steps != self.current_steps or options["sampler"] != "ddim":
            raise ArgumentError(f"this student was distilled for DDIM with {self.current_steps} steps; sample it so "
                                f"(or distil another with --student-steps {steps})")
        return options

    def network_calls(self, **options: Any) -> int:
        return self.sample_options(**options)["steps"]

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {f"DDIM {self.current_steps} steps (distilled)": {}}

    def evaluation_conditions(self, n: int, real: Batch | None = None, **options: Any) -> Batch | None:
        return self.student.evaluation_conditions(n, real)

    def sample(self, n: int, conditions: Batch | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        options = self.sample_options(**options)
        return self.student.sample(n, conditions, generator, **options)


def _frozen(module: nn.Module) -> nn.Module:
    """The module with every parameter turned into a buffer of the same name (same state-dict keys)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                del sub._parameters[name]
                sub.register_buffer(name, param.detach())
    return module.eval()
