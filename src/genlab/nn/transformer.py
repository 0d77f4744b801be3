"""One transformer for every family: GPT, encoder-decoder, caption encoders and the UNet's attention.

Vaswani et al. 2017 (attention, encoder-decoder); Radford et al. 2019 (GPT-2: pre-norm blocks, 0.02
init, residual projections scaled by 1/sqrt(2 * depth)); Su et al. 2021 (RoPE, rotary position
embeddings); Henry et al. 2020 / Dehghani et al. 2023 (QK-norm); Shazeer 2020 (SwiGLU);
So et al. 2021 (Primer: squared ReLU); Zhang & Sennrich 2019 (RMSNorm).

Every attention goes through `attention`, a thin wrapper around
`torch.nn.functional.scaled_dot_product_attention` that owns the masking rules. Masks are bool with
True for a real token.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["gelu", "relu2", "swiglu"]
Norm = Literal["layer", "rms"]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              causal: bool = False, dropout: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention with key-padding and causal masks.

    Args:
        q: Queries (B, H, T, D).
        k: Keys (B, H, S, D).
        v: Values (B, H, S, D).
        mask: Key-padding mask (B, S), True for real keys.
        causal: Queries are the last T of the S key positions (as when decoding with a KV cache) and
            each one sees only keys at or before its own position.
        dropout: Dropout probability on the attention weights.

    Returns:
        (B, H, T, D). A query with no key to attend to gets zeros, never NaN.
    """
    t, s = q.shape[-2], k.shape[-2]
    causal = causal and t > 1  # a single query at the last position sees every key anyway
    if mask is None and not (causal and t != s):
        # SDPA's own causal mask is aligned top-left: right only when queries and keys are the same positions
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)
    allowed = torch.ones(t, s, dtype=torch.bool, device=q.device)
    if causal:
        allowed = allowed.tril(s - t)  # (T, S), aligned bottom-right
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]  # (B, 1, T, S)
    # softmax over no keys at all is NaN: let such rows see everything, then zero them
    alive = allowed.any(-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | ~alive, dropout_p=dropout)
    return out * alive


def apply_rotary(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """Rotate channel pairs of x (B, H, T, D) by angles proportional to their positions offset..offset+T-1.

    After rotating both q and k, q_i . k_j depends on positions only through i - j.
    """
    half = x.shape[-1] // 2
    inv_freq = base ** -(torch.arange(half, device=x.device, dtype=torch.float32) / half)
    pos = torch.arange(offset, offset + x.shape[-2], device=x.device, dtype=torch.float32)
    angles = pos[:, None] * inv_freq  # (T, D/2), in float32 so that long positions keep their precision
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.float().chunk(2, dim=-1)  # GPT-NeoX pairing: channel i with channel i + D/2
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class _RMSNorm(nn.Module):
    """Fallback for torch < 2.4, with the same parameter name as nn.RMSNorm so checkpoints carry over."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + torch.finfo(x.dtype).eps) * self.weight


if hasattr(nn, "RMSNorm"):
    class _CastRMSNorm(nn.RMSNorm):
        """nn.RMSNorm with its gain in the input's dtype: under bf16 autocast (which leaves rms_norm alone)
        a float32 gain on bf16 activations misses the fused kernel."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weight = None if self.weight is None else self.weight.to(x.dtype)
            return F.rms_norm(x, self.normalized_shape, weight, self.eps)


def make_norm(kind: Norm, dim: int) -> nn.Module:
    """LayerNorm or RMSNorm over the last dimension."""
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "rms":
        return _CastRMSNorm(dim) if hasattr(nn, "RMSNorm") else _RMSNorm(dim)
    raise ValueError(f"unknown norm '{kind}': use 'layer' or 'rms'")


class KVCache:
    """The keys and values one self-attention layer has seen so far, (B, H, S, D) each."""

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # concatenating copies the cache every step; preallocating would not, but at our lengths it is noise
        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)
        return self.k, self.v


