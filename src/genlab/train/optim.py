"""What a model asks of optimisation, and how the trainer builds it.

A model describes its optimizers (`OptimizerSpec`: kind, parameter groups with their own learning-rate
scale and weight decay, betas, schedule, clipping) and its phases (`Phase`: which optimizer, how many
repeats per step, every how many steps, on a fresh batch or not). That is enough for n_critic (WGAN-GP),
two time-scale learning rates (SAGAN), a 0.01x mapping network and lazy R1 every 16 steps (StyleGAN),
no-decay groups (GPT), Adamax (NVAE) and pre-training stages, without the trainer knowing any of them.
Anything left as None takes the run's TrainConfig value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..errors import ArgumentError
from ..precision import native_bf16

OptimizerKind = Literal["adamw", "adam", "adamax", "sgd", "muon"]
Schedule = Literal["constant", "warmup", "cosine"]


@dataclass
class ParamGroup:
    params: list[nn.Parameter]
    lr_scale: float = 1.0  # this group's lr is the optimizer's lr times this (StyleGAN's mapping net: 0.01)
    weight_decay: float | None = None  # None: the optimizer's; 0.0 for biases and norms (GPT)
    name: str = ""
    # in a "muon" optimizer: this group's matrices take Muon's orthogonalised steps, the others AdamW's
    muon: bool = False


@dataclass
class OptimizerSpec:
    name: str
    groups: list[ParamGroup]
    kind: OptimizerKind = "adamw"
    lr: float | None = None  # None: TrainConfig.lr (times lr_scale below)
    lr_scale: float = 1.0  # e.g. a discriminator at 4x the generator's lr (TTUR) without fixing either
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    eps: float = 1e-8
    schedule: Schedule | None = None  # None: TrainConfig.schedule
    warmup_steps: int | None = None
    grad_clip: float | None = None  # None: TrainConfig.grad_clip; 0: no clipping

    @classmethod
    def over(cls, name: str, module_or_params, **options) -> "OptimizerSpec":
        """One optimizer over a module's (or a list's) trainable parameters, one group."""
        params = module_or_params.parameters() if isinstance(module_or_params, nn.Module) else module_or_params
        return cls(name, [ParamGroup([p for p in params if p.requires_grad])], **options)

    def parameters(self) -> list[nn.Parameter]:
        return [p for g in self.groups for p in g.params]


@dataclass
class Phase:
    """One part of a training step: compute the loss of `name`, backpropagate, step `optimizer`."""

    name: str
    optimizer: str = ""  # "" -> the optimizer of the same name
    repeats: int = 1  # n_critic: the phase runs this many times per step
    every: int = 1  # lazy regularisation: only on steps divisible by this
    fresh_batch: bool = False  # each repeat on its own batch (WGAN-GP's critic) instead of the step's batch
    until_step: int | None = None  # a stage: active only before this step (pre-training)
    from_step: int = 0  # a stage: active only from this step

    def active(self, step: int) -> bool:
        if step < self.from_step or (self.until_step is not None and step >= self.until_step):
            return False
        return step % self.every == 0

    def __post_init__(self) -> None:
        self.optimizer = self.optimizer or self.name
        if self.repeats < 1 or self.every < 1:
            raise ArgumentError(f"phase '{self.name}': repeats and every must be at least 1")


@dataclass
class Defaults:
    """The run's values for whatever a spec leaves as None."""

    lr: float
    betas: tuple[float, float]
    weight_decay: float
    warmup_steps: int
    grad_clip: float
    schedule: Schedule = "warmup"
    total_steps: int | None = None  # for the cosine schedule
    min_lr_ratio: float = 0.1


@dataclass
class BuiltOptimizer:
    spec: OptimizerSpec
    optimizer: torch.optim.Optimizer
    base_lrs: list[float] = field(default_factory=list)  # per param group, before the schedule
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    grad_clip: float = 0.0
    params: list[nn.Parameter] = field(default_factory=list)

    def set_lr(self, step: int, defaults: Defaults, progress: float | None = None, scale: float = 1.0) -> float:
        """Python arithmetic only: no device work. Returns the factor applied. `progress` in [0, 1]: how
        much of a time budget is spent, which drives the cosine schedule when no total_steps is set;
        `scale`: the run's own lowering of every rate (a rollback after a collapse halves it)."""
        factor = scale * lr_factor(self.schedule, step, self.warmup_steps, defaults.total_steps, defaults.min_lr_ratio,
                                   progress)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return factor


