"""Denoising diffusion GAN (Xiao et al. 2022, "Tackling the Generative Learning Trilemma with Denoising
Diffusion GANs").

A diffusion model with a few large steps (2 to 8 rather than hundreds). With steps that large the true
denoising distribution q(x_{k-1} | x_k) is far from the Gaussian a DDPM assumes, so each step is a
conditional GAN instead:

- the generator takes a noisy item x_k, latent noise z and the step k and predicts a clean item x0';
  x'_{k-1} is then drawn from the diffusion posterior q(x_{k-1} | x_k, x0'). The latent noise is what
  lets one x_k have many denoised answers;
- the discriminator judges pairs (x_{k-1}, x_k) at step k: real pairs are two consecutive steps of the
  forward chain from a data item, fake ones pair the same x_k with the generator's x'_{k-1};
- the non-saturating loss with lazy R1 on the real x_{k-1}, as in the paper; the shared GAN options
  (loss, penalties, TTUR, EMA of the generator) apply.

The noise levels are the variance-preserving SDE cut into `num_steps` steps (`NoiseSchedule(kind="vp")`,
the paper's beta_min 0.1, beta_max 20). Sampling is `num_steps` generator calls from pure noise.

What differs from the paper: the generator is genlab's diffusion UNet (the DDPM's network) and z enters
through a mapping MLP added to the time embedding that every residual block sees (the paper's NCSN++
modulates each group norm's scale and shift by z, AdaGN); the discriminator is a small residual network
rather than NCSN++'s. Both are sized for minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import X, Batch
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.embeddings import TimestepEmbedding
from ...nn.unet import ResBlock, denoising_network
from ...schedulers import NoiseSchedule
from ..base import LossOutput
from ..gan.adversarial import AdversarialConfig, AdversarialModel
from ..gan.losses import generator_loss


@dataclass
class DDGANConfig(AdversarialConfig):
    latent_dim: int = 32  # the paper's nz is 100 for CIFAR-10; 32 suffices for digits
    num_steps: int = 4  # denoising steps, each one generator call (the paper: 4 for CIFAR-10, 2 for CelebA-HQ)
    beta_min: float = 0.1
    beta_max: float = 20.0
    # the generator: genlab's diffusion UNet (see models/diffusion/base.py for what each setting does)
    base_channels: int = 32
    channel_mults: tuple[int, ...] | None = None
    num_res_blocks: int = 1
    patch_size: int | None = None
    attention: str = "middle"
    dropout: float = 0.0
    mlp_hidden: int = 128  # network widths for 2-D point data
    mapping_layers: int = 3  # z -> embedding MLP (the paper's: 3 layers)
    discriminator_channels: int = 32
    discriminator_lr_scale: float = 0.78  # the paper's D lr 1.25e-4 against G's 1.6e-4
    r1_weight: float = 0.02  # the paper's gamma for CIFAR-10, lazily every 15 steps
    r1_every: int = 15


class PairDiscriminator(nn.Module):
    """(x_{k-1}, x_k, step) -> one raw score per pair (B, 1).

    Images: the pair concatenated on channels, strided residual blocks with the step's embedding added
    to every block, summed over positions. Points: an MLP on the concatenated pair plus the embedding.
    """

    def __init__(self, data_shape: tuple[int, ...], width: int, hidden: int):
        super().__init__()
        self.is_image = len(data_shape) == 3
        if not self.is_image:
            self.embed = TimestepEmbedding(hidden, hidden)
            self.inp = nn.Linear(2 * data_shape[0], hidden)
            self.blocks = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(3)])
            self.out = nn.Linear(hidden, 1)
            return
        channels, size = data_shape[0], data_shape[-1]
        self.embed = TimestepEmbedding(width, 4 * width)
        self.stem = nn.Conv2d(2 * channels, width, 3, padding=1)
        self.blocks, ch = nn.ModuleList(), width
        while size > 4:  # 28 -> 14 -> 7 -> 4, 8 -> 4
            self.blocks.append(_DownBlock(ch, 2 * ch, 4 * width))
            ch, size = 2 * ch, (size + 1) // 2
        self.out = nn.Linear(ch, 1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        emb = self.embed(time)
        h = torch.cat([x_prev, x_t], dim=1)
        if not self.is_image:
            h = self.inp(h)
            for block in self.blocks:
                h = h + block(F.leaky_relu(h + emb, 0.2))
            return self.out(F.leaky_relu(h, 0.2))
        h = self.stem(h)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.leaky_relu(h, 0.2).sum(dim=(2, 3)))


class _DownBlock(nn.Module):
    """A residual block that halves the resolution, with the step embedding as a per-channel shift."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(x, 0.2)) + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.leaky_relu(h, 0.2))
        skip = self.skip(F.avg_pool2d(x, 2, ceil_mode=True))
        return (h + skip) / 2 ** 0.5  # unit variance at the sum (the paper's residual scaling)


