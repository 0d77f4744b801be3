"""An autoregressive prior over the code grids of a trained VQ-VAE run: VQ-VAE's second stage.

van den Oord, Vinyals & Kavukcuoglu 2017 ("Neural Discrete Representation Learning", section 3.2)
train the autoencoder first with a uniform prior, then fit an autoregressive model to the codes of
the training images and sample by drawing codes from it, ancestrally, and decoding them. They use a
PixelCNN; this prior is a small GPT (Radford et al. 2019, `nn.transformer.TransformerDecoder`) over
the code grid flattened in raster order, as Esser et al. 2021 ("Taming Transformers", VQGAN) do: on a
7 x 7 grid of 49 codes attention sees every earlier code at no cost worth a PixelCNN's receptive-field
bookkeeping, and a KV cache makes each drawn code one position's work.

The VQ-VAE run is named by `--set autoencoder=RUN`, loaded frozen (its checkpoint and SHA-256 are
recorded; a changed run is refused) and encodes each training batch to codes. Each sequence starts
with a start token, one per class under `--condition label`, so class conditioning costs one
embedding row per class. The loss is the codes' negative log-likelihood; it is logged in bits per
code, and `bits_per_code` gives it per held-out image. The image likelihood is not offered: the
VQ-VAE's decoder is trained by squared error and defines no distribution over pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import LABEL, X, Batch
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.transformer import TransformerDecoder
from ..base import GenerativeModel, LossOutput


@dataclass
class VQVAEPriorConfig:
    autoencoder: str = ""  # the vqvae run (--set autoencoder=RUN)
    # what the vqvae gives (checked when the run is attached): its codebook size and downsampling factor
    num_codes: int = 128
    latent_factor: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    temperature: float = 1.0  # sampling default; 0 is greedy


class VQVAEPrior(GenerativeModel):
    family = "vae"
    description = "autoregressive prior (small GPT) over a vqvae run's codes (--set autoencoder=RUN)"
    config_class = VQVAEPriorConfig
    # a few CPU minutes are a few hundred steps: a short warm-up, or the run ends before reaching its lr
    train_defaults = {"lr": 2e-3, "batch_size": 64, "warmup_steps": 20, "schedule": "cosine", "ema_decay": 0.995}
    references = ("autoencoder",)
    accepted_conditions = (LABEL,)
    data_kinds = ("image",)

    def __init__(self, config: VQVAEPriorConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        _, h, w = self.data_shape
        f = config.latent_factor
        if f < 1 or h % f or w % f:
            raise ArgumentError(f"images of {h}x{w} do not divide by latent_factor={f}: set it to the vqvae's "
                                f"2 ** downsample")
        if config.num_codes < 2:
            raise ArgumentError(f"num_codes must be at least 2, got {config.num_codes}")
        self.grid = (h // f, w // f)
        starts = self.num_classes if LABEL in self.conditions else 1
        # tokens 0..K-1 are codes, K.. the start tokens (one per class); the head's start-token logits go unused
        self.net = TransformerDecoder(config.num_codes + starts, config.dim, config.depth, config.heads,
                                      math.prod(self.grid), mlp_ratio=config.mlp_ratio, qk_norm=True,
                                      dropout=config.dropout)

    def attach_reference(self, name: str, model: nn.Module) -> None:
        needed = ("encode_codes", "decode_codes", "num_codes", "latent_shape")
        if not all(hasattr(model, a) for a in needed):
            raise ArgumentError(f"the '{name}' run's model ({type(model).__name__}) has no codebook "
                                f"({', '.join(needed)}); train one with `genlab train vqvae`")
        if model.num_codes != self.config.num_codes or tuple(model.latent_shape[1:]) != self.grid:
            raise ArgumentError(f"the '{name}' run has {model.num_codes} codes on a {tuple(model.latent_shape[1:])} grid; "
                                f"this prior expects {self.config.num_codes} on {self.grid}: set num_codes and "
                                f"latent_factor to match")
        super().attach_reference(name, model)

    # ------------------------------------------------------------------ the sequence
    def codes_of(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> their codes in raster order (B, h w) long. Training encodes at the run's precision (bf16
        halves the encoder's cost on CPU and moves only near-tie assignments); `bits_per_code` in float32."""
        with torch.no_grad():
            return self.referenced("autoencoder").encode_codes(x).flatten(1)

    def _starts(self, n: int, labels: torch.Tensor | None) -> torch.Tensor:
        """(n, 1) the start token of each sequence: K, or K + class under --condition label."""
        start = torch.full((n, 1), self.config.num_codes, dtype=torch.long, device=self.device)
        return start + labels.long().view(n, 1) if labels is not None else start

    def _labels(self, conditions: Batch) -> torch.Tensor | None:
        if LABEL not in self.conditions:
            return None
        if conditions.get(LABEL) is None:
            raise ArgumentError("this run was trained with --condition label: give the classes (--class 3, or all)")
        return conditions[LABEL]

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, L) -> the logits of each one given those before it (B, L, K)."""
        tokens = torch.cat([self._starts(len(codes), labels), codes[:, :-1]], dim=1)
        return self.net(tokens)[..., : self.config.num_codes]

    def code_nll(self, batch: Batch) -> torch.Tensor:
        """(B, L) float32 negative log-likelihood of each code of the batch's images, in nats."""
        codes = self.codes_of(batch[X])
        logits = self(codes, batch.get(LABEL) if LABEL in self.conditions else None)
        return F.cross_entropy(logits.float().transpose(1, 2), codes, reduction="none")

    def training_loss(self, batch, phase, step, generator):
        loss = self.code_nll(batch).mean()
        return LossOutput(loss, {"loss": loss.detach(), "bits_per_code": loss.detach() / math.log(2)})

    @torch.inference_mode()
    def bits_per_code(self, batch: Batch) -> torch.Tensor:
        """Negative log2-likelihood per code of each image's code grid (B,), in float32."""
        with torch.autocast(self.device.type, enabled=False):
            return self.code_nll(batch).mean(1) / math.log(2)

    # ------------------------------------------------------------------ sampling
    def sample_options(self, temperature: float | None = None, **given: Any) -> dict[str, Any]:
        unknown = [k for k, v in given.items() if v is not None]
        if unknown:
            raise ArgumentError(f"vqvae-prior draws codes one after another; its only option is temperature "
                                f"(got {', '.join(unknown)})")
        temperature = self.config.temperature if temperature is None else temperature
        if temperature < 0:
            raise ArgumentError(f"--temperature must be 0 (greedy) or more, got {temperature}")
        return {"temperature": temperature}

    def network_calls(self, **options: Any) -> int:
        return math.prod(self.grid)

    @torch.inference_mode()
    def sample_codes(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     temperature: float = 1.0) -> torch.Tensor:
        """(n, h, w) code grids drawn ancestrally in raster order, with a KV cache."""
        length, k = math.prod(self.grid), self.config.num_codes
        codes = torch.zeros(n, length, dtype=torch.long, device=self.device)
        cache = self.net.new_cache()
        token = self._starts(n, labels)
        for i in range(length):
            logits = self.net(token, cache=cache)[:, -1, :k].float()  # (n, K)
            if temperature == 0:
                codes[:, i] = logits.argmax(-1)
            else:
                codes[:, i] = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
            token = codes[:, i : i + 1]
        return codes.view(n, *self.grid)

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, temperature=None, **options: Any) -> torch.Tensor:
        """n images: code grids from the prior, decoded by the vqvae run."""
        temperature = self.sample_options(temperature, **options)["temperature"]
        conditions = self.check_conditions(n, conditions)
        codes = self.sample_codes(n, self._labels(conditions), generator, temperature)
        return self.referenced("autoencoder").decode_codes(codes)
