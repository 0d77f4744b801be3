"""Hierarchical VAE in the spirit of NVAE (Vahdat & Kautz 2020, "NVAE: A Deep Hierarchical Variational
Autoencoder"), sized for 28x28 MNIST and 8x8 digits on a CPU.

What is NVAE's, piece by piece:
- Latent groups at several resolutions: `scales` of them below the first halving (28x28: groups at
  14x14 and 7x7; 8x8 digits: 4x4 and 2x2), `groups_per_scale` groups each, `latent_channels` per position.
- A bottom-up encoder tower (stem, pre-processing, `encoder_cells` per group) and a top-down generative
  tower shared by the prior and the posterior: p(z_l | z_<l) comes from the top-down state (ELU + 1x1
  conv), q(z_l | z_<l, x) from that state combined with the group's bottom-up features (x + 1x1 conv of
  the state, then a 3x3 conv). Residual posterior (NVAE's res_dist): q's mean and log-scale are the
  prior's plus a delta, so zero deltas give q = p and a zero KL. The top group's prior is N(0, I),
  parameterised like every other group, and the decoder starts from a learned constant.
- Residual cells (nn/nvae_cells.py): generative cells with depthwise-separable convolutions (1x1 expand,
  5x5 depthwise, 1x1 project), batch norm, Swish and squeeze-excitation; encoder cells BN-Swish-conv3x3
  twice + SE; each adds 0.1x its branch to its skip.
- KL warm-up: the KL weight grows linearly from `kl_min_coeff` to 1 over `kl_warmup_steps` (NVAE: the
  first 30% of training; the model sees steps, not the run's length, so it is given in steps).
- KL balancing during warm-up (NVAE's kl_balancer): group l's weight is proportional to its batch-mean
  |KL| (+0.01) divided by alpha_l = 4^scale / groups at that scale, the relative size of the group
  (NVAE's "square" alpha, scale 0 the top); the weights are normalised to mean 1, so they sum to the
  number of groups, and are held fixed (detached). A group that carries little information per latent
  dimension is penalised less, which keeps groups from collapsing while the KL weight is small.
  After the warm-up every group weighs 1: the plain ELBO.
- Spectral regularisation: lambda x (sum over every conv kernel of its largest singular value, by
  power iteration warm-started across steps, + sum over batch norms of max |gamma|), NVAE's
  spectral_norm_parallel and batchnorm_loss with its MNIST lambda 1e-2. The kernels are the plain conv
  weights: NVAE's weight normalisation is left out.
- Adamax with NVAE's learning rate 1e-2, eps 1e-3, weight decay 3e-4, warm-up then cosine; no
  gradient clipping and no EMA of the weights (NVAE has neither).
- Decoder: Bernoulli on dynamically binarised images (NVAE's MNIST setting; the bound is that of the
  binary image, in bits per binary pixel, comparable with the published nats on binarised MNIST), or a
  per-pixel discretised logistic over 256 levels (`decoder="logistic"`, an 8-bit bound). `bits_per_dim`
  is the one-sample negative ELBO, a bound; the training logs carry it in nats per image, split into
  reconstruction and per-group KL. `bits_per_dim(k=K)` is the importance-weighted bound (IWAE) over
  the whole hierarchy, for comparison with the plain VAE's at the same k.
- Sampling: top-down from the prior, each group's noise scaled by `temperature` (default 1; NVAE shows
  0.6-1.0; 0 gives the prior means all the way down, the same image for every seed). NVAE readjusts the
  batch-norm statistics to the tempered samples; that is skipped here: samples use the running statistics.
  Samples are the decoder's mean (Bernoulli: its probabilities as grey levels), as NVAE shows them.
Sized for a CPU: 8 channels at full resolution (NVAE: 32), 2 groups per scale (NVAE: 10 on MNIST) of 4
latent channels (NVAE: 20), one cell per group, expansion 3 (NVAE: 6), batches of 32; kernels and
activations channels-last and fp32 on a CPU (both measured faster there).
Left out: normalising flows in the posterior, NVAE's adaptive group counts per scale and its weight
normalisation, batch-norm readjustment at sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ...batch import X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.distributions import (bernoulli_log_likelihood, discretized_logistic_log_likelihood, dynamic_binarization,
                                 nats_to_bits_per_dim)
from ...nn.nvae_cells import EncoderCell, Gaussian, GenerativeCell, SpectralRegulariser
from ..base import GenerativeModel, LossOutput
from .vae import bound_details


@dataclass
class HVAEConfig:
    # width at full resolution, doubled at every halving (NVAE's MNIST: 32; 8 trains ~2x faster than 16 on a
    # CPU, which in a few minutes buys more than the width)
    channels: int = 8
    scales: int = 2  # latent resolutions, from half the image size down
    groups_per_scale: int = 2  # NVAE's MNIST: 10
    latent_channels: int = 4  # per group and position (NVAE: 20)
    encoder_cells: int = 1  # per group (NVAE: 2)
    decoder_cells: int = 1  # per group (NVAE: 2)
    # cells at full resolution besides the halving and the doubling cell (NVAE: 2 blocks of 3); the
    # full-resolution cells cost the most on a CPU
    preprocess_cells: int = 0
    postprocess_cells: int = 0
    expand: int = 3  # the generative cells' 1x1 expansion (NVAE: 6; 3 halves their cost on a CPU)
    decoder: Literal["bernoulli", "logistic"] = "bernoulli"
    kl_warmup_steps: int = 200  # NVAE: the first 30% of training; set it to ~30% of the run's steps
    kl_min_coeff: float = 1e-4  # NVAE's kl_const_coeff: the smallest KL weight
    kl_balance: bool = True
    spectral_weight: float = 1e-2  # lambda of the spectral and batch-norm terms (NVAE's MNIST value)
    power_iterations: int = 4
    logistic_min_log_scale: float = -7.0  # PixelCNN++'s floor of the logistic's log-scale


def kl_balance(kl_all: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NVAE's kl_balancer during warm-up. kl_all (B, L) per item and group, alpha (L,) the groups' relative
    sizes -> (balanced KL per item (B,), the coefficients (L,), mean 1, detached)."""
    coeff = (kl_all.abs().mean(0) + 0.01) / alpha
    coeff = (coeff / coeff.mean()).detach()
    return (kl_all * coeff).sum(1), coeff


