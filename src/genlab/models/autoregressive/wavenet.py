"""WaveNet: an autoregressive model of audio and numeric series, one quantised sample at a time.

van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio" (arXiv:1609.03499): a stack of
dilated causal convolutions (dilations 1, 2, ..., 512, repeated), gated activations tanh(W_f x) * sigmoid(W_g x),
residual and skip connections, and a 256-way softmax over mu-law companded samples, trained by maximum
likelihood. The likelihood of the quantised signal is exact: the chain rule over time, one softmax per step.
Generation keeps, per layer, the inputs the next steps need (Paine et al. 2016, "Fast Wavenet Generation
Algorithm", arXiv:1611.09482; `genlab.nn.causal_conv`), so a step costs one pass through the layers instead of
a pass over the whole receptive field; `fast=False` recomputes the receptive field at every step instead.

Audio arrives in [-1, 1] and is mu-law companded, embedded class by class, as in the paper. A numeric
series arrives standardised (mean 0, std 1 on the training part) and is clipped to [-clip, clip] standard
deviations. Its levels are quantised uniformly: the whole range matters there, and mu-law's coarse outer bins
cost sunspots forecasts (MASE 1.95 against 1.54, benchmarks/forecast.py). A series whose future leaves the
range of its past (co2's trend) is modelled through its differences (`difference=1`), summed back; these
increments sit near zero, where mu-law's bins are fine (co2 MASE 0.61 against 1.25 uniform). Three choices
for series that only a few hundred steps make necessary, each measured there: the network reads the value of
each bin rather than an embedding of it (it then generalises to levels its training part never reached:
sunspots rolling-origin MASE 1.14 against 2.05), and HL-Gauss targets (Imani & White 2018) make neighbouring
bins share evidence (a one-hot softmax learns those few steps by heart: held-out loss 13 nats against 3.7).
Channels of a multichannel series are predicted jointly from the past, independently within one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import CONTEXT, X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.causal_conv import CausalConv1d, ConvCache, receptive_field
from ..base import GenerativeModel, LossOutput


@dataclass
class WaveNetConfig:
    residual_channels: int = 32
    dilation_channels: int = 32
    skip_channels: int = 64
    # None: dilations doubling up to a receptive field of half the data window (at most one cycle), so most
    # positions of a training window see a full receptive field, as every forecast step will
    layers: int | None = None
    dilation_cycle: int = 10  # dilations 1, 2, ..., 2^(cycle-1), then again from 1 (the paper's 1..512 blocks)
    kernel_size: int = 2
    bins: int = 256
    quantization: Literal["mu-law", "uniform"] | None = None  # None: uniform for series levels, else mu-law
    # the network's input: "embedding" of each class (the paper's one-hot), or the "value" of its bin (in the
    # quantiser's [-1, 1]), which varies smoothly with the signal and so reaches levels a short series never
    # showed in training (sunspots' largest cycles are all in its tail); None: embedding for audio, value for series
    inputs: Literal["embedding", "value"] | None = None
    clip: float = 4.0  # series: standard deviations mapped to the ends of the quantiser (audio: always 1)
    difference: int = 0  # series: model the d-th differences (1 for a trending series), summed back on output
    temperature: float = 1.0  # sampling: divides the logits
    # training: HL-Gauss targets this many bins wide (0: the paper's one-hot targets); None: 0 for audio, bins / 20
    # for series levels, bins / 128 for differences (narrow increments: a wide kernel would blur them)
    target_smoothing: float | None = None
    input_noise: float = 0.0  # training: std of Gaussian noise on the inputs (not the targets), in the signal's units


# ---------------------------------------------------------------------------------------------- quantisation
def mu_law(x: torch.Tensor, bins: int) -> torch.Tensor:
    """f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu), mu = bins - 1: [-1, 1] -> [-1, 1], fine near 0."""
    mu = bins - 1
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def mu_law_encode(x: torch.Tensor, bins: int) -> torch.Tensor:
    """x in [-1, 1] -> classes in [0, bins), equal bins of f(x)."""
    return uniform_encode(mu_law(x, bins), bins)


def mu_law_decode(q: torch.Tensor, bins: int) -> torch.Tensor:
    """Classes -> the value of each bin's centre in companded space, expanded back: the inverse of f."""
    mu = bins - 1
    y = uniform_decode(q, bins)
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def uniform_encode(x: torch.Tensor, bins: int) -> torch.Tensor:
    """x in [-1, 1] -> one of `bins` equal bins (values outside join the end bins)."""
    return ((x.clamp(-1, 1) + 1) * (bins / 2)).long().clamp(0, bins - 1)