class MultiHeadAttention(nn.Module):
    """Self-attention over x, or cross-attention from x to a context when one is given."""

    def __init__(self, dim: int, heads: int, *, cross_dim: int | None = None, qk_norm: bool = False,
                 rotary: bool = False, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % heads or (rotary and (dim // heads) % 2):
            raise ValueError(f"dim {dim} must split into {heads} heads (of even size with rotary)")
        self.heads, self.rotary, self.dropout = heads, rotary, dropout
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(cross_dim or dim, 2 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.q_norm = make_norm("rms", dim // heads) if qk_norm else nn.Identity()
        self.k_norm = make_norm("rms", dim // heads) if qk_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                cache: KVCache | None = None, *, context: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from x (B, T, dim) to itself or to context (B, S, cross_dim).

        Args:
            x: Queries (B, T, dim); also keys and values without context.
            mask: Key-padding mask (B, S), True for real keys: over context, or over the cached and new
                positions of x in self-attention.
            causal: Self-attention only: each position sees itself and earlier ones.
            cache: Self-attention only: past keys and values, extended with those of x. Rotary positions
                continue from its length.
            context: Keys and values for cross-attention (B, S, cross_dim).

        Returns:
            (B, T, dim).
        """
        b, t, _ = x.shape
        source = x if context is None else context
        q = self.q(x).view(b, t, self.heads, -1).transpose(1, 2)  # (B, H, T, D)
        kv = self.kv(source).view(b, source.shape[1], 2, self.heads, -1)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, S, D) each
        q, k = self.q_norm(q), self.k_norm(k)  # bounded attention logits whatever the activations' scale
        if context is None:  # rotary only here: query and context positions are unrelated
            offset = 0 if cache is None else len(cache)
            if self.rotary:
                q, k = apply_rotary(q, offset), apply_rotary(k, offset)
            if cache is not None:
                k, v = cache.append(k, v)
        elif causal or cache is not None:
            raise ValueError("cross-attention takes neither causal nor a cache")
        y = attention(q, k, v, mask, causal, self.dropout if self.training else 0.0)
        return self.drop(self.out(y.transpose(1, 2).reshape(b, t, -1)))  # (B, T, dim)


class MLP(nn.Module):
    """Position-wise feed-forward network: dim -> hidden -> dim."""

    def __init__(self, dim: int, hidden: int, activation: Activation = "gelu", dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        if activation not in ("gelu", "relu2", "swiglu"):
            raise ValueError(f"unknown activation '{activation}': use 'gelu', 'relu2' or 'swiglu'")
        self.activation = activation
        self.up = nn.Linear(dim, 2 * hidden if activation == "swiglu" else hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.activation == "swiglu":
            value, gate = h.chunk(2, dim=-1)
            h = value * F.silu(gate)
        elif self.activation == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h)
        return self.drop(self.down(h))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: self-attention, cross-attention (when cross_dim is given), MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4, *, causal: bool = False,
                 cross_dim: int | None = None, norm: Norm = "layer", qk_norm: bool = False, rotary: bool = False,
                 activation: Activation = "gelu", dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.causal = causal
        self.norm1 = make_norm(norm, dim)
        self.attn = MultiHeadAttention(dim, heads, qk_norm=qk_norm, rotary=rotary, dropout=dropout, bias=bias)
        self.cross = None
        if cross_dim is not None:
            self.norm_cross = make_norm(norm, dim)
            self.cross = MultiHeadAttention(dim, heads, cross_dim=cross_dim, qk_norm=qk_norm, dropout=dropout,
                                            bias=bias)
        hidden = int(mlp_ratio * dim)
        if activation == "swiglu":
            hidden = 2 * hidden // 3  # three matrices instead of two: keep the parameter count (Shazeer 2020)
        self.norm2 = make_norm(norm, dim)
        self.mlp = MLP(dim, hidden, activation, dropout, bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, dim) -> (B, T, dim); masks as in `MultiHeadAttention`."""
        x = x + self.attn(self.norm1(x), mask=mask, causal=self.causal, cache=cache)
        if (context is None) != (self.cross is None):
            raise ValueError("pass a context exactly when the block has cross-attention (cross_dim)")
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), context=context, mask=context_mask)
        return x + self.mlp(self.norm2(x))


def mean_pool(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of x (B, L, C) over its real tokens -> (B, C); zeros for a row without any."""
    if mask is None:
        return x.mean(1)
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)


class _TokenTransformer(nn.Module):
    """Token embedding, learned positions (or rotary in every block), blocks, final norm."""

    def __init__(self, vocab_size: int, dim: int, depth: int, heads: int, max_len: int, *, causal: bool,
                 cross_dim: int | None = None, mlp_ratio: float = 4, norm: Norm = "layer", qk_norm: bool = False,
                 rotary: bool = False, activation: Activation = "gelu", dropout: float = 0.0):
        super().__init__()
        self.max_len = max_len
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = None if rotary else nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([
            TransformerBlock(dim, heads, mlp_ratio, causal=causal, cross_dim=cross_dim, norm=norm, qk_norm=qk_norm,
                             rotary=rotary, activation=activation, dropout=dropout)
            for _ in range(depth)
        ])
        self.norm = make_norm(norm, dim)
        self.apply(_init_weights)
        for block in self.blocks:  # the residual stream sums 2 * depth branches: keep its variance flat (GPT-2)
            for proj in (block.attn.out, block.mlp.down) + ((block.cross.out,) if block.cross else ()):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * depth))

    def _hidden(self, tokens: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor | None,
                context_mask: torch.Tensor | None, cache: list[KVCache] | None) -> torch.Tensor:
        offset = 0 if cache is None else len(cache[0])
        if offset + tokens.shape[1] > self.max_len:
            raise ValueError(f"{offset + tokens.shape[1]} positions exceed max_len={self.max_len}")
        h = self.tokens(tokens)  # (B, L, dim)
        if self.positions is not None:
            h = h + self.positions(torch.arange(offset, offset + tokens.shape[1], device=tokens.device))
        h = self.drop(h)
        for i, block in enumerate(self.blocks):
            h = block(h, mask, context, context_mask, None if cache is None else cache[i])
        return self.norm(h)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class TransformerEncoder(_TokenTransformer):
    """Bidirectional encoder: tokens (B, L) -> hidden states (B, L, dim); `mean_pool` gives one vector per row."""

    def __init__(self, vocab_size: int, dim: int, depth: int, heads: int, max_len: int, *, mlp_ratio: float = 4,
                 norm: Norm = "layer", qk_norm: bool = False, rotary: bool = False, activation: Activation = "gelu",
                 dropout: float = 0.0):
        super().__init__(vocab_size, dim, depth, heads, max_len, causal=False, mlp_ratio=mlp_ratio, norm=norm,
                         qk_norm=qk_norm, rotary=rotary, activation=activation, dropout=dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode tokens (B, L) with padding mask (B, L) (True = real token) into (B, L, dim)."""
        return self._hidden(tokens, mask, None, None, None)

    def pooled(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mean hidden state over real tokens (B, dim): a caption embedding."""
        return mean_pool(self(tokens, mask), mask)


class TransformerDecoder(_TokenTransformer):
    """Causal decoder, optionally cross-attending to an encoder's output: tokens (B, T) -> logits (B, T, vocab)."""

    def __init__(self, vocab_size: int, dim: int, depth: int, heads: int, max_len: int, *,
                 cross_dim: int | None = None, tie_weights: bool = False, mlp_ratio: float = 4, norm: Norm = "layer",
                 qk_norm: bool = False, rotary: bool = False, activation: Activation = "gelu", dropout: float = 0.0):
        super().__init__(vocab_size, dim, depth, heads, max_len, causal=True, cross_dim=cross_dim,
                         mlp_ratio=mlp_ratio, norm=norm, qk_norm=qk_norm, rotary=rotary, activation=activation,
                         dropout=dropout)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.tokens.weight
        else:
            nn.init.normal_(self.head.weight, std=0.02)

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache, one entry per block, for `forward(..., cache=)`."""
        return [KVCache() for _ in self.blocks]

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, cache: list[KVCache] | None = None) -> torch.Tensor:
        """Next-token logits (B, T, vocab) for every position of tokens (B, T).

        Args:
            tokens: Token ids (B, T). With a cache, only the new ones (e.g. the last sampled token).
            mask: Padding mask (B, T) over the tokens, or (B, cached + T) with a cache; True = real.
            context: Encoder output (B, S, cross_dim), required when built with cross_dim.
            context_mask: Padding mask of the context (B, S).
            cache: From `new_cache()`; extended in place, positions continue from its length.

        Returns:
            Logits (B, T, vocab_size).
        """
        return self.head(self._hidden(tokens, mask, context, context_mask, cache))
