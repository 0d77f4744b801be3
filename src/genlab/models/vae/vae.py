"""Variational autoencoder (Kingma & Welling 2014) with a choice of decoder likelihood and latent layout.

Decoders (`--set decoder=...`), each a distribution p(x | z) over the data's discrete values:
- `gaussian`: one scale per channel set to its optimum, the batch's reconstruction RMSE (the "optimal
  sigma" calibrated decoder of Rybkin et al. 2021): the balance between reconstruction and KL follows
  the fit instead of being hand-tuned or learned slowly by gradient steps (a slowly learned scale lets
  the KL win early and the posterior collapse). A running average of it is kept for evaluation. The
  likelihood is discretised over 256 levels (Ho et al. 2020, eq. 13), end bins open.
- `bernoulli`: the papers' MNIST setting. Each batch is dynamically binarised, every pixel on with
  probability (x + 1) / 2 drawn from the step's generator (Salakhutdinov & Murray 2008; Burda et al.
  2016), and the encoder and the likelihood see the binary image. Its NLL is that of the binarised
  image, comparable with the published 86.76 (VAE) / 84.78 (IWAE) nats, not with 8-bit bits/dim.
- `logistic`: per-pixel mean and log-scale of a logistic discretised to 256 bins (Salimans et al. 2017,
  PixelCNN++, without the mixture): the 8-bit likelihood of a per-pixel scale.

What trades against what. The decoder's confidence sets the exchange rate between reconstruction and KL:
the sharper p(x | z), the more nats the latent saves per pixel and the more the posterior carries, so
reconstructions sharpen and the bound improves, while the aggregate posterior drifts from N(0, I) and
prior samples land in its holes (sharp but broken strokes). A broad decoder keeps the posterior near the
prior: whole but blurry samples. The Gaussian's floor `min_log_scale` (sigma >= 0.5 on [-1, 1]) is that
dial, and on MNIST it binds (the RMSE falls below 0.5), which is what blurred the samples. The default,
`auto`, is the logistic for images: its per-pixel scale is certain where the data is (MNIST's flat
background, which comes out clean black) and broad on stroke edges, with no dial to set, and its 8-bit
bound beat the Gaussian's on digits (1500 steps: ELBO 3.656 bits/dim against 3.718 at the default floor
and 3.695 at -1.5). `logistic_min_log_scale` bounds its certainty. `bernoulli` has no dial either (its
scale is fixed by binary data) and gives the papers' numbers on binary MNIST, but it throws away grey
levels and colour. Samples are the decoder's mean (Bernoulli: its probabilities as grey levels), never
a draw from p(x | z), which would only add independent pixel noise. `sample(truncation=t)` scales the
prior draw by t < 1 (the temperature of Kingma & Dhariwal 2018, NVAE's 0.6-0.9): more typical, more
complete samples for less variety. The KL warm-up is short (100 steps) because prior samples break while
it lasts and a CPU minute holds only 70-95 mnist steps at the default size.

`latent="spatial"` swaps the flat latent (`latent_dim`) for a (latent_channels, H/4, W/4) one through the
fully convolutional SpatialEncoder/SpatialDecoder (4x7x7 on mnist); it offers `latent_shape`,
`encode_latent` and `decode_latent` like `autoencoder.py`, so latent diffusion can use a VAE run, and
tracks its latents' per-channel statistics for it. The flat VAE offers the same names (the posterior
mean and the decoder's mean) for interpolation and anomaly scores.

Evaluation: `iwae_nll` is the importance-weighted bound of Burda et al. 2016,
-log p(x) <= -log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x), k = 1 the ELBO, tightening as k
grows; `bits_per_dim(k=...)` reports it per dimension. `beta` weights the KL (Higgins et al. 2017; 1:
the plain VAE) and the KL weight warms up from 0 (Bowman et al. 2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ...batch import LABEL, X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.convnets import MLP, ConvDecoder, ConvEncoder, SpatialDecoder, SpatialEncoder
from ...nn.distributions import (bernoulli_log_likelihood, discretized_gaussian_log_likelihood,
                                 discretized_logistic_log_likelihood, dynamic_binarization, nats_to_bits_per_dim)
from ..base import GenerativeModel, LossOutput

LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig:
    latent_dim: int = 16  # the flat latent
    base_channels: int = 32
    mlp_hidden: int = 128  # for 2-D point data
    beta: float = 1.0
    # KL weight grows linearly from 0 to beta: avoids early posterior collapse. Short, because prior samples
    # break while it lasts (the posterior drifts from the prior) and a CPU minute holds 70-95 mnist steps
    kl_warmup_steps: int = 100
    # auto: logistic for images, gaussian (a density) for point data
    decoder: Literal["auto", "gaussian", "bernoulli", "logistic"] = "auto"
    # floor of the Gaussian decoder's log-scale (sigma >= 0.5 on the [-1, 1] scale): below it the
    # reconstruction term drowns the KL, the posterior spreads away from the prior and prior samples fall
    # into its holes; above it samples blur (see the module docstring)
    min_log_scale: float = -0.7
    # floor of the logistic decoder's per-pixel log-scale: the most certain a pixel may be
    logistic_min_log_scale: float = -4.0
    latent: Literal["flat", "spatial"] = "flat"
    latent_channels: int = 4  # latent="spatial": channels of the (c, H/2^downsample, W/2^downsample) latent
    downsample: int = 2  # latent="spatial": halvings, 28x28 -> 7x7
    iwae_k: int = 1  # importance samples of bits_per_dim's bound when the caller gives none (1: the ELBO)
    iwae_chunk: int = 1024  # images decoded per pass of the IWAE bound: bounds its memory


def bound_details(k: int, decoder: str) -> dict[str, Any]:
    """What a VAE's bits/dim with k importance samples measures, for eval.json (shared with hvae)."""
    data = "dynamically binarised images" if decoder == "bernoulli" else "256-level images"
    return {"bound": "ELBO" if k == 1 else f"IWAE k={k}", "decoder": decoder, "data": data}