def uniform_decode(q: torch.Tensor, bins: int) -> torch.Tensor:
    return (q.float() + 0.5) * (2 / bins) - 1


# ---------------------------------------------------------------------------------------------- network
class GatedResidualBlock(nn.Module):
    """Dilated causal conv -> tanh * sigmoid gate -> 1x1 residual (back into the stack) and 1x1 skip (to the output)."""

    def __init__(self, residual: int, dilation_channels: int, skip: int, kernel_size: int, dilation: int, last: bool):
        super().__init__()
        self.dilated = CausalConv1d(residual, 2 * dilation_channels, kernel_size, dilation)
        # the last block's residual output would feed nothing (and get no gradient): it has only a skip
        self.residual = None if last else CausalConv1d(dilation_channels, residual, 1)
        self.skip = CausalConv1d(dilation_channels, skip, 1)

    def _outputs(self, x, y, one_step: bool):
        f, g = y.chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)  # (B, D, T) or (B, D)
        apply = (lambda conv, v: conv.step(v, None)) if one_step else (lambda conv, v: conv(v))
        out = x if self.residual is None else x + apply(self.residual, z)
        return out, apply(self.skip, z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, R, T) -> (B, R, T), (B, S, T)
        return self._outputs(x, self.dilated(x), False)

    def step(self, x: torch.Tensor, cache: ConvCache) -> tuple[torch.Tensor, torch.Tensor]:  # (B, R) -> (B, R), (B, S)
        return self._outputs(x, self.dilated.step(x, cache), True)


