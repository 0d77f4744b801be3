"""Small models that exercise each capability of the model contract, for the tests only (not registered
for users). Each one is the smallest thing that needs the capability, written only against the public
contract, as a family model would be:

- TokenModel: a bigram language model on token streams (and padded target sequences);
- TwoDomainModel: a translator between unpaired domains (needs `x_b` in the batch);
- LatentPriorModel: a Gaussian prior over the latents of another run's VAE (a run reference);
- CriticModel: a WGAN-style pair with n_critic 5 on fresh batches, two learning rates and EMA of G only;
- MomentsModel: no trainable parameters; fitted by `fit`;
- InpaintModel: conditioned on `source` + `mask`, not on labels;
- ProbeModel: one parameter per data kind, for checking exact resume on every data source.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.batch import MASK, SOURCE, X, X_B, X_MASK
from genlab.models.base import GenerativeModel, LossOutput
from genlab.registry import register_model
from genlab.train.optim import OptimizerSpec, ParamGroup, Phase


@dataclass
class TokenConfig:
    dim: int = 16


class TokenModel(GenerativeModel):
    family = "test"
    description = "bigram language model (tests only)"
    config_class = TokenConfig
    data_kinds = ("tokens",)
    likelihood = "exact"

    def __init__(self, config, spec, conditions=()):
        super().__init__(config, spec, conditions)
        self.table = nn.Embedding(spec.vocab_size, spec.vocab_size)

    def training_loss(self, batch, phase, step, generator):
        x = batch[X]  # (B, T)
        logits = self.table(x[:, :-1])  # (B, T-1, V)
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        if X_MASK in batch:  # padded targets: only real tokens count
            keep = batch[X_MASK][:, 1:].flatten().float()
            loss = (loss * keep).sum() / keep.sum().clamp(min=1)
        else:
            loss = loss.mean()
        return LossOutput(loss, {"loss": loss.detach()})

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None):
        x = batch[X]
        nll = F.cross_entropy(self.table(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        return nll.view(len(x), -1).mean(1) / math.log(2)

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        self.check_conditions(n, conditions)
        length = self.data_shape[0]
        tokens = torch.zeros(n, length, dtype=torch.long, device=self.device)
        for t in range(1, length):
            probs = self.table(tokens[:, t - 1]).softmax(-1)
            tokens[:, t] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return tokens


@dataclass
class TwoDomainConfig:
    channels: int = 4


class TwoDomainModel(GenerativeModel):
    family = "test"
    description = "unpaired A -> B translator (tests only)"
    config_class = TwoDomainConfig
    required_inputs = (X_B,)
    sampling_inputs = (SOURCE,)

    def __init__(self, config, spec, conditions=()):
        super().__init__(config, spec, conditions)
        c = spec.shape[0]
        self.a_to_b = nn.Sequential(nn.Conv2d(c, config.channels, 3, padding=1), nn.Tanh(),
                                    nn.Conv2d(config.channels, c, 3, padding=1))

    def training_loss(self, batch, phase, step, generator):
        fake_b = self.a_to_b(batch[X])
        # match the first two moments of domain B: enough for a test of the plumbing
        loss = (fake_b.mean() - batch[X_B].mean()).pow(2) + (fake_b.std() - batch[X_B].std()).pow(2)
        return LossOutput(loss, {"loss": loss.detach()})

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        conditions = self.check_conditions(n, conditions)
        source = conditions.get(SOURCE)
        if source is None:
            source = self.noise((n, *self.data_shape), generator).clamp(-1, 1)
        return self.a_to_b(source.float()).clamp(-1, 1)


@dataclass
class LatentPriorConfig:
    autoencoder: str = ""  # a VAE run; its decoder turns prior samples into images


class LatentPriorModel(GenerativeModel):
    family = "test"
    description = "Gaussian prior over a VAE run's latents (tests only)"
    config_class = LatentPriorConfig
    references = ("autoencoder",)

    def __init__(self, config, spec, conditions=()):
        super().__init__(config, spec, conditions)
        self.mean = nn.Parameter(torch.zeros(1))  # sized on first use: the VAE's latent size is not known yet
        self.log_std = nn.Parameter(torch.zeros(1))

    def training_loss(self, batch, phase, step, generator):
        vae = self.referenced("autoencoder")
        with torch.no_grad():
            z, _ = vae.encode(batch[X])  # (B, Z)
        loss = (0.5 * ((z - self.mean) / self.log_std.exp()).pow(2) + self.log_std).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        vae = self.referenced("autoencoder")
        z = self.mean + self.log_std.exp() * self.noise((n, vae.config.latent_dim), generator)
        return vae.decode(z).clamp(-1, 1)


@dataclass
class CriticConfig:
    hidden: int = 16
    n_critic: int = 5
    critic_lr_scale: float = 4.0  # two time-scale update rule: the critic learns faster


class CriticModel(GenerativeModel):
    family = "test"
    description = "n_critic critic + generator on points (tests only)"
    config_class = CriticConfig
    data_kinds = ("points",)

    def __init__(self, config, spec, conditions=()):
        super().__init__(config, spec, conditions)
        d = spec.shape[0]
        self.generator = nn.Sequential(nn.Linear(4, config.hidden), nn.ReLU(), nn.Linear(config.hidden, d))
        self.critic = nn.Sequential(nn.Linear(d, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1))
        self.critic_calls = 0  # counted by the tests

    def optimizers(self):
        return [OptimizerSpec("critic", [ParamGroup(list(self.critic.parameters()))], kind="adam",
                              lr_scale=self.config.critic_lr_scale, betas=(0.0, 0.9)),
                OptimizerSpec.over("generator", self.generator, kind="adam", betas=(0.0, 0.9))]

    def phases(self):
        return [Phase("critic", repeats=self.config.n_critic, fresh_batch=True), Phase("generator")]

    def ema_modules(self):
        return ["generator"]

    def training_loss(self, batch, phase, step, generator):
        x = batch[X]
        fake = self.generator(torch.randn(len(x), 4, generator=generator, device=x.device))
        poison = os.environ.get("GENLAB_TEST_NAN_AT")  # "rank:step": a NaN on one process only
        nan = poison == f"{os.environ.get('RANK', '0')}:{step}"
        if phase == "critic":
            self.critic_calls += 1
            loss = self.critic(fake.detach()).mean() - self.critic(x).mean() + 0.1 * self.critic(x).pow(2).mean()
        else:
            loss = -self.critic(fake).mean()
        if nan:
            loss = loss * float("nan")
        return LossOutput(loss, {f"{phase}_loss": loss.detach()})

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        self.check_conditions(n, conditions)
        return self.generator(self.noise((n, 4), generator))


@dataclass
class MomentsConfig:
    pass


class MomentsModel(GenerativeModel):
    family = "test"
    description = "a Gaussian fitted to the data's moments, no trainable parameters (tests only)"
    config_class = MomentsConfig

    def __init__(self, config, spec, conditions=()):
        super().__init__(config, spec, conditions)
        self.register_buffer("mean", torch.zeros(spec.shape))
        self.register_buffer("std", torch.ones(spec.shape))

    def fit(self, data):
        x = data.train_batch(0, data.train_size(), seed=0, device=self.device)[X]
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0))
        return {"mean_of_std": float(self.std.mean())}

    def training_loss(self, batch, phase, step, generator):
        raise AssertionError("a model without parameters is never given a training step")

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        self.check_conditions(n, conditions)
        return self.mean + self.std * torch.randn((n, *self.data_shape), generator=generator, device=self.device)


@dataclass
class InpaintConfig:
    channels: int = 8


class InpaintModel(GenerativeModel):
    family = "test"
    description = "fills the unknown part of an image given source + mask (tests only)"
    config_class = InpaintConfig
    accepted_conditions = (SOURCE, MASK)
    data_kinds = ("image",)

    def __init__(self, config, spec, conditions=()):
        super().__init__(config, spec, conditions)
        c = spec.shape[0]
        self.net = nn.Sequential(nn.Conv2d(2 * c + 1, config.channels, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(config.channels, c, 3, padding=1))

    def _fill(self, source, mask, noise):
        known = mask.float()
        out = self.net(torch.cat([source * known, noise, known], dim=1))
        return known * source + (1 - known) * out

    def training_loss(self, batch, phase, step, generator):
        x = batch[X]
        # a random half of each image is hidden: the model learns from x alone
        keep_top = torch.rand(len(x), 1, 1, 1, generator=generator, device=x.device) < 0.5
        rows = torch.arange(x.shape[-2], device=x.device).view(1, 1, -1, 1) < x.shape[-2] // 2
        mask = (rows == keep_top).expand(-1, 1, -1, x.shape[-1])
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        loss = (self._fill(x, mask, noise) - x).pow(2).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        conditions = self.check_conditions(n, conditions)
        if SOURCE not in conditions or MASK not in conditions:
            raise ValueError("InpaintModel samples from an image and a mask: give --input and --mask")
        noise = self.noise((n, *self.data_shape), generator)
        return self._fill(conditions[SOURCE].float(), conditions[MASK].bool(), noise).clamp(-1, 1)


@dataclass
class ProbeConfig:
    pass


class ProbeModel(GenerativeModel):
    """One parameter pulled towards each batch's mean, plus a generator draw: resume must repeat both."""

    family = "test"
    description = "a probe of exact resume on every data kind (tests only)"
    config_class = ProbeConfig
    data_kinds = ("image", "points", "tokens", "series", "audio")

    def __init__(self, config, spec, conditions=()):
        super().__init__(config, spec, conditions)
        self.w = nn.Parameter(torch.zeros(1))

    def training_loss(self, batch, phase, step, generator):
        values = torch.cat([v.float().reshape(len(v), -1).mean(1) for k, v in sorted(batch.items())])
        jitter = torch.randn(1, generator=generator, device=self.w.device)
        loss = (self.w - values.mean() - 0.01 * jitter).pow(2).sum()
        return LossOutput(loss, {"loss": loss.detach(), "batch_mean": values.mean().detach()})

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        return self.w.expand(n, *self.data_shape).clone()


TEST_MODELS = {
    "test-tokens": TokenModel, "test-two-domain": TwoDomainModel, "test-latent-prior": LatentPriorModel,
    "test-critic": CriticModel, "test-moments": MomentsModel, "test-inpaint": InpaintModel, "test-probe": ProbeModel,
}


def register_test_models() -> None:
    for name, cls in TEST_MODELS.items():
        register_model(name, f"{__name__}:{cls.__name__}")