def lr_factor(schedule: Schedule, step: int, warmup: int, total: int | None, min_ratio: float,
              time_progress: float | None = None) -> float:
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if schedule == "constant":
        return 1.0
    if schedule == "warmup" or not (total or time_progress is not None):
        return warm
    if total:
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    else:  # a minutes budget: the cosine follows the share of the time spent
        progress = min(1.0, max(0.0, time_progress))
    return warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def orthogonalise(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration, in the update's own dtype: roughly U V^T for U S V^T = update,
    with singular values left between about 0.5 and 1.5 (the coefficients trade exactness for speed)."""
    a, b, c = coefficients
    tall = update.size(0) > update.size(1)
    x = update.T if tall else update
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1: inside the iteration's basin
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Float32Muon(torch.optim.Muon):
    """torch's Muon, with the Newton-Schulz iterations in float32 where torch runs them in bfloat16.

    bfloat16 is fast only where the hardware computes it. On a 2-core AVX2 CPU without it, a 512x128 by
    128x128 matmul took 6.9 ms in bfloat16 against 0.16 ms in float32, and Muon's step took 1.0 s of a
    1.28 s GPT training step. Same state ("momentum_buffer"), groups and learning-rate rule as torch's.
    """

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            buffers: list[torch.Tensor] = []
            self._init_group(group, params, grads, buffers)
            momentum, lr = group["momentum"], group["lr"]
            for param, grad, buffer in zip(params, grads, buffers):
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                update = orthogonalise(update.float(), group["ns_coefficients"], group["ns_steps"], group["eps"])
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update.to(param.dtype), alpha=-muon_lr(lr, group["adjust_lr_fn"], param.shape))


def muon_lr(lr: float, rule: str | None, shape: torch.Size) -> float:
    """torch's Muon learning-rate rules: "original" sqrt(max(1, A/B)), "match_rms_adamw" 0.2 sqrt(max(A, B))."""
    rows, cols = shape[:2]
    if rule is None or rule == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    if rule == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


class MuonWithAdamW:
    """Muon (Jordan et al. 2024) for the hidden matrices, AdamW for everything else, stepped as one optimizer.

    Muon orthogonalises each matrix's momentum (Newton-Schulz iterations), which the fast small-GPT
    recipes (modded-nanoGPT) found trains hidden layers in fewer steps than Adam; embeddings, the
    output head and 1-D parameters stay on AdamW, as they recommend. The learning rate is shared: Muon's
    step is rescaled to AdamW's update size (Liu et al. 2025, `adjust_lr_fn="match_rms_adamw"`), so one
    schedule drives both. Enough of torch.optim.Optimizer's interface for the trainer, GradScaler and
    checkpoints: param_groups, state, step, zero_grad, state_dict, load_state_dict.
    """

    def __init__(self, muon_groups: list[dict], adamw_groups: list[dict], *, lr: float, betas, eps: float):
        self.parts: dict[str, torch.optim.Optimizer] = {}
        if muon_groups:
            device = muon_groups[0]["params"][0].device
            muon = torch.optim.Muon if native_bf16(device) else Float32Muon
            self.parts["muon"] = muon(muon_groups, lr=lr, momentum=0.95, nesterov=True, adjust_lr_fn="match_rms_adamw")
        if adamw_groups:
            self.parts["adamw"] = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps)

    @property
    def param_groups(self) -> list[dict]:
        # read afresh each time: load_state_dict replaces each part's group dicts. The order is that of
        # BuiltOptimizer.base_lrs: muon groups first, then adamw groups
        return [g for part in self.parts.values() for g in part.param_groups]

    @property
    def state(self):
        return {k: v for part in self.parts.values() for k, v in part.state.items()}

    def step(self, closure=None):
        for part in self.parts.values():
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.parts):
            raise ValueError(f"optimizer state holds {sorted(state)}, this optimizer has {sorted(self.parts)}")
        for name, part in self.parts.items():
            part.load_state_dict(state[name])


_KINDS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "sgd": torch.optim.SGD,
          "muon": MuonWithAdamW}


def build(spec: OptimizerSpec, defaults: Defaults) -> BuiltOptimizer:
    if spec.kind not in _KINDS:
        raise ArgumentError(f"optimizer '{spec.name}': unknown kind '{spec.kind}'; use one of {sorted(_KINDS)}")
    lr = (spec.lr if spec.lr is not None else defaults.lr) * spec.lr_scale
    wd = spec.weight_decay if spec.weight_decay is not None else defaults.weight_decay
    groups, muon_groups, base_lrs = [], [], []
    for g in spec.groups:
        params = [p for p in g.params if p.requires_grad]
        if not params:
            continue
        group = {"params": params, "lr": lr * g.lr_scale, "weight_decay": g.weight_decay if g.weight_decay is not None else wd}
        if spec.kind == "muon" and g.muon:
            if any(p.dim() != 2 for p in params):
                raise ArgumentError(f"optimizer '{spec.name}': Muon takes matrices only; group '{g.name}' holds "
                                    f"parameters of other shapes")
            muon_groups.append(group)
        else:
            groups.append(group)
    base_lrs = [group["lr"] for group in muon_groups + groups]
    if not groups and not muon_groups:
        raise ArgumentError(f"optimizer '{spec.name}' has no trainable parameters")
    if spec.kind == "muon":
        opt = MuonWithAdamW(muon_groups, groups, lr=lr, betas=tuple(spec.betas or defaults.betas), eps=spec.eps)
        groups = muon_groups + groups
    elif spec.kind == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=(spec.betas or defaults.betas)[0])
    else:
        # foreach/fused left to PyTorch: it picks the multi-tensor path on CUDA; on a CPU the per-tensor
        # path measured faster here
        opt = _KINDS[spec.kind](groups, lr=lr, betas=tuple(spec.betas or defaults.betas), eps=spec.eps)
    schedule = spec.schedule or defaults.schedule
    warmup = spec.warmup_steps if spec.warmup_steps is not None else defaults.warmup_steps
    clip = spec.grad_clip if spec.grad_clip is not None else defaults.grad_clip
    return BuiltOptimizer(spec, opt, base_lrs, schedule, warmup, clip or 0.0, [p for g in groups for p in g["params"]])


def no_decay_groups(module: nn.Module, lr_scale: float = 1.0) -> list[ParamGroup]:
    """Matrices (and conv kernels) decay; biases, norms and embeddings' 1-D parameters do not."""
    decay, keep = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else keep).append(p)
    return [ParamGroup(decay, lr_scale, name="decay"), ParamGroup(keep, lr_scale, weight_decay=0.0, name="no_decay")]
