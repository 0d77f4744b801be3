"""Gated PixelCNN: an exact-likelihood model of 8-bit images, one subpixel at a time in raster order.

van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016, "Conditional Image Generation
with PixelCNN Decoders" (NeurIPS): gated layers tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h), a
vertical and a horizontal stack whose union has no blind spot (the vertical stack shifted down one row
and fed to the horizontal one through a 1 x 1 convolution, never the other way), residual connections
in the horizontal stack, and class conditioning h as a learned bias in every gated layer of both
stacks. From van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks" (ICML):
masks A and B over the colour channels of the current pixel, the 256-way softmax per subpixel, and
the output head (ReLU, masked 1 x 1 convolutions) over skip connections summed from every layer.

The other output, `output="logistic"`, is the discretised logistic mixture of Salimans, Karpathy, Chen
& Kingma 2017, "PixelCNN++" (ICLR), whose bins of width 2/255 cover [-1, 1] with the end bins open.
It differs in one way: each colour channel has its own mixture, conditioned on the earlier channels
of the pixel through the channel masks, where PixelCNN++ shares one mixture indicator per pixel and
links the channels by linear coefficients. On one-channel images the two are the same.

genlab images hold 256 levels in [-1, 1] (uint8 / 127.5 - 1, `data.base.decode`): every value is
quantised to its nearest level for training, bits/dim and sampling alike, so the likelihood is the
exact log-probability of the 8-bit image (digits' 17 grey levels land on 17 of the 256).

Sampling is exact ancestral sampling in raster order with every layer's activations cached (as in
Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive Models"): a finished row
advances each vertical layer by that row, and each subpixel each horizontal layer by one column, so an
image costs about one forward pass of arithmetic rather than one per subpixel. Completion keeps the
pixels a mask marks as known and draws the rest in raster order, each conditioned on every pixel
before it (given or drawn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import LABEL, MASK, SOURCE, X, Batch
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.distributions import discretized_logistic_mixture_log_likelihood, nats_to_bits_per_dim
from ...nn.masked_conv import HorizontalConv, VerticalConv, channel_groups, down_shift
from ..base import GenerativeModel, LossOutput

LEVELS = 256


@dataclass
class PixelCNNConfig:
    channels: int = 64  # features of each stack, one contiguous group per colour channel
    layers: int = 8  # gated layers; the first one uses first_kernel
    kernel: int = 3
    first_kernel: int = 7  # the paper's 7 x 7 first layer: a wide view at no depth
    head_channels: int = 128  # hidden width of the output head over the summed skips
    output: Literal["softmax", "logistic"] = "softmax"
    mixtures: int = 5  # logistic components per subpixel (output="logistic")


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] -> their level 0..255 (long), as uint8 images are stored."""
    return ((x.float() + 1) * (LEVELS - 1) / 2).round().clamp(0, LEVELS - 1).long()


