"""GPT: a decoder-only transformer language model over any token stream (`text:PATH`, `shakespeare`).

Radford et al. 2018/2019 (GPT, GPT-2: pre-norm blocks, causal self-attention, next-token cross-entropy,
optional weight tying); the "plain" recipe is nanoGPT's (learned positions, LayerNorm, GELU, AdamW).
The default "fast" recipe takes what the fastest small-model training runs (modded-nanoGPT, Jordan et
al. 2024) found to learn more per step, each measured here with `benchmarks/gpt.py`: rotary position
embeddings (Su et al. 2021), QK-norm (Henry et al. 2020), squared-ReLU MLPs (So et al. 2021), RMSNorm,
and Muon for the hidden matrices (AdamW for embeddings, head and gains). Attention goes through
`scaled_dot_product_attention` (nn.transformer).

Generation keeps a KV cache: each new token costs one position's work instead of the whole window.
Past `block_size` tokens the cache is rebuilt from the last three quarters of the window (positions the
model was trained on), so long generations stay within the context it knows. Temperature, top-k and
top-p (nucleus, Holtzman et al. 2020) filter each step's distribution; temperature 0 is greedy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator, Literal

import torch

from ...batch import PROMPT, X, X_MASK
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.distributions import token_nll, weighted_mean
from ...nn.transformer import TransformerDecoder
from ...train.optim import OptimizerSpec, ParamGroup
from ..base import GenerativeModel, LossOutput

# what each recipe sets when the config leaves it as None
RECIPES: dict[str, dict[str, Any]] = {
    "fast": {"rotary": True, "qk_norm": True, "activation": "relu2", "norm": "rms", "optimizer": "muon"},
    "plain": {"rotary": False, "qk_norm": False, "activation": "gelu", "norm": "layer", "optimizer": "adamw"},
}


@dataclass
class GPTConfig:
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    tie_weights: bool = False
    recipe: Literal["fast", "plain"] = "fast"
    # None: the recipe's choice (RECIPES above); set any of them to mix recipes
    rotary: bool | None = None
    qk_norm: bool | None = None
    activation: Literal["gelu", "relu2", "swiglu"] | None = None
    norm: Literal["layer", "rms"] | None = None
    optimizer: Literal["adamw", "muon"] | None = None
    # sampling defaults (genlab sample / generate override them)
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None


class GPT(GenerativeModel):
    family = "autoregressive"
    description = "GPT: decoder-only transformer for text (rotary, QK-norm, ReLU^2, Muon; or nanoGPT's plain recipe)"
    config_class = GPTConfig
    # measured on Tiny Shakespeare in 40 s of training on 2 cores (benchmarks/gpt.py): validation loss 1.90
    # with nanoGPT's lr 2e-3 and 100 warm-up steps, 1.81 with 20 warm-up steps, 1.74-1.77 at lr 4e-3 to
    # 1.6e-2 (Muon's steps are rescaled to AdamW's size, so the one lr serves both)
    train_defaults = {"lr": 1e-2, "batch_size": 32, "betas": (0.9, 0.99), "weight_decay": 0.1, "warmup_steps": 20,
                      "ema_decay": 0.0, "grad_clip": 1.0, "schedule": "cosine"}
    # at 128 wide, CPU bf16 autocast costs more than it saves: a training step at batch 32 took 220 ms
    # against 181 ms in fp32 (the plain recipe 150 against 106)
    auto_precision = {"cpu": "fp32"}
    likelihood = "exact"
    data_kinds = ("tokens",)
    sampling_inputs = (PROMPT,)

    def __init__(self, config: GPTConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        if config.recipe not in RECIPES:
            raise ArgumentError(f"recipe must be one of {', '.join(RECIPES)}, got {config.recipe!r}")
        filled = {k: v for k, v in RECIPES[config.recipe].items() if getattr(config, k) is None}
        self.config = config = replace(config, **filled)
        self.block_size = int(spec.extras.get("block_size", spec.shape[0] - 1))
        self.start_token = int(spec.extras.get("start_token", 0))
        self.net = TransformerDecoder(spec.vocab_size, config.dim, config.depth, config.heads, self.block_size,
                                      tie_weights=config.tie_weights, mlp_ratio=config.mlp_ratio, norm=config.norm,
                                      qk_norm=config.qk_norm, rotary=config.rotary, activation=config.activation,
                                      dropout=config.dropout)

    def forward(self, tokens: torch.Tensor, cache=None) -> torch.Tensor:
        """Next-token logits (B, T, vocab) for tokens (B, T)."""
        return self.net(tokens, cache=cache)

    # ------------------------------------------------------------------ training
    def optimizers(self) -> list[OptimizerSpec]:
        # hidden matrices decay (and take Muon's steps under that optimizer); embeddings and the head decay
        # but stay on AdamW; gains and biases never decay
        blocks = {id(p) for p in self.net.blocks.parameters()}
        matrices, embeddings, gains = [], [], []
        for p in self.parameters():
            if p.dim() < 2:
                gains.append(p)
            elif id(p) in blocks:
                matrices.append(p)
            else:
                embeddings.append(p)
        muon = self.config.optimizer == "muon"
        groups = [ParamGroup(matrices, name="matrices", muon=muon), ParamGroup(embeddings, name="embeddings"),
                  ParamGroup(gains, weight_decay=0.0, name="gains")]
        return [OptimizerSpec("model", [g for g in groups if g.params], kind=self.config.optimizer)]

    def _token_nll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token negative log-likelihood in nats (B, T) of x[:, 1:] given its past, and its weights."""
        x = batch[X]  # (B, T+1)
        return token_nll(self(x[:, :-1]), x[:, 1:], batch[X_MASK][:, 1:] if X_MASK in batch else None)

    def training_loss(self, batch, phase, step, generator):
        loss = weighted_mean(*self._token_nll(batch))
        return LossOutput(loss, {"loss": loss.detach()})

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None) -> torch.Tensor:
        """Exact negative log-likelihood of each window's predicted tokens, in bits per token (B,)."""
        return (weighted_mean(*self._token_nll(batch), dim=1) / math.log(2)).float()

    # ------------------------------------------------------------------ generation
    def sample_options(self, temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                       max_tokens: int | None = None, **given: Any) -> dict[str, Any]:
        return {"temperature": self.config.temperature if temperature is None else temperature,
                "top_k": self.config.top_k if top_k is None else top_k,
                "top_p": self.config.top_p if top_p is None else top_p,
                "max_tokens": self.data_shape[0] - 1 if max_tokens is None else max_tokens}

    def network_calls(self, **options: Any) -> int:
        return self.sample_options(**options)["max_tokens"]

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {"temperature 1": {}, "temperature 0.8, top-k 40": {"temperature": 0.8, "top_k": 40}}

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, temperature=None, top_k=None, top_p=None,
               max_tokens=None, cache: bool = True, **_) -> torch.Tensor:
        """n sequences (n, P + max_tokens): the prompt (conditions["prompt"], else the start token), then
        max_tokens generated tokens."""
        conditions = self.check_conditions(n, conditions)
        prompt = conditions.get(PROMPT)
        if prompt is None:
            prompt = torch.full((n, 1), self.start_token, dtype=torch.long, device=self.device)
        options = self.sample_options(temperature, top_k, top_p, max_tokens)
        steps = options.pop("max_tokens")
        new = list(self.generate(prompt.long(), steps, generator=generator, cache=cache, **options))
        return torch.cat([prompt.long(), *(t[:, None] for t in new)], dim=1)

    @torch.inference_mode()
    def generate(self, prompt: torch.Tensor, max_tokens: int, *, generator: torch.Generator | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 cache: bool = True) -> Iterator[torch.Tensor]:
        """Yield max_tokens next tokens (B,) one at a time after prompt (B, P), for streaming."""
        check_filters(temperature, top_k, top_p)
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ArgumentError("a prompt must hold at least one token per sequence")
        context = prompt[:, -self.block_size:]
        kv = self.net.new_cache() if cache else None
        logits = self(context, cache=kv)[:, -1]  # (B, V)
        keep = max(1, 3 * self.block_size // 4)  # tokens kept when a full cache is rebuilt
        for i in range(max_tokens):
            token = next_token(logits.float(), temperature, top_k, top_p, generator)  # (B,)
            yield token
            if i + 1 == max_tokens:
                return
            context = torch.cat([context, token[:, None]], dim=1)
            if not cache:
                context = context[:, -self.block_size:]
                logits = self(context)[:, -1]
            elif len(kv[0]) < self.block_size:
                logits = self(token[:, None], cache=kv)[:, -1]
            else:  # the window is full: start a new cache from its recent part
                context = context[:, -keep:]
                kv = self.net.new_cache()
                logits = self(context, cache=kv)[:, -1]


def check_filters(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if temperature < 0:
        raise ArgumentError(f"--temperature must be 0 (greedy) or more, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ArgumentError(f"--top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ArgumentError(f"--top-p must lie in (0, 1], got {top_p}")


def next_token(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
               generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of logits (B, V): greedy at temperature 0, else drawn after top-k and top-p."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token once the more likely ones already hold top_p; the most likely one always stays
        drop = cumulative - sorted_logits.softmax(-1) >= top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -math.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
