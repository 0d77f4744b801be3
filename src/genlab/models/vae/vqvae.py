"""VQ-VAE: a convolutional autoencoder whose spatial latent is a grid of codes from a learned codebook.

van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning" (NeurIPS): the
encoder maps an image to a (D, h, w) grid, each vector is replaced by its nearest of K codes, and the
decoder reconstructs from the codes. The argmin has no gradient, so the decoder's gradient is copied to
the encoder unchanged (the straight-through estimator); a commitment loss beta ||z_e - sg(e)||^2 with
beta = 0.25 keeps the encoder near its codes. The codebook itself is learned as in the paper's appendix
and Razavi, van den Oord & Vinyals 2019 ("VQ-VAE-2", appendix): by exponential moving averages (decay
0.99) of each code's cluster size N_i and of the sum m_i of the encoder outputs assigned to it, the code
being m_i / N_i with N_i Laplace-smoothed so that an empty cluster never divides by zero. It is
k-means run online, so the codebook has no gradient and no optimizer. Codes left unused for
`dead_after` steps are restarted at random encoder outputs of the current batch (the dead-code
restarts of Dhariwal et al. 2020, "Jukebox"); every code starts out dead, so the first batch places
the codebook among real encoder outputs. Codebook usage and perplexity are logged.

The codebook learns only in training steps (train mode with autograd on): a loss evaluated without
gradients, such as a held-out loss, leaves it as it is.

Like `autoencoder.py` it offers latent diffusion `latent_shape`, `encode_latent` (the encoder's
continuous output) and `decode_latent` (quantised, then decoded: the "VQ-reg." first stage of Rombach
et al. 2022, whose decoder absorbs the quantisation), with running latent statistics. A prior over
its codes uses `encode_codes`, `decode_codes` and `num_codes` (`vqvae_prior.py`).

Sampling a VQ-VAE run by itself decodes codes drawn uniformly and independently: poor by design, since
real code grids are far from uniform. Samples worth looking at come from a `vqvae-prior` run over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.convnets import SpatialDecoder, SpatialEncoder
from ..base import GenerativeModel, LossOutput


@dataclass
class VQVAEConfig:
    base_channels: int = 32
    downsample: int = 2  # halvings: 28x28 -> 7x7 codes, 8x8 digits -> 2x2 (use 1 for 4x4)
    num_codes: int = 128  # K
    code_dim: int = 16  # D
    beta: float = 0.25  # commitment weight (the paper's value; results are robust from 0.1 to 2)
    decay: float = 0.99  # of the codebook's moving averages
    epsilon: float = 1e-5  # Laplace smoothing of the cluster sizes
    dead_after: int = 50  # training steps without an assignment after which a code is restarted
    stats_momentum: float = 0.01  # running latent statistics for latent diffusion: weight of each batch


class Codebook(nn.Module):
    """K codes of dimension D, learned by online k-means with exponential moving averages.

    All state is buffers: the trainer checkpoints and resumes it, and no optimizer touches it.
    """

    def __init__(self, num_codes: int, dim: int, decay: float, epsilon: float, dead_after: int):
        super().__init__()
        self.decay, self.epsilon, self.dead_after = decay, epsilon, dead_after
        codes = torch.randn(num_codes, dim)
        self.register_buffer("codes", codes)  # (K, D)
        # N_i and m_i start at one vector per code, at the code: m_i / N_i is the code itself
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("code_sum", codes.clone())
        # consecutive training steps without an assignment; at `dead_after` from the start: all codes
        # begin dead, and the first batch restarts every code it does not use
        self.register_buffer("unused_steps", torch.full((num_codes,), dead_after, dtype=torch.long))

    @property
    def num_codes(self) -> int:
        return self.codes.shape[0]

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors -> (N,) long: the index of each one's nearest code in Euclidean distance."""
        z, codes = z.float(), self.codes.float()
        distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ codes.T + codes.pow(2).sum(1)  # (N, K)
        return distances.argmin(1)

    def counts(self, index: torch.Tensor) -> torch.Tensor:
        """(K,) float32 how many of `index` each code got (index_add: no host sync, unlike bincount)."""
        return torch.zeros(self.num_codes, device=index.device).index_add_(
            0, index, torch.ones(index.shape, device=index.device))

    @torch.no_grad()
    def update(self, z: torch.Tensor, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One EMA step from vectors z (N, D) assigned to codes `index` (N,), then dead-code restarts.
        Returns the number of codes restarted, as a tensor."""
        z = z.float()
        counts = self.counts(index)  # (K,)
        sums = torch.zeros_like(self.code_sum).index_add_(0, index, z)  # (K, D)
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.code_sum.lerp_(sums, 1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        self.codes.copy_(self.code_sum / smoothed[:, None])
        # restarts: always draw K candidates, so the draws (and the generator's state) never depend on the data
        self.unused_steps.copy_(torch.where(counts > 0, 0, self.unused_steps + 1))
        dead = self.unused_steps >= self.dead_after  # (K,)
        pick = torch.randint(0, len(z), (self.num_codes,), generator=generator, device=z.device)
        candidates = z[pick]  # (K, D)
        self.codes.copy_(torch.where(dead[:, None], candidates, self.codes))
        self.code_sum.copy_(torch.where(dead[:, None], candidates, self.code_sum))
        self.cluster_size.copy_(torch.where(dead, 1.0, self.cluster_size))
        self.unused_steps.copy_(torch.where(dead, 0, self.unused_steps))
        return dead.sum()


class VQVAE(GenerativeModel):
    family = "vae"
    description = "VQ-VAE: spatial codes from an EMA codebook (dead-code restarts); sample through a vqvae-prior run"
    config_class = VQVAEConfig
    # no EMA of the weights: the codebook is a buffer the EMA copy takes from the live model, and a lagging
    # average of the encoder would be paired with codes fitted to the live one (the codebook is already
    # an average of its own). A short warm-up: a few CPU minutes are a few hundred steps.
    train_defaults = {"lr": 1e-3, "batch_size": 64, "ema_decay": 0.0, "warmup_steps": 20}
    data_kinds = ("image",)

    def __init__(self, config: VQVAEConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        c, h, w = self.data_shape
        f = 2**config.downsample
        if h % f or w % f:
            raise ArgumentError(f"images of {h}x{w} cannot be halved {config.downsample} times; "
                                f"use --set downsample=1 or --image-size a multiple of {f}")
        if config.num_codes < 2 or config.code_dim < 1 or config.dead_after < 1:
            raise ArgumentError("num_codes must be at least 2, code_dim and dead_after at least 1")
        if not 0 <= config.decay < 1:
            raise ArgumentError(f"decay must lie in [0, 1), got {config.decay}")
        self.encoder = SpatialEncoder(c, config.base_channels, config.code_dim, config.downsample)
        self.decoder = SpatialDecoder(config.code_dim, config.base_channels, c, config.downsample)
        self.codebook = Codebook(config.num_codes, config.code_dim, config.decay, config.epsilon, config.dead_after)
        self.register_buffer("latent_mean", torch.zeros(config.code_dim))
        self.register_buffer("latent_std", torch.ones(config.code_dim))

    @property
    def num_codes(self) -> int:
        return self.config.num_codes

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        _, h, w = self.data_shape
        f = 2**self.config.downsample
        return (self.config.code_dim, h // f, w // f)

    # ------------------------------------------------------------------ codes
    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D, h, w) encoder outputs -> (their nearest codes (B, D, h, w) float32, indices (B, h, w))."""
        b, d, h, w = z.shape
        index = self.codebook.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)
        return self.lookup(index), index

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) code indices -> (B, D, h, w) their vectors."""
        return F.embedding(codes, self.codebook.codes).permute(0, 3, 1, 2)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the encoder's continuous output (B, D, h, w), float32, before quantisation."""
        return self.encoder(x).float()

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Continuous latents (B, D, h, w) -> images: quantised to the nearest codes, then decoded."""
        return self.decoder(self.quantise(z)[0]).float().clamp(-1, 1)

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> their code grids (B, h, w) long."""
        return self.quantise(self.encode_latent(x))[1]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code grids (B, h, w) long -> images (B, C, H, W) float32 in [-1, 1]."""
        return self.decoder(self.lookup(codes.long())).float().clamp(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the codes."""
        return self.decode_codes(self.encode_codes(x))

    # ------------------------------------------------------------------ training
    def training_loss(self, batch, phase, step, generator):
        x = batch[X]
        z = self.encode_latent(x)  # (B, D, h, w)
        quantised, index = self.quantise(z)
        commitment = (z - quantised.detach()).pow(2).mean()
        straight_through = z + (quantised - z).detach()  # forward: the codes; backward: identity to z
        recon = self.decoder(straight_through).float()
        mse = (recon - x.float()).pow(2).mean()
        loss = mse + self.config.beta * commitment
        flat_index = index.flatten()
        counts = self.codebook.counts(flat_index)
        p = counts / len(flat_index)
        logs = {"loss": loss.detach(), "mse": mse.detach(), "commitment": commitment.detach(),
                "perplexity": torch.exp(-(p * p.clamp(min=1e-12).log()).sum()),  # codes in effective use
                "codes_used": (counts > 0).float().mean()}  # share of the codebook this batch used
        if self.training and torch.is_grad_enabled():  # a training step, not an evaluation of the loss
            with torch.no_grad():
                vectors = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # (B h w, D)
                logs["codes_restarted"] = self.codebook.update(vectors, flat_index, generator).float()
                m = self.config.stats_momentum
                self.latent_mean.lerp_(vectors.mean(0), m)
                self.latent_std.lerp_(vectors.std(0), m)
        return LossOutput(loss, logs)

    # ------------------------------------------------------------------ sampling
    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        """Decoded grids of uniformly random codes: a baseline only (see the module docstring)."""
        self.check_conditions(n, conditions)
        _, h, w = self.latent_shape
        codes = torch.randint(0, self.num_codes, (n, h, w), generator=generator, device=self.device)
        return self.decode_codes(codes)
