"""CycleGAN (Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks"): two generators G: A -> B and F: B -> A, trained on unpaired images of the two domains
(`--data domains:A+B`, batches {x: A, x_b: B}).

What the paper sets, and this file follows:
- losses (section 3): least-squares adversarial losses (section 4, Mao et al. 2017) for G against D_B and
  F against D_A; cycle consistency lambda * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1) with lambda = 10; the
  identity loss 0.5 * lambda * (|G(b) - b|_1 + |F(a) - a|_1) (section 5.2, from Taigman et al. 2017),
  which keeps a translation from changing what needs no change (colours, here the stroke's weight);
- the discriminators' objective halved (section 4) "to slow down the rate at which D learns";
- networks (appendix 7.2): ResNet generators with instance norm and 70x70 PatchGAN discriminators,
  scaled to 28x28 on a CPU here: 32 base channels instead of 64, 6 residual blocks (the paper's 128x128
  setting), 16x16 patches (`nn.translation`); Adam with lr 2e-4 and betas (0.5, 0.999).

Left out: the paper's history of 50 generated images that the discriminators see instead of the latest
fakes (it would be training state outside the weights, to be checkpointed and resumed exactly), its
batch size 1 (16 here: instance norm makes the batch size matter only to the gradient's average), and
its linear decay of the learning rate to zero over the second half of training.

Both discriminators share one optimizer ("discriminator"), both generators another ("generator"), so
the shared GAN phases (`adversarial.py`) drive it; the losses of both directions are summed in each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import SOURCE, X, X_B, Batch
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.translation import PatchDiscriminator, ResnetGenerator
from ..base import LossOutput
from .adversarial import AdversarialConfig, AdversarialModel
from .losses import AdversarialLoss, discriminator_loss, generator_loss

DIRECTIONS = ("a2b", "b2a")  # G: A -> B and F: B -> A, the keys of `generator`


@dataclass
class CycleGANConfig(AdversarialConfig):
    loss: AdversarialLoss = "least-squares"
    generator_channels: int = 32
    residual_blocks: int = 6  # the paper: 6 for 128x128 images, 9 for 256x256
    discriminator_channels: int = 32
    discriminator_layers: int = 1  # stride-2 layers of the PatchGAN: 1 -> 16x16 patches, 3 -> the paper's 70x70
    cycle_weight: float = 10.0  # lambda
    identity_weight: float = 0.5  # times lambda (section 5.2); 0 turns the identity loss off


class CycleGAN(AdversarialModel):
    description = "CycleGAN: unpaired A <-> B translation, two ResNet generators, PatchGANs, cycle consistency"
    config_class = CycleGANConfig
    data_kinds = ("image",)
    required_inputs = (X_B,)
    sampling_inputs = (SOURCE,)
    # batch 16 rather than the paper's 1 (see the docstring); no evaluation or collapse watch during
    # training: genlab's sample-based measures and the watch's probe read one-domain data
    train_defaults = {**AdversarialModel.train_defaults, "batch_size": 16, "eval_every": 0, "collapse_every": 0}
    watch_collapse = False

    def __init__(self, config: CycleGANConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        if config.gp_weight or config.r1_weight:
            raise ArgumentError("cyclegan trains its discriminators without gradient penalties: "
                                "drop --set gp_weight / r1_weight")
        c, size = self.data_shape[0], self.data_shape[-1]
        try:
            self.discriminator = nn.ModuleDict({  # named by the domain each one judges
                d: PatchDiscriminator(c, size, config.discriminator_channels, config.discriminator_layers)
                for d in ("a", "b")})
        except ValueError as e:
            raise ArgumentError(f"--set discriminator_layers: {e}") from None
        self.generator = nn.ModuleDict({
            d: ResnetGenerator(c, size, config.generator_channels, config.residual_blocks) for d in DIRECTIONS})

    # ------------------------------------------------------------------ the networks
    def generate(self, z: torch.Tensor, conditions: Batch, generator: torch.Generator | None = None,
                 direction: str = "a2b", **options: Any) -> torch.Tensor:
        """Images of one domain (B, C, S, S) -> their translations into the other: a2b is G, b2a is F."""
        return self.generator[direction](z)

    def _critic(self, domain: str, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.discriminator[domain](self.augment(x, generator))  # (B, 1, s, s) patch scores

    def cycle_terms(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The translations of a and b and the generators' L1 terms: `cycle` (|F(G(a)) - a| + |G(F(b)) - b|)
        and `identity` (|G(b) - b| + |F(a) - a|), each a mean over pixels, unweighted."""
        g, f = self.generator["a2b"], self.generator["b2a"]
        fake_b, fake_a = g(a), f(b)
        cycle = F.l1_loss(f(fake_b), a) + F.l1_loss(g(fake_a), b)
        terms = {"fake_a": fake_a, "fake_b": fake_b, "cycle": cycle.float()}
        if self.config.identity_weight:
            terms["identity"] = (F.l1_loss(g(b), b) + F.l1_loss(f(a), a)).float()
        return terms

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: Batch, phase: str, step: int, generator: torch.Generator) -> LossOutput:
        cfg, a = self.config, batch[X]
        # the trainer's API refuses one-domain data (required_inputs); a caller's batch without x_b is
        # taken as one domain translated to itself, which keeps every loss term defined
        b = batch.get(X_B, a)
        if phase == "discriminator":
            with torch.no_grad():
                fake_b, fake_a = self.generator["a2b"](a), self.generator["b2a"](b)
            real_a, real_b = self._critic("a", a, generator), self._critic("b", b, generator)
            fake_a_logits, fake_b_logits = self._critic("a", fake_a, generator), self._critic("b", fake_b, generator)
            # halved, as the paper does, so D learns slower than G
            loss_a = 0.5 * discriminator_loss(cfg.loss, real_a, fake_a_logits, cfg.label_smoothing)
            loss_b = 0.5 * discriminator_loss(cfg.loss, real_b, fake_b_logits, cfg.label_smoothing)
            real = 0.5 * (real_a.detach().float().mean() + real_b.detach().float().mean())
            fake = 0.5 * (fake_a_logits.detach().float().mean() + fake_b_logits.detach().float().mean())
            return LossOutput(loss_a + loss_b, {"d_loss": (loss_a + loss_b).detach(), "d_loss_a": loss_a.detach(),
                                                "d_loss_b": loss_b.detach(), "d_real": real, "d_fake": fake})
        terms = self.cycle_terms(a, b)
        adversarial = (generator_loss(cfg.loss, self._critic("b", terms["fake_b"], generator))
                       + generator_loss(cfg.loss, self._critic("a", terms["fake_a"], generator)))
        loss = adversarial + cfg.cycle_weight * terms["cycle"]
        logs = {"g_adv": adversarial.detach(), "cycle": terms["cycle"].detach()}
        if "identity" in terms:
            loss = loss + cfg.identity_weight * cfg.cycle_weight * terms["identity"]
            logs["identity"] = terms["identity"].detach()
        return LossOutput(loss, {"g_loss": loss.detach(), **logs})

    # ------------------------------------------------------------------ sampling
    def sample_options(self, direction: str | None = None, **given: Any) -> dict[str, Any]:
        direction = direction or "a2b"
        if direction not in DIRECTIONS:
            raise ArgumentError(f"direction must be a2b (domain A to B) or b2a, got {direction!r}")
        return {"direction": direction}

    def evaluation_conditions(self, n: int, real: Batch | None = None, direction: str | None = None,
                              **options: Any) -> Batch | None:
        """Held-out images of the direction's source domain (real[x] for a2b, real[x_b] for b2a), cycled
        to n; None when `real` has none, and `sample` then translates noise."""
        key = X if self.sample_options(direction)["direction"] == "a2b" else X_B
        if real is None or key not in real or not len(real[key]):
            return None
        source = real[key]
        return {SOURCE: source[torch.arange(n) % len(source)]}

    @torch.inference_mode()
    def sample(self, n: int, conditions: Batch | None = None, generator: torch.Generator | None = None,
               direction: str | None = None, **options: Any) -> torch.Tensor:
        """Translations (n, C, S, S) of conditions[SOURCE] (n, C, S, S) in `direction`. Without a source,
        translations of uniform noise images: only a check that the networks run (`genlab translate
        --input` and the evaluation's held-out images are the way to see what the model does)."""
        conditions = self.check_conditions(n, conditions)
        direction = self.sample_options(direction)["direction"]
        source = conditions.get(SOURCE)
        if source is None:
            uniform = torch.rand((n, *self.data_shape), generator=generator, device=self.device, dtype=self.dtype)
            source = 2 * uniform - 1
        elif tuple(source.shape[1:]) != self.data_shape:
            raise ArgumentError(f"source images of shape {tuple(source.shape[1:])} for a run on {self.data_shape}; "
                                "resize them to the run's --image-size")
        return self.generate(source.to(self.dtype), conditions, generator, direction=direction).clamp(-1, 1)