class HVAE(GenerativeModel):
    family = "vae"
    description = ("NVAE-style hierarchical VAE: multi-scale latent groups, top-down inference, depthwise "
                   "residual cells with BN and SE, KL warm-up and balancing, spectral regularisation, Adamax")
    config_class = HVAEConfig
    # NVAE's lr with a short warm-up (NVAE: 5 of 400 epochs); batches of 32, smaller than NVAE's 200: more
    # steps in a CPU's minutes
    train_defaults = {"lr": 1e-2, "batch_size": 32, "warmup_steps": 50, "schedule": "cosine",
                      "weight_decay": 3e-4, "grad_clip": 0.0, "ema_decay": 0.0}
    likelihood = "bound"
    data_kinds = ("image",)
    # oneDNN's depthwise 5x5 convolutions run ~3x faster in channels-last on a CPU (the trainer and
    # Run.load_model convert; checkpoints store contiguous copies)
    prefers_channels_last = True
    # a 28x28 training step measured ~1.5x slower under bf16 autocast than in fp32 on this 2-core CPU
    # (the depthwise convolutions); the plain VAE gains from bf16 there
    auto_precision = {"cpu": "fp32"}

    def __init__(self, config: HVAEConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        c_in, h, w = self.data_shape
        f = 2**config.scales
        if h % f or w % f:
            raise ArgumentError(f"hvae halves {h}x{w} images {config.scales} times (--set scales={config.scales}); "
                                f"use fewer scales or --image-size a multiple of {f}")
        c0, lat, g = config.channels, config.latent_channels, config.groups_per_scale
        width = [c0 * 2 ** (j + 1) for j in range(config.scales)]  # channels at latent scale j (0: H/2)
        self.latent_shapes = [(lat, h // 2 ** (j + 1), w // 2 ** (j + 1))
                              for j in reversed(range(config.scales)) for _ in range(g)]  # top group first

        # bottom-up: stem, pre-processing at full size, halving, then the groups' cells, halving between scales
        self.stem = nn.Conv2d(c_in, c0, 3, padding=1)
        self.preprocess = nn.Sequential(*[EncoderCell(c0) for _ in range(config.preprocess_cells)], EncoderCell(c0, 2))
        self.enc_groups, self.enc_downs = nn.ModuleList(), nn.ModuleList()
        for j in range(config.scales):
            for i in range(g):
                self.enc_groups.append(nn.Sequential(*[EncoderCell(width[j]) for _ in range(config.encoder_cells)]))
                # halving after a scale's last group, once its features are read
                self.enc_downs.append(EncoderCell(width[j], 2) if i == g - 1 and j < config.scales - 1 else nn.Identity())
        top = width[-1]
        self.enc0 = nn.Sequential(nn.ELU(), nn.Conv2d(top, top, 1), nn.ELU())

        # top-down, group k = 0 (top) .. L-1; each group: cells, prior, posterior, combine z into the state
        self.prior_h = nn.Parameter(torch.rand(top, *self.latent_shapes[0][1:]))  # the decoder's learned start
        scale_of = [j for j in reversed(range(config.scales)) for _ in range(g)]
        self.dec_cells, self.dec_samplers, self.enc_combiners = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.enc_samplers, self.dec_combiners, self.dec_ups = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for k, j in enumerate(scale_of):
            ch = width[j]
            if k > 0:
                self.dec_cells.append(nn.Sequential(*[GenerativeCell(ch, config.expand) for _ in range(config.decoder_cells)]))
                self.dec_samplers.append(nn.Sequential(nn.ELU(), nn.Conv2d(ch, 2 * lat, 1)))
                self.enc_combiners.append(nn.Conv2d(ch, ch, 1))
            self.enc_samplers.append(nn.Conv2d(ch, 2 * lat, 3, padding=1))
            self.dec_combiners.append(nn.Conv2d(ch + lat, ch, 1))
            last_of_scale = k == len(scale_of) - 1 or scale_of[k + 1] != j
            self.dec_ups.append(GenerativeCell(ch, config.expand, upsample=True) if last_of_scale and j > 0 else nn.Identity())
        self.postprocess = nn.Sequential(GenerativeCell(width[0], config.expand, upsample=True),
                                         *[GenerativeCell(c0, config.expand) for _ in range(config.postprocess_cells)])
        out = c_in if config.decoder == "bernoulli" else 2 * c_in
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(c0, out, 3, padding=1))

        # NVAE's "square" alpha: 4^scale / groups at that scale, scale 0 the top, smallest = 1
        alpha = torch.tensor([4.0 ** (config.scales - 1 - j) / g for j in scale_of])
        self.register_buffer("kl_alpha", alpha / alpha.min(), persistent=False)
        self.regulariser = SpectralRegulariser(self._convs(), config.power_iterations)

    def _convs(self) -> list[nn.Conv2d]:
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]

    def _batch_norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]

    # ------------------------------------------------------------------ the two towers
    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Bottom-up features, one per group, top group first."""
        s = self.preprocess(self.stem(x.contiguous(memory_format=torch.channels_last)))
        feats = []
        for cells, down in zip(self.enc_groups, self.enc_downs):
            s = cells(s)
            feats.append(s)
            s = down(s)
        feats[-1] = self.enc0(feats[-1])
        return feats[::-1]

    def _top_down(self, n: int, feats: list[torch.Tensor] | None, generator: torch.Generator | None,
                  temperature: float = 1.0, log_ratios: bool = False
                  ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The decoder's output (B, C_out, H, W), the KL of each group (B,) (posterior given feats), and each z.
        With `log_ratios`, each group's log q(z | x, z_<l) - log p(z | z_<l) at the drawn z instead of the
        analytic KL (its one-sample estimate: what an importance weight needs)."""
        s = self.prior_h.unsqueeze(0).expand(n, -1, -1, -1).contiguous(memory_format=torch.channels_last)
        kls, zs = [], []
        for k in range(len(self.latent_shapes)):
            if k == 0:
                prior_raw = s.new_zeros((n, 2 * self.latent_shapes[0][0], *s.shape[2:]), dtype=torch.float32)
            else:
                s = self.dec_cells[k - 1](s)
                prior_raw = self.dec_samplers[k - 1](s).float()  # (B, 2 lat, h, w)
            prior = Gaussian(*prior_raw.chunk(2, 1))
            if feats is None:
                z = prior.sample(generator, temperature)
            else:
                ftr = feats[k] if k == 0 else feats[k] + self.enc_combiners[k - 1](s)
                q = Gaussian(*(prior_raw + self.enc_samplers[k](ftr).float()).chunk(2, 1))  # residual posterior
                z = q.sample(generator, temperature)
                kls.append(q.log_prob(z) - prior.log_prob(z) if log_ratios else q.kl(prior))
            zs.append(z)
            s = self.dec_combiners[k](torch.cat([s, z.to(s.dtype)], 1))
            s = self.dec_ups[k](s)
        return self.head(self.postprocess(s)).float(), kls, zs

    def _target(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the likelihood scores, what the encoder sees): a fresh binarisation for the Bernoulli."""
        if self.config.decoder == "bernoulli":
            bits = dynamic_binarization(x, generator)
            return bits, 2 * bits - 1
        return x.float(), x

    def _nll(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) in nats per item (B,)."""
        if self.config.decoder == "bernoulli":
            ll = bernoulli_log_likelihood(target, out)
        else:
            mean, log_scale = out.chunk(2, 1)
            ll = discretized_logistic_log_likelihood(target, mean, log_scale.clamp(min=self.config.logistic_min_log_scale))
        return -ll.flatten(1).sum(1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(out) - 1 if self.config.decoder == "bernoulli" else out.chunk(2, 1)[0].clamp(-1, 1)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(-log p(x | z) (B,), KL per group (B, L)) for one posterior sample, in nats."""
        target, seen = self._target(x, generator)
        out, kls, _ = self._top_down(len(x), self._encode(seen), generator)
        return self._nll(out, target), torch.stack(kls, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior means (x as the encoder sees it: binary in [-1, 1] for Bernoulli)."""
        return self._mean(self._top_down(len(x), self._encode(x), None, temperature=0.0)[0])

    # ------------------------------------------------------------------ training
    def kl_coefficient(self, step: int) -> float:
        warm = self.config.kl_warmup_steps
        return max(min(step / warm, 1.0), self.config.kl_min_coeff) if warm else 1.0

    def optimizers(self):
        from ...train.optim import OptimizerSpec

        return [OptimizerSpec.over("model", self, kind="adamax", eps=1e-3)]

    def training_loss(self, batch, phase, step, generator):
        recon, kl_all = self.elbo_terms(batch[X], generator)
        beta = self.kl_coefficient(step)
        if self.config.kl_balance and beta < 1.0:
            kl, coeff = kl_balance(kl_all, self.kl_alpha)
        else:
            kl, coeff = kl_all.sum(1), torch.ones_like(self.kl_alpha)
        spectral = self.regulariser.spectral(self._convs())
        bn = self.regulariser.batchnorm(self._batch_norms())
        # nats per image, as NVAE: the regulariser's lambda is set against this scale
        loss = (recon + beta * kl).mean() + self.config.spectral_weight * (spectral + bn)
        kl_means = kl_all.detach().mean(0)
        logs = {"loss": loss.detach(), "nelbo_nats": (recon.detach() + kl_all.detach().sum(1)).mean(),
                "recon_nats": recon.detach().mean(), "kl_nats": kl_means.sum(), "kl_coeff": loss.new_tensor(beta),
                "spectral": spectral.detach(), "bn_gamma": bn.detach()}
        for k, (c, h, w) in enumerate(self.latent_shapes):
            logs[f"kl_group{k}_{h}x{w}_nats"] = kl_means[k]
            if self.config.kl_balance:
                logs[f"kl_balance{k}"] = coeff[k]
        return LossOutput(loss, logs)

    # ------------------------------------------------------------------ sampling and likelihood
    def sample_options(self, temperature: float | None = None, **given: Any) -> dict[str, Any]:
        return {"temperature": 1.0 if temperature is None else float(temperature),
                **{k: v for k, v in given.items() if v is not None}}

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {"one pass": {}, "temperature 0.7": {"temperature": 0.7}}

    @torch.inference_mode()
    def sample(self, n: int, conditions=None, generator: torch.Generator | None = None,
               temperature: float | None = None, **options: Any) -> torch.Tensor:
        if options:
            raise ValueError(f"hvae has no sampling option {', '.join(sorted(options))}; it takes temperature")
        self.check_conditions(n, conditions)
        t = 1.0 if temperature is None else float(temperature)
        if t < 0:
            raise ArgumentError(f"temperature must be at least 0, got {t}")
        was_training = self.training
        self.eval()  # running batch-norm statistics: a sample never depends on the others in its batch
        try:
            out = self._top_down(n, None, generator, t)[0]
        finally:
            self.train(was_training)
        return self._mean(out)

    @torch.inference_mode()
    def iwae_nll(self, x: torch.Tensor, k: int, generator: torch.Generator | None, chunk: int = 1024) -> torch.Tensor:
        """The importance-weighted bound on -log p(x) in nats per item (B,) with k posterior draws of every
        group (Burda et al. 2016, eq. 8): log w = log p(x | z) + sum_l [log p(z_l | z_<l) - log q(z_l | x, z_<l)].
        The bottom-up features are computed once; at most `chunk` images go down the decoder at once.
        Bernoulli: the bound on one dynamic binarisation of x, drawn from `generator` first."""
        if k < 1:
            raise ArgumentError(f"the IWAE bound needs k >= 1 samples, got {k}")
        target, seen = self._target(x, generator)
        b = len(x)
        feats = self._encode(seen)
        per_pass = max(1, chunk // b)
        log_w = []
        for start in range(0, k, per_pass):
            s = min(per_pass, k - start)
            out, ratios, _ = self._top_down(s * b, [f.repeat(s, 1, 1, 1) for f in feats], generator, log_ratios=True)
            log_px = -self._nll(out, target.repeat(s, *([1] * (target.dim() - 1))))
            log_w.append((log_px - torch.stack(ratios, 1).sum(1)).view(s, b))
        return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))

    def likelihood_details(self, k: int = 1, **_: Any) -> dict[str, Any]:
        """What `bits_per_dim` measures with these options: recorded beside the figure."""
        return bound_details(k, self.config.decoder)

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None, k: int = 1, chunk: int = 1024) -> torch.Tensor:
        """The bound on -log p(x) per dimension in bits (B,): the one-sample negative ELBO (k = 1, analytic KL)
        or the IWAE bound with k samples. Bernoulli: bits per binary pixel of a fresh binarisation of the batch
        (drawn from `generator`); logistic: bits per 8-bit dimension. Measured with the running batch-norm
        statistics, so an item's figure does not depend on the rest of its batch."""
        x = batch[X]
        was_training = self.training
        self.eval()
        try:
            if int(k) == 1:
                recon, kl_all = self.elbo_terms(x, generator)
                nats = recon + kl_all.sum(1)
            else:
                nats = self.iwae_nll(x, int(k), generator, chunk)
        finally:
            self.train(was_training)
        return nats_to_bits_per_dim(nats, x[0].numel())