class LatentDenoiser(nn.Module):
    """(x_k, z, time) -> x0': the diffusion network with z mapped into its time embedding."""

    def __init__(self, network: nn.Module, latent_dim: int, layers: int):
        super().__init__()
        self.network = network
        # the UNet starts its output and the last conv of every residual block at zero: right for a
        # denoiser's first steps, but here z (which enters through the blocks) would barely act and every
        # first x0' would be alike. A generator starts from its layers' usual random init
        for module in network.modules():
            if isinstance(module, ResBlock):
                module.conv2.reset_parameters()
        unet = getattr(network, "unet", None)
        if unet is not None:
            unet.conv_out.reset_parameters()
        dim = network.embedding_dim
        mapping: list[nn.Module] = []
        for i in range(layers):
            mapping += [nn.Linear(latent_dim if i == 0 else dim, dim), nn.SiLU()]
        self.mapping = nn.Sequential(*mapping[:-1])  # no activation after the last layer

    def forward(self, x_t: torch.Tensor, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return self.network(x_t, time, extra_embedding=self.mapping(z))


class DDGAN(AdversarialModel):
    family = "hybrid"
    description = "denoising diffusion GAN: a few large denoising steps, each a conditional GAN (Xiao et al. 2022)"
    config_class = DDGANConfig
    # the paper's Adam settings (CIFAR-10: G 1.6e-4, D 1.25e-4, betas (0.5, 0.9)), EMA 0.999 for minutes
    train_defaults = {**AdversarialModel.train_defaults, "lr": 1.6e-4, "betas": (0.5, 0.9)}

    def __init__(self, config: DDGANConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        if config.diffaugment:
            raise ArgumentError("--set diffaugment: a denoising diffusion GAN's discriminator judges pairs of noisy "
                                "items, which DiffAugment's transforms are not written for; drop the setting")
        if config.num_steps < 1:
            raise ArgumentError(f"--set num_steps={config.num_steps}: a denoising diffusion GAN takes at least one step")
        self.schedule = NoiseSchedule(config.num_steps, "vp", config.beta_min, config.beta_max)
        network, self.config = denoising_network(config, self.data_shape, self.is_image, 0)
        self.generator = LatentDenoiser(network, config.latent_dim, config.mapping_layers)
        self.discriminator = PairDiscriminator(self.data_shape, config.discriminator_channels, config.mlp_hidden)

    # ------------------------------------------------------------------ the diffusion chain
    def network_time(self, k: torch.Tensor) -> torch.Tensor:
        """Step index k (0-based: k = 0 is the least noisy level) -> the networks' time, on DDPM's 0-1000 scale
        so that the sinusoidal embedding spreads a few steps apart."""
        return (k.float() + 1) * (1000.0 / self.config.num_steps)

    def _posterior(self, x0: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw from q(x_{k-1} | x_k, x0), float32; at k = 0 (the last step) its mean, which is x0."""
        betas, ab = self.schedule.on("betas", x_t.device).float(), self.schedule.on("alpha_bars", x_t.device).float()
        shape = (-1, *([1] * (x_t.dim() - 1)))
        beta, ab_t = betas[k].view(shape), ab[k].view(shape)
        ab_prev = torch.where(k > 0, ab[(k - 1).clamp(min=0)], torch.ones_like(ab[k])).view(shape)
        mean = (ab_prev.sqrt() * beta * x0.float() + (1 - beta).sqrt() * (1 - ab_prev) * x_t.float()) / (1 - ab_t)
        std = (beta * (1 - ab_prev) / (1 - ab_t)).sqrt()
        return mean + std * noise.float()

    def denoise(self, x_t: torch.Tensor, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The generator's clean estimate x0' of x_k, in the data's range (tanh for images)."""
        x0 = self.generator(x_t, z, self.network_time(k))
        return torch.tanh(x0) if self.is_image else x0

    def _pairs(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(step k, real x_{k-1}, x_k) of the forward chain from data x0, k uniform over the steps."""
        n, T = len(x0), self.config.num_steps
        k = torch.randint(0, T, (n,), generator=generator, device=x0.device)
        ab = self.schedule.on("alpha_bars", x0.device).float()
        shape = (-1, *([1] * (x0.dim() - 1)))
        first = torch.randn(x0.shape, generator=generator, device=x0.device)
        ab_prev = torch.where(k > 0, ab[(k - 1).clamp(min=0)], torch.ones_like(ab[k])).view(shape)
        x_prev = ab_prev.sqrt() * x0.float() + (1 - ab_prev).sqrt() * first  # q(x_{k-1} | x0); x0 itself at k = 0
        beta = self.schedule.on("betas", x0.device).float()[k].view(shape)
        step = torch.randn(x0.shape, generator=generator, device=x0.device)
        x_t = (1 - beta).sqrt() * x_prev + beta.sqrt() * step  # q(x_k | x_{k-1})
        return k, x_prev.to(x0.dtype), x_t.to(x0.dtype)

    # ------------------------------------------------------------------ the contract
    def training_loss(self, batch: Batch, phase: str, step: int, generator: torch.Generator) -> LossOutput:
        k, x_prev, x_t = self._pairs(batch[X], generator)
        time = self.network_time(k)
        critic = lambda items: self.discriminator(items, x_t, time)  # noqa: E731  (x_k and k fixed: judges x_{k-1})
        if phase == "r1":
            return self.lazy_r1_loss(critic, x_prev)
        z = self.latent(len(x_t), generator, like=x_t)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device)
        if phase == "discriminator":
            with torch.no_grad():
                fake = self._posterior(self.denoise(x_t, z, k), x_t, k, noise).to(x_t.dtype)
            return self.critic_loss(critic, x_prev, fake, generator)
        fake = self._posterior(self.denoise(x_t, z, k), x_t, k, noise).to(x_t.dtype)
        loss = generator_loss(self.config.loss, critic(fake))
        return LossOutput(loss, {"g_loss": loss.detach()})

    def forward(self, x_t: torch.Tensor, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.denoise(x_t, z, k)

    def sample_options(self, **given: Any) -> dict[str, Any]:
        options = super().sample_options(**given)
        steps = options.setdefault("steps", self.config.num_steps)  # recorded with every evaluation
        if steps != self.config.num_steps:
            raise ArgumentError(f"this ddgan run denoises in {self.config.num_steps} steps, the count it was trained "
                                f"for; for --steps {steps} train a run with --set num_steps={steps}")
        return options

    def network_calls(self, **options: Any) -> int:
        return self.config.num_steps

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {f"{self.config.num_steps} steps": {}}

    @torch.inference_mode()
    def sample(self, n: int, conditions: Batch | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        self.check_conditions(n, conditions)
        self.sample_options(**options)  # refuses a step count other than the trained one
        x = self.noise((n, *self.data_shape), generator)
        for step in reversed(range(self.config.num_steps)):
            k = torch.full((n,), step, device=x.device, dtype=torch.long)
            z = self.latent(n, generator, like=x)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = self._posterior(self.denoise(x, z, k), x, k, noise).to(x.dtype)
        return x.clamp(-1, 1) if self.is_image else x