def level_values(levels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Levels 0..255 -> their values in [-1, 1]."""
    return levels.to(dtype) * (2 / (LEVELS - 1)) - 1


def logistic_mixture_log_prob(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """log P(x) per subpixel under a mixture of discretised logistics (Salimans et al. 2017, eq. 2).

    x: (B, C, H, W) on the 256 levels in [-1, 1]; params: (B, C, 3K, H, W) mixture logits, means and
    log scales. Returns (B, C, H, W) float32.
    """
    logits, means, log_scales = params.float().chunk(3, dim=2)  # (B, C, K, H, W) each
    return discretized_logistic_mixture_log_likelihood(x, logits, means, log_scales.clamp(min=-7.0), dim=2, levels=LEVELS)


class GatedLayer(nn.Module):
    """One gated layer of both stacks (van den Oord et al. 2016b, figure 2), with a skip output."""

    def __init__(self, in_groups: torch.Tensor, groups: torch.Tensor, kernel: int, first: bool, last: bool,
                 num_classes: int):
        super().__init__()
        features = len(groups)
        both = groups.repeat(2)  # the tanh half and the sigmoid half of each gate, grouped alike
        self.vertical = VerticalConv(len(in_groups), 2 * features, kernel)
        self.horizontal = HorizontalConv(in_groups, both, kernel, "A" if first else "B")
        self.vertical_to_horizontal = nn.Conv2d(2 * features, 2 * features, 1)  # past rows: no mask needed
        # the last layer's horizontal output would go nowhere: the head reads the skips
        self.residual = None if last else HorizontalConv(groups, groups, 1, "B")
        self.skip = HorizontalConv(groups, groups, 1, "B")
        self.first = first  # the image has too few channels for a residual connection
        # the conditional bias V^T h of both stacks' gates, one row per class
        self.label_bias = nn.Embedding(num_classes, 4 * features) if num_classes else None

    def biases(self, labels: torch.Tensor | None) -> tuple[Any, Any]:
        if self.label_bias is None:
            return 0, 0
        vertical, horizontal = self.label_bias(labels)[:, :, None, None].chunk(2, dim=1)  # (B, 2F, 1, 1) each
        return vertical, horizontal

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def vertical_step(self, v: torch.Tensor, bias: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(the next layer's vertical input, this layer's link into the horizontal stack)."""
        pre = self.vertical(v)  # (B, 2F, H, W): rows <= i
        return self.gate(pre + bias), self.vertical_to_horizontal(down_shift(pre))  # the link: rows < i

    def column_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        convs = {"horizontal": self.horizontal, "skip": self.skip, "residual": self.residual}
        return {name: conv.column_weights() for name, conv in convs.items() if conv is not None}

    def horizontal_column(self, window: torch.Tensor, link: torch.Tensor, bias: Any,
                          weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> tuple[Any, torch.Tensor]:
        """`horizontal_step` at one pixel: window (B, k//2 + 1, in) of the inputs up to it, link and bias
        (B, 2F), `column_weights()` -> (the next layer's input there (B, F), None after the last layer;
        the skip (B, F))."""
        gated = self.gate(HorizontalConv.column(window, weights["horizontal"]) + link + bias)  # (B, F)
        skip = HorizontalConv.column(gated, weights["skip"])
        if self.residual is None:
            return None, skip
        out = HorizontalConv.column(gated, weights["residual"])
        return (out if self.first else window[:, -1] + out), skip

    def horizontal_step(self, h: torch.Tensor, link: torch.Tensor, bias: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(the next layer's horizontal input, this layer's skip output)."""
        gated = self.gate(self.horizontal(h) + link + bias)  # (B, F, H, W)
        if self.residual is None:
            return h, self.skip(gated)
        out = self.residual(gated)
        return (out if self.first else h + out), self.skip(gated)


class PixelCNN(GenerativeModel):
    family = "autoregressive"
    description = "Gated PixelCNN: masked stacks, no blind spot, 256-way softmax or logistic mixture, exact bits/dim"
    config_class = PixelCNNConfig
    # ten CPU minutes on mnist give about an epoch: small batches, more steps (held-out bits/dim after the
    # same 48 s: 1.22 at batch 8, 1.33 at 16, 1.72 at 32), a cosine decay over the budget, and an EMA
    # short enough to keep up
    train_defaults = {"lr": 2e-3, "batch_size": 8, "ema_decay": 0.995, "warmup_steps": 100, "schedule": "cosine"}
    likelihood = "exact"
    accepted_conditions = (LABEL,)
    # completion: an input image and a mask of its known pixels; the rest is drawn in raster order
    sampling_inputs = (SOURCE, MASK)
    data_kinds = ("image",)
    # compiling the whole network fuses its gates, pads and masks: bf16 training steps 1.6x faster on this
    # CPU (the default config at batch 32, one thread) for about a minute of compilation. Sampling runs a
    # row and a pixel at a time through cached activations and stays eager.
    compile_pays_after = {"train": {"cpu": 4}, "sample": {}}

    def __init__(self, config: PixelCNNConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        colours = self.data_shape[0]
        for name in ("kernel", "first_kernel"):
            if getattr(config, name) < 1 or getattr(config, name) % 2 == 0:
                raise ArgumentError(f"{name} must be an odd number of pixels, got {getattr(config, name)}")
        for name in ("layers", "mixtures"):
            if getattr(config, name) < 1:
                raise ArgumentError(f"{name} must be at least 1, got {getattr(config, name)}")
        if min(config.channels, config.head_channels) < colours:
            raise ArgumentError(f"channels and head_channels must be at least the image's {colours} colour channels")
        if config.output not in ("softmax", "logistic"):
            raise ArgumentError(f"output must be 'softmax' or 'logistic', got {config.output!r}")
        self.params_per_subpixel = LEVELS if config.output == "softmax" else 3 * config.mixtures
        num_classes = self.num_classes if LABEL in self.conditions else 0
        groups = channel_groups(config.channels, colours)
        self.layers = nn.ModuleList(
            GatedLayer(channel_groups(colours, colours) if i == 0 else groups, groups,
                       config.first_kernel if i == 0 else config.kernel, i == 0, i == config.layers - 1, num_classes)
            for i in range(config.layers))
        head_groups = channel_groups(config.head_channels, colours)
        out_groups = channel_groups(colours * self.params_per_subpixel, colours)  # (C * P,): subpixel c's block
        self.head = nn.ModuleList([HorizontalConv(groups, head_groups, 1, "B"),
                                   HorizontalConv(head_groups, out_groups, 1, "B")])

    # ------------------------------------------------------------------ the network
    def compile_targets(self) -> list[nn.Module]:
        return [self]  # one graph through both stacks and the head (the layers have no forward of their own)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) images -> (B, C, P, H, W): each subpixel's 256 logits or 3K mixture parameters."""
        biases = [layer.biases(labels) for layer in self.layers]
        return self._horizontal(x, self._links(x, biases), biases)

    def _links(self, x: torch.Tensor, biases: list) -> list[torch.Tensor]:
        links, v = [], x
        for layer, (bias, _) in zip(self.layers, biases):
            v, link = layer.vertical_step(v, bias)
            links.append(link)
        return links

    def _horizontal(self, x: torch.Tensor, links: list[torch.Tensor], biases: list) -> torch.Tensor:
        h, skips = x, 0
        for layer, link, (_, bias) in zip(self.layers, links, biases):
            h, skip = layer.horizontal_step(h, link, bias)
            skips = skips + skip
        out = self.head[1](F.relu(self.head[0](F.relu(skips))))  # (B, C * P, H, W)
        b, _, height, width = out.shape
        return out.reshape(b, self.data_shape[0], self.params_per_subpixel, height, width)

    def _labels(self, conditions: Batch, check: bool = True) -> torch.Tensor | None:
        """The class labels of a label-conditioned run; `check=False` trusts them (a training batch: the
        range check would wait on the device every step)."""
        if LABEL not in self.conditions:
            return None
        if conditions.get(LABEL) is None:
            raise ArgumentError("this run was trained with --condition label: give the classes (--class 3, or all)")
        return self.checked_labels(conditions[LABEL]) if check else conditions[LABEL].long()

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, batch: Batch, check_labels: bool = True) -> torch.Tensor:
        """(B, C, H, W) float32 log-probability of each subpixel given the ones before it, in nats."""
        levels = quantise(batch[X])
        out = self(level_values(levels, self.dtype), self._labels(batch, check_labels))
        if self.config.output == "softmax":
            return -F.cross_entropy(out.float().transpose(1, 2), levels, reduction="none")  # classes on dim 1
        return logistic_mixture_log_prob(level_values(levels), out)

    def training_loss(self, batch, phase, step, generator):
        loss = -self.log_prob(batch, check_labels=False).mean()  # nats per subpixel
        return LossOutput(loss, {"loss": loss.detach(), "bits_per_dim": loss.detach() / math.log(2)})

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None) -> torch.Tensor:
        """Exact negative log2-likelihood per subpixel of each 8-bit image (B,), computed in float32."""
        with torch.autocast(self.device.type, enabled=False):  # an exact figure deserves exact maths
            nll = -self.log_prob(batch).flatten(1).sum(1)
        return nats_to_bits_per_dim(nll, math.prod(self.data_shape)).float()

    # ------------------------------------------------------------------ sampling and completion
    def network_calls(self, **options: Any) -> int:
        return math.prod(self.data_shape)

    def sample_options(self, **given: Any) -> dict[str, Any]:
        self._refuse_options({k: v for k, v in given.items() if v is not None})
        return {}

    @staticmethod
    def _refuse_options(options: dict[str, Any]) -> None:
        if options:
            raise ArgumentError(f"pixelcnn samples exactly, one subpixel after another: it takes no sampler "
                                f"options (got {', '.join(options)})")

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, progress=None, **options: Any) -> torch.Tensor:
        """n images drawn subpixel by subpixel; with conditions[SOURCE] and [MASK] (True: known), a
        completion of those images that keeps their known pixels."""
        self._refuse_options(options)
        conditions = self.check_conditions(n, conditions)
        source, mask = conditions.get(SOURCE), conditions.get(MASK)
        shape = (n, *self.data_shape)
        x = torch.zeros(shape, device=self.device, dtype=self.dtype)
        known = None
        if source is not None or mask is not None:
            if source is None or mask is None:
                raise ArgumentError("completion takes both the image and the mask of its known pixels "
                                    "(--input IMAGE --mask FILE, or genlab complete --rows K)")
            if tuple(source.shape) != shape:
                raise ArgumentError(f"the input images are {tuple(source.shape[1:])}; this run makes {self.data_shape}")
            try:
                known = mask.bool().expand(shape)
            except RuntimeError:
                raise ArgumentError(f"the mask is {tuple(mask.shape[1:])}; it must be (1, H, W) or (C, H, W) "
                                    f"for {self.data_shape} images") from None
            x = level_values(quantise(source), self.dtype)  # what the network is conditioned on
        x = self._generate(x, known, self._labels(conditions), generator)
        return x if known is None else torch.where(known, source.float(), x)  # the given pixels, unrounded

    def complete(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images x (B, C, H, W) with their known pixels (mask (B, 1, H, W), True: known) kept and the
        rest drawn in raster order, each given every pixel before it."""
        conditions = {SOURCE: x, MASK: mask, **({LABEL: labels} if labels is not None else {})}
        return self.sample(len(x), conditions, generator)

    def _generate(self, x: torch.Tensor, known: torch.Tensor | None, labels, generator) -> torch.Tensor:
        n, colours, height, width = x.shape
        layers, features = self.layers, self.config.channels
        biases = [layer.biases(labels) for layer in layers]
        column_biases = [b[:, :, 0, 0] if torch.is_tensor(b) else b for _, b in biases]
        weights = [layer.column_weights() for layer in layers] + [[conv.column_weights() for conv in self.head]]
        taps = [layer.horizontal.kernel_size[1] for layer in layers]  # columns each horizontal layer reads
        # (H, W) the pixels some item still lacks a channel of: the others are never drawn
        todo = (~known).flatten(0, 1).any(0).cpu() if known is not None else torch.ones(height, width, dtype=torch.bool)
        rows = todo.any(1).nonzero()
        vertical_in = [x] + [x.new_zeros(n, features, height, width) for _ in layers[1:]]  # each layer's input
        empty = x.new_zeros(n, 2 * features, 1, width)
        links = [layer.vertical_to_horizontal(empty) for layer in layers]  # row 0 has nothing above it
        for i in range(int(rows.max()) + 1 if len(rows) else 0):
            if i:
                links = self._vertical_row(vertical_in, i - 1, biases)
            if not todo[i].any():
                continue
            row_links = [link[:, :, 0].permute(2, 0, 1).contiguous() for link in links]  # (W, B, 2F)
            # each layer's input along row i, (B, W + k - 1, in): left-padded as its convolution pads
            image_row = F.pad(x[:, :, i], (taps[0] - 1, 0)).transpose(1, 2).contiguous()
            horizontal_in = [image_row] + [x.new_zeros(n, width + k - 1, features) for k in taps[1:]]
            for j in range(width):
                # a known pixel still passes once through the stack: the columns after it read its features
                for c in range(colours) if todo[i, j] else (None,):
                    params = self._horizontal_column(horizontal_in, [link[j] for link in row_links], column_biases,
                                                     weights, taps, j)  # (B, C, P)
                    if c is None:
                        continue
                    value = self._draw(params[:, c], generator)
                    if known is not None:
                        value = torch.where(known[:, c, i, j], x[:, c, i, j], value)
                    x[:, c, i, j] = image_row[:, j + taps[0] - 1, c] = value
        return x.float()

    def _vertical_row(self, inputs: list[torch.Tensor], r: int, biases: list) -> list[torch.Tensor]:
        """Row r of every vertical layer from the rows above it, cached in `inputs` (each layer's input,
        filled in row by row) -> the links into the horizontal stack's row r + 1."""
        links = []
        for index, (layer, (bias, _)) in enumerate(zip(self.layers, biases)):
            top = max(0, r - layer.vertical.kernel_size[0] + 1)
            pre = layer.vertical.last_row(inputs[index][:, :, top : r + 1])  # (B, 2F, 1, W) row r
            if index + 1 < len(self.layers):
                inputs[index + 1][:, :, r : r + 1] = layer.gate(pre + bias)
            links.append(layer.vertical_to_horizontal(pre))
        return links

    def _horizontal_column(self, inputs: list[torch.Tensor], links: list[torch.Tensor], biases: list,
                           weights: list, taps: list[int], j: int) -> torch.Tensor:
        """Column j of every horizontal layer from the columns before it, cached in `inputs` (each layer's
        input along the current row) -> (B, C, P) the parameters of pixel j's subpixels."""
        skips = 0
        for index, layer in enumerate(self.layers):
            h, skip = layer.horizontal_column(inputs[index][:, j : j + taps[index]], links[index], biases[index],
                                              weights[index])
            if h is not None:
                inputs[index + 1][:, j + taps[index + 1] - 1] = h
            skips = skips + skip
        hidden, out = weights[-1]
        params = HorizontalConv.column(F.relu(HorizontalConv.column(F.relu(skips), hidden)), out)  # (B, C * P)
        return params.view(len(params), self.data_shape[0], self.params_per_subpixel)

    def _draw(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, P) one subpixel's parameters -> (B,) a value on the 256 levels."""
        params = params.float()
        if self.config.output == "softmax":
            return level_values(self._categorical(params, generator), self.dtype)
        logits, means, log_scales = params.chunk(3, dim=-1)  # (B, K) each
        k = self._categorical(logits, generator)[:, None]  # (B, 1) the component
        mean, scale = means.gather(1, k)[:, 0], log_scales.clamp(min=-7.0).gather(1, k)[:, 0].exp()
        u = torch.rand(mean.shape, generator=generator, device=mean.device).clamp(1e-5, 1 - 1e-5)
        value = (mean + scale * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)  # inverse logistic CDF
        return level_values(quantise(value), self.dtype)

    @staticmethod
    def _categorical(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, K) logits -> (B,) one index each, by the inverse CDF of one uniform draw (multinomial's
        exponential draws cost several times more per pixel)."""
        cdf = logits.softmax(-1).cumsum(-1)
        u = torch.rand(len(cdf), 1, generator=generator, device=cdf.device) * cdf[:, -1:]
        return (cdf <= u).sum(-1).clamp(max=cdf.shape[-1] - 1)