class WaveNet(GenerativeModel):
    family = "autoregressive"
    description = "WaveNet: dilated causal convolutions, gated residual blocks, 256-way softmax (mu-law audio, series)"
    config_class = WaveNetConfig
    train_defaults = {"lr": 2e-3, "batch_size": 32, "warmup_steps": 50, "ema_decay": 0.995}
    likelihood = "exact"
    data_kinds = ("series", "audio")
    sampling_inputs = (CONTEXT,)

    def __init__(self, config: WaveNetConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        c = self.config
        if c.bins < 2 or c.kernel_size < 2 or c.clip <= 0 or c.difference not in (0, 1, 2):
            raise ArgumentError("wavenet needs bins >= 2, kernel_size >= 2, clip > 0 and difference 0, 1 or 2; "
                                f"got bins={c.bins}, kernel_size={c.kernel_size}, clip={c.clip}, difference={c.difference}")
        if spec.kind == "audio" and c.difference:
            raise ArgumentError("difference applies to numeric series; audio is modelled as it is (--set difference=0)")
        self.channels, self.window = spec.shape
        levels = spec.kind == "series" and not c.difference
        self.quantization = c.quantization or ("uniform" if levels else "mu-law")
        default_smoothing = 0.0 if spec.kind == "audio" else c.bins / 20 if levels else c.bins / 128
        self.smoothing = c.target_smoothing if c.target_smoothing is not None else default_smoothing
        layers = c.layers if c.layers is not None else self._default_layers()
        if layers < 1:
            raise ArgumentError(f"wavenet needs at least one layer, got layers={layers}")
        self.dilations = [2 ** (i % c.dilation_cycle) for i in range(layers)]
        self.inputs = c.inputs or ("embedding" if spec.kind == "audio" else "value")
        if self.inputs == "embedding":  # a row per (channel, class) and a start row per channel: the paper's one-hot
            self.embed = nn.Embedding(self.channels * (c.bins + 1), c.residual_channels)
        else:  # the bin's value, linearly, and a start row per channel
            self.embed = nn.Embedding(self.channels, c.residual_channels)
            self.value_in = nn.Linear(self.channels, c.residual_channels)
        self.causal = CausalConv1d(c.residual_channels, c.residual_channels, c.kernel_size)
        self.blocks = nn.ModuleList(GatedResidualBlock(c.residual_channels, c.dilation_channels, c.skip_channels,
                                                       c.kernel_size, d, i == layers - 1)
                                    for i, d in enumerate(self.dilations))
        self.head1 = CausalConv1d(c.skip_channels, c.skip_channels, 1)
        self.head2 = CausalConv1d(c.skip_channels, self.channels * c.bins, 1)
        self.register_buffer("offsets", torch.arange(self.channels) * (c.bins + 1), persistent=False)

    def _default_layers(self) -> int:
        k, target = self.config.kernel_size, max(self.window // 2, 2)
        layers = 1
        while layers < self.config.dilation_cycle and receptive_field(k, [1] + [2**i for i in range(layers + 1)]) <= target:
            layers += 1
        return layers

    @property
    def receptive_field(self) -> int:
        """Past inputs one prediction sees: the first causal conv's and the dilated stack's."""
        return receptive_field(self.config.kernel_size, [1, *self.dilations])

    # ------------------------------------------------------------------ signal <-> classes
    def _companded(self, x: torch.Tensor) -> torch.Tensor:
        """Signal values -> [-1, 1], where the bins are equal: mu-law or linear, after scaling by clip."""
        scale = 1.0 if self.spec.kind == "audio" else self.config.clip
        y = (x.float() / scale).clamp(-1, 1)
        return mu_law(y, self.config.bins) if self.quantization == "mu-law" else y

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Signal values (audio in [-1, 1], series in standard deviations) -> classes, same shape."""
        return uniform_encode(self._companded(x), self.config.bins)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if self.spec.kind == "audio" else self.config.clip
        decode = mu_law_decode if self.quantization == "mu-law" else uniform_decode
        return decode(q, self.config.bins) * scale

    def signal(self, x: torch.Tensor) -> torch.Tensor:
        """The sequence the network models: x itself, or its d-th differences (one step shorter each)."""
        return torch.diff(x, n=self.config.difference, dim=-1) if self.config.difference else x

    def _integrate(self, history: torch.Tensor, increments: torch.Tensor) -> torch.Tensor:
        """Sum modelled d-th differences (B, C, H) back into values that continue history (B, C, N)."""
        out = increments
        for order in range(self.config.difference - 1, -1, -1):
            base = torch.diff(history, n=order, dim=-1)[..., -1:] if order else history[..., -1:]
            out = base + out.cumsum(-1)
        return out

    # ------------------------------------------------------------------ the network
    def _embed(self, ids: torch.Tensor) -> torch.Tensor:  # (B, C, T) or (B, C) classes -> (B, R, T) or (B, R)
        steps = ids if ids.dim() == 3 else ids[..., None]
        if self.inputs == "embedding":
            h = self.embed(steps + self.offsets[:, None]).sum(1)  # (B, T, R)
        else:
            start = steps == self.config.bins  # (B, C, T)
            value = uniform_decode(steps.clamp(max=self.config.bins - 1), self.config.bins).masked_fill(start, 0.0)
            h = self.value_in(value.transpose(1, 2)) + (start.transpose(1, 2)[..., None] * self.embed.weight).sum(2)
        return h.transpose(1, 2) if ids.dim() == 3 else h[:, 0]

    def _trunk(self, h: torch.Tensor, caches: list | None = None) -> torch.Tensor:
        """(B, R, T) -> logits (B, C, bins, T); `caches` collects each causal conv's cache for `_step`."""
        if caches is not None:
            caches.append(self.causal.cache_from(h))
        x = self.causal(h)
        skips = 0
        for block in self.blocks:
            if caches is not None:
                caches.append(block.dilated.cache_from(x))
            x, skip = block(x)
            skips = skips + skip
        logits = self.head2(F.relu(self.head1(F.relu(skips))))  # (B, C * bins, T)
        return logits.unflatten(1, (self.channels, self.config.bins))

    def _step(self, h: torch.Tensor, caches: list) -> torch.Tensor:
        """One time step of `_trunk`: (B, R) -> logits (B, C, bins), caches updated."""
        x = self.causal.step(h, caches[0])
        skips = 0
        for block, cache in zip(self.blocks, caches[1:]):
            x, skip = block.step(x, cache)
            skips = skips + skip
        logits = self.head2.step(F.relu(self.head1.step(F.relu(skips), None)), None)
        return logits.unflatten(1, (self.channels, self.config.bins))

    def _shifted(self, ids: torch.Tensor) -> torch.Tensor:
        """Inputs for predicting ids (B, C, T): the start symbol, then ids[..., :-1]; position t sees ids before t."""
        start = torch.full_like(ids[..., :1], self.config.bins)
        return torch.cat([start, ids[..., :-1]], -1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Input classes (B, C, T), start symbol = bins -> logits (B, C, bins, T) of the class at each next step."""
        return self._trunk(self._embed(inputs))

    def log_likelihood(self, ids: torch.Tensor) -> torch.Tensor:
        """log p(ids) in nats per item (B,): the exact chain-rule sum over time and channels."""
        logits = self(self._shifted(ids)).float()  # (B, C, bins, T)
        return -F.cross_entropy(logits.transpose(1, 2), ids, reduction="none").flatten(1).sum(1)

    # ------------------------------------------------------------------ training
    def training_loss(self, batch, phase, step, generator):
        signal = self.signal(batch[X])
        ids = self.quantize(signal)  # (B, C, T)
        inputs = ids
        if self.config.input_noise and self.training:
            noise = torch.randn(signal.shape, generator=generator, device=signal.device, dtype=signal.dtype)
            inputs = self.quantize(signal + self.config.input_noise * noise)
        logits = self(self._shifted(inputs)).float()
        if self.smoothing and self.training:
            # HL-Gauss (Imani & White 2018): the target is a Gaussian of width sigma bins around the value,
            # integrated over each bin, so neighbouring bins share evidence: the ordinal structure a softmax lacks
            soft = self._gaussian_targets(signal, self.smoothing)
            loss = -(soft * logits.transpose(1, 2).log_softmax(1)).sum(1).mean()
        else:
            loss = F.cross_entropy(logits.transpose(1, 2), ids)  # nats per sample
        return LossOutput(loss, {"loss": loss.detach(), "bits_per_sample": loss.detach() / math.log(2)})

    def _gaussian_targets(self, signal: torch.Tensor, sigma: float) -> torch.Tensor:
        """(B, C, T) values -> (B, bins, C, T) probabilities of N(value, sigma bins) in each bin (companded space)."""
        bins = self.config.bins
        position = self._companded(signal) * (bins / 2) + bins / 2  # in units of bins, 0 .. bins
        edges = torch.arange(bins + 1, device=signal.device, dtype=torch.float32).view(1, -1, 1, 1)
        cdf = torch.special.ndtr((edges - position.unsqueeze(1)) / sigma)  # (B, bins + 1, C, T)
        cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf[:, 1:-1], torch.ones_like(cdf[:, :1])], 1)  # ends take the tails
        return cdf[:, 1:] - cdf[:, :-1]

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None) -> torch.Tensor:
        """Exact negative log-likelihood of the quantised signal, bits per modelled sample, per item (B,)."""
        ids = self.quantize(self.signal(batch[X]))
        return -self.log_likelihood(ids) / (ids[0].numel() * math.log(2))

    # ------------------------------------------------------------------ generation
    def _draw(self, logits: torch.Tensor, generator, temperature: float) -> torch.Tensor:
        """One class per (item, channel) from logits (B, C, bins), by inverting the CDF at a uniform draw."""
        cdf = (logits.float() / temperature).softmax(-1).cumsum(-1)
        u = torch.rand((*cdf.shape[:-1], 1), generator=generator, device=cdf.device, dtype=cdf.dtype)
        return (cdf < u).sum(-1).clamp(max=self.config.bins - 1)

    def _context_inputs(self, context: torch.Tensor | None, n: int) -> torch.Tensor:
        """The inputs before the first generated step: the start symbol (with at most a receptive field of
        context after it), or, for a longer context, its last receptive field alone, as deep in a window."""
        if context is None:
            return torch.full((n, self.channels, 1), self.config.bins, dtype=torch.long, device=self.device)
        if context.shape[-1] >= self.receptive_field:
            return context[..., -self.receptive_field :]
        start = torch.full_like(context[..., :1], self.config.bins)
        return torch.cat([start, context], -1)

    @torch.inference_mode()
    def generate(self, context: torch.Tensor | None, steps: int, n: int, generator: torch.Generator | None = None,
                 temperature: float = 1.0, fast: bool = True) -> torch.Tensor:
        """`steps` classes (n, C, steps) following `context` classes (n, C, T0) or None (from the start symbol).

        fast: the per-layer caches of past activations; False recomputes the receptive field every step.
        """
        if temperature <= 0:
            raise ArgumentError(f"temperature must be positive, got {temperature}")
        stream = self._context_inputs(context, n)
        caches: list = []
        logits = self._trunk(self._embed(stream), caches if fast else None)[..., -1]  # (n, C, bins)
        out = []
        for i in range(steps):
            ids = self._draw(logits, generator, temperature)  # (n, C)
            out.append(ids)
            if i + 1 == steps:
                break
            if fast:
                logits = self._step(self._embed(ids), caches)
            else:
                stream = torch.cat([stream, ids[..., None]], -1)
                logits = self._trunk(self._embed(stream[..., -self.receptive_field :]))[..., -1]
        return torch.stack(out, -1)

    @torch.inference_mode()
    def forecast_paths(self, history: torch.Tensor, horizon: int, n: int, generator: torch.Generator | None = None,
                       temperature: float | None = None, fast: bool = True) -> torch.Tensor:
        """n sample paths (n, C, horizon) that continue history (C, N) or (n, C, N), in the data's units."""
        history = history.to(self.device, torch.float32)
        history = history.expand(n, *history.shape[-2:]) if history.dim() == 2 else history
        if history.shape[-1] < self.config.difference:
            raise ArgumentError(f"a forecast from differences of order {self.config.difference} needs at least "
                                f"{self.config.difference} steps of history, got {history.shape[-1]}")
        signal = self.signal(history)
        context = self.quantize(signal) if signal.shape[-1] else None
        ids = self.generate(context, horizon, n, generator,
                            self.config.temperature if temperature is None else temperature, fast)
        values = self.dequantize(ids)
        return self._integrate(history, values) if self.config.difference else values

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, temperature: float | None = None, fast: bool = True,
               **options: Any) -> torch.Tensor:
        """n windows (n, C, window): after a `context` condition (n, C, T0) if given, else from the start
        (a differenced series then starts at level 0, the training mean)."""
        if options:
            raise ArgumentError(f"wavenet sampling takes temperature and fast, not {', '.join(options)}")
        conditions = self.check_conditions(n, conditions)
        history = conditions.get(CONTEXT)
        if history is None:
            history = torch.zeros(n, self.channels, self.config.difference, device=self.device)
        return self.forecast_paths(history.float(), self.window, n, generator, temperature, fast)

    def sample_options(self, temperature: float | None = None, fast: bool | None = None, **given) -> dict[str, Any]:
        return {"temperature": self.config.temperature if temperature is None else temperature, **({"fast": fast} if fast is not None else {})}

    def network_calls(self, **options: Any) -> int:
        return self.window  # one step per generated sample