class VAE(GenerativeModel):
    family = "vae"
    description = "VAE: conv encoder/decoder; Gaussian, Bernoulli or discretised logistic decoder; ELBO and IWAE bounds"
    config_class = VAEConfig
    # a short learning-rate warm-up: minutes of CPU training are a few hundred steps
    train_defaults = {"lr": 1e-3, "batch_size": 128, "ema_decay": 0.999, "warmup_steps": 20}
    likelihood = "bound"
    accepted_conditions = (LABEL,)

    def __init__(self, config: VAEConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        if config.decoder not in ("auto", "gaussian", "bernoulli", "logistic"):
            raise ArgumentError(f"decoder must be auto, gaussian, bernoulli or logistic, got {config.decoder!r}")
        if config.latent not in ("flat", "spatial"):
            raise ArgumentError(f"latent must be flat or spatial, got {config.latent!r}")
        self.decoder_kind = config.decoder if config.decoder != "auto" else "logistic" if self.is_image else "gaussian"
        if not self.is_image and (self.decoder_kind != "gaussian" or config.latent != "flat"):
            raise ArgumentError("point data takes the gaussian decoder and the flat latent; "
                                f"decoder={config.decoder} and latent={config.latent} are for images")
        data_shape = self.data_shape
        # the logistic decoder gives a mean and a log-scale per pixel
        out_channels = data_shape[0] * (2 if self.decoder_kind == "logistic" else 1)
        if config.latent == "spatial":
            c, h, w = data_shape
            f = 2**config.downsample
            if h % f or w % f:
                raise ArgumentError(f"images of {h}x{w} cannot be halved {config.downsample} times; "
                                    f"use --set downsample=1 or --image-size a multiple of {f}")
            z = config.latent_channels
            self.encoder = SpatialEncoder(c, config.base_channels, 2 * z, config.downsample)
            self.decoder = SpatialDecoder(z, config.base_channels, out_channels, config.downsample)
            # the statistics latent diffusion normalises with (as autoencoder.py tracks them)
            self.register_buffer("latent_mean", torch.zeros(z))
            self.register_buffer("latent_std", torch.ones(z))
        elif self.is_image:
            c, size = data_shape[0], data_shape[-1]
            z = config.latent_dim
            self.encoder = ConvEncoder(c, size, config.base_channels, 2 * z, norm="group", activation=nn.SiLU())
            self.decoder = ConvDecoder(z, out_channels, size, config.base_channels, norm="group", activation=nn.SiLU())
        else:
            d, z = data_shape[0], config.latent_dim
            self.encoder = MLP(d, config.mlp_hidden, 2 * z)
            self.decoder = MLP(z, config.mlp_hidden, d)
        self.label_embedding = nn.Embedding(self.num_classes, z) if LABEL in self.conditions else None
        # the Gaussian decoder's running optimal log-scale, per channel (kept for every decoder: one format)
        scale_shape = (data_shape[0], 1, 1) if self.is_image else (data_shape[0],)
        self.register_buffer("log_scale", torch.zeros(scale_shape))

    @classmethod
    def migrate_config(cls, config):
        # runs written before the decoder choice were Gaussian
        return {"decoder": "gaussian", **config}

    @classmethod
    def migrate_state_dict(cls, state, format_version):
        # format 1 counted training calls in a buffer for the KL warm-up; the trainer now hands over the step
        return {k: v for k, v in state.items() if k != "updates"}

    # ------------------------------------------------------------------ the networks
    @property
    def latent_shape(self) -> tuple[int, ...]:
        if self.config.latent == "spatial":
            c, h, w = self.data_shape
            f = 2**self.config.downsample
            return (self.config.latent_channels, h // f, w // f)
        return (self.config.latent_dim,)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z | x), each (B, *latent_shape), float32 under any autocast."""
        mean, log_var = self.encoder(x).float().chunk(2, dim=1)
        return mean, log_var.clamp(-12, 8)

    def _decoder_output(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw parameters (B, C or 2C, H, W): means, logits, or means and log-scales."""
        if self.label_embedding is not None and labels is not None:
            shift = self.label_embedding(labels)  # (B, z)
            z = z + (shift[:, :, None, None] if z.dim() == 4 else shift)
        return self.decoder(z).float()

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        """Raw decoder parameters -> the decoder's mean in the data's range."""
        if self.decoder_kind == "bernoulli":
            return 2 * torch.sigmoid(out) - 1  # pixel probabilities as grey levels
        if self.decoder_kind == "logistic":
            out = out[:, : self.data_shape[0]]
        return out.clamp(-1, 1) if self.is_image else out

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, *latent_shape) -> the decoder's mean (B, *data_shape), images in [-1, 1]."""
        return self._mean(self._decoder_output(z, labels))

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the posterior mean (B, *latent_shape). A Bernoulli VAE's encoder, trained on binary
        images, takes grey levels as they are: deterministic, and MNIST is nearly binary."""
        return self.encode(x)[0]

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, *latent_shape) -> images (B, *data_shape) in [-1, 1] (no class: see `decode`)."""
        return self.decode(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean."""
        return self.decode(self.encode(x)[0])

    # ------------------------------------------------------------------ the likelihood p(x | z)
    def _observed(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """What the model sees and scores: the binarised image in {-1, 1} for the Bernoulli decoder."""
        if self.decoder_kind == "bernoulli":
            return 2 * dynamic_binarization(x, generator) - 1
        return x.float()

    def _gaussian_log_scale(self, x: torch.Tensor, mean: torch.Tensor, fit: bool) -> torch.Tensor:
        """The Gaussian decoder's log-scale: this batch's optimum (the log of the per-channel RMSE) when
        `fit`, its running average otherwise; floored at min_log_scale."""
        floor = self.config.min_log_scale
        if not fit:
            return self.log_scale.clamp(min=floor)
        dims = [0] + list(range(2, x.dim())) if self.is_image else [0]
        # against the clamped mean: a mean beyond +-1 puts the open end bin's mass where the data is
        err = x - (mean.clamp(-1, 1) if self.is_image else mean)
        mse = err.detach().pow(2).mean(dim=dims, keepdim=True)[0]
        optimum = 0.5 * mse.clamp(min=1e-12).log()
        with torch.no_grad():
            self.log_scale.lerp_(optimum, 0.05)
        # the scale that maximises this batch's likelihood is stationary in it: no gradient through it
        return optimum.clamp(min=floor)

    def log_likelihood(self, x: torch.Tensor, out: torch.Tensor, fit_scale: bool = False) -> torch.Tensor:
        """log p(x | z) in nats per item (B,), from the decoder's raw output `out` for the observed `x`
        (binarised for Bernoulli). Images: the probability of their discrete values."""
        decoder = self.decoder_kind
        if decoder == "bernoulli":
            log_p = bernoulli_log_likelihood((x + 1) / 2, out)
        elif decoder == "logistic":
            mean, log_scale = out.chunk(2, dim=1)
            log_scale = log_scale.clamp(min=self.config.logistic_min_log_scale)
            log_p = discretized_logistic_log_likelihood(x, mean, log_scale)
        else:
            log_scale = self._gaussian_log_scale(x, out, fit_scale)
            if self.is_image:
                log_p = discretized_gaussian_log_likelihood(x, out, log_scale.expand_as(out))
            else:  # points are continuous: a density
                log_p = -0.5 * ((x - out) * torch.exp(-log_scale)).pow(2) - log_scale - 0.5 * LOG_2PI
        return log_p.flatten(1).sum(1)

    # ------------------------------------------------------------------ the bounds
    def elbo_terms(self, x: torch.Tensor, labels: torch.Tensor | None, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction NLL in nats (B,), KL(q(z|x) || N(0, I)) in nats (B,), the decoded mean
        (B, *data_shape)) of one reparameterised draw z ~ q(z | x); the ELBO is -(nll + kl).

        Draws (the binarisation, then z) come from `generator`. In training mode the Gaussian decoder
        uses this batch's optimal scale and updates its running average, and a spatial latent's
        statistics are tracked, as batch norm does; in eval mode nothing changes.
        """
        x = self._observed(x, generator)
        mean, log_var = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * log_var).exp() * eps
        out = self._decoder_output(z, labels)
        nll = -self.log_likelihood(x, out, fit_scale=self.training)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).flatten(1).sum(1)  # (B,)
        if self.training and self.config.latent == "spatial":
            with torch.no_grad():
                self.latent_mean.lerp_(mean.mean((0, 2, 3)), 0.01)
                self.latent_std.lerp_(mean.std((0, 2, 3)), 0.01)
        return nll, kl, self._mean(out)

    @torch.no_grad()
    def iwae_nll(self, x: torch.Tensor, k: int, generator: torch.Generator | None,
                 labels: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
        """The importance-weighted bound on -log p(x) in nats per item (B,) with k samples of q(z | x)
        (Burda et al. 2016, eq. 8); at most `chunk` (default iwae_chunk) images are decoded at once.
        Bernoulli: the bound on one dynamic binarisation of x, drawn from `generator` first."""
        if k < 1:
            raise ArgumentError(f"the IWAE bound needs k >= 1 samples, got {k}")
        x = self._observed(x, generator)
        b = len(x)
        mean, log_var = self.encode(x)
        std = (0.5 * log_var).exp()
        per_pass = max(1, (chunk or self.config.iwae_chunk) // b)
        log_w = []
        for start in range(0, k, per_pass):
            s = min(per_pass, k - start)
            eps = torch.randn((s, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + std * eps  # (s, B, *latent_shape)
            log_q = (-0.5 * eps.pow(2) - std.log() - 0.5 * LOG_2PI).flatten(2).sum(2)  # (s, B)
            log_prior = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).flatten(2).sum(2)
            out = self._decoder_output(z.flatten(0, 1), None if labels is None else labels.repeat(s))
            log_px = self.log_likelihood(x.expand(s, *x.shape).flatten(0, 1), out).view(s, b)
            log_w.append(log_px + log_prior - log_q)
        return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))

    # ------------------------------------------------------------------ training
    def training_loss(self, batch, phase, step, generator):
        x = batch[X]
        nll, kl, _ = self.elbo_terms(x, batch.get(LABEL), generator)
        warm = self.config.kl_warmup_steps
        kl_weight = self.config.beta * (min(1.0, (step + 1) / warm) if warm else 1.0)
        loss = (nll + kl_weight * kl).mean() / x[0].numel()
        logs = {"loss": loss.detach(), "recon_nats": nll.mean().detach(), "kl_nats": kl.mean().detach(),
                "elbo_nats": -(nll + kl).mean().detach()}
        if self.decoder_kind == "gaussian":
            logs["decoder_log_scale"] = self.log_scale.mean().detach()
        return LossOutput(loss, logs)

    # ------------------------------------------------------------------ sampling
    def sample_options(self, truncation: float | None = None, **given: Any) -> dict[str, Any]:
        return {"truncation": 1.0 if truncation is None else float(truncation),
                **{k: v for k, v in given.items() if v is not None}}

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {"one pass": {}, "truncation 0.7": {"truncation": 0.7}}

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, truncation: float | None = None, **_: Any) -> torch.Tensor:
        """The decoder's mean at n prior draws z ~ N(0, truncation^2 I)."""
        conditions = self.check_conditions(n, conditions)
        z = self.noise((n, *self.latent_shape), generator) * (1.0 if truncation is None else truncation)
        return self.decode(z, conditions.get(LABEL))

    # ------------------------------------------------------------------ evaluation
    def likelihood_details(self, k: int | None = None, **_: Any) -> dict[str, Any]:
        """What `bits_per_dim` measures with these options: recorded beside the figure."""
        return bound_details(self.config.iwae_k if k is None else k, self.decoder_kind)

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None, k: int | None = None, chunk: int | None = None) -> torch.Tensor:
        """The bound on -log p(x) per dimension in bits (B,): the ELBO (k = 1, analytic KL) or the IWAE
        bound with k samples (default iwae_k). Bernoulli: on a dynamic binarisation of the batch."""
        if not self.is_image:
            raise TypeError("bits/dim is defined for 8-bit images, not for point data")
        x = batch[X]
        labels = batch.get(LABEL) if LABEL in self.conditions else None
        k = self.config.iwae_k if k is None else int(k)
        if k == 1:
            nll, kl, _ = self.elbo_terms(x, labels, generator)
            nats = nll + kl
        else:
            nats = self.iwae_nll(x, k, generator, labels=labels, chunk=chunk)
        return nats_to_bits_per_dim(nats, x[0].numel())
