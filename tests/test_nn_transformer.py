"""genlab.nn.transformer: masking, KV cache, rotary, a tiny decoder that learns; SpatialSelfAttention unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.nn.attention import SpatialSelfAttention
from genlab.nn.transformer import (
    MLP, MultiHeadAttention, TransformerBlock, TransformerDecoder, TransformerEncoder, _RMSNorm, apply_rotary,
    attention, mean_pool,
)

V, DIM, DEPTH, HEADS, MAX_LEN = 11, 16, 2, 2, 16


def tokens(b: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (b, n), generator=torch.Generator().manual_seed(seed))


def encoder(**kw) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(V, DIM, DEPTH, HEADS, MAX_LEN, **kw).eval()


def decoder(**kw) -> TransformerDecoder:
    torch.manual_seed(0)
    return TransformerDecoder(V, DIM, DEPTH, HEADS, MAX_LEN, **kw).eval()


@pytest.mark.parametrize("activation,norm", [("gelu", "layer"), ("relu2", "rms"), ("swiglu", "rms")])
def test_shapes(activation, norm):
    x, mask = tokens(3, 7), torch.ones(3, 7, dtype=torch.bool)
    enc = encoder(activation=activation, norm=norm)
    assert enc(x, mask).shape == (3, 7, DIM)
    assert enc.pooled(x, mask).shape == (3, DIM)
    dec = decoder(cross_dim=DIM, activation=activation, norm=norm, qk_norm=True, rotary=True)
    assert dec(tokens(3, 5), context=enc(x, mask), context_mask=mask).shape == (3, 5, V)
    assert MLP(DIM, 24, activation)(torch.randn(2, 4, DIM)).shape == (2, 4, DIM)
    assert TransformerBlock(DIM, HEADS, cross_dim=8)(torch.randn(2, 4, DIM), context=torch.randn(2, 3, 8)).shape \
        == (2, 4, DIM)


def test_attention_masks_match_explicit_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 4, generator=g) for n in (3, 5, 5))  # 3 queries: the last of 5 positions
    mask = torch.tensor([[True, True, False, True, True], [False, False, False, True, True]])
    out = attention(q, k, v, mask, causal=True)
    allowed = torch.ones(3, 5, dtype=torch.bool).tril(2) & mask[:, None, None, :]
    scores = (q @ k.transpose(-1, -2) / 2).masked_fill(~allowed, float("-inf"))
    expected = torch.softmax(scores, -1).nan_to_num() @ v  # row 0 of batch 1 sees nothing: zeros
    torch.testing.assert_close(out, expected)
    assert out[1, :, 0].abs().max() == 0


def test_causal_masking():
    dec = decoder()
    x = tokens(2, 9)
    y = x.clone()
    y[:, 5] = (y[:, 5] + 1) % V
    a, b = dec(x), dec(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_padding_mask():
    enc = encoder(rotary=True)
    x = tokens(3, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [False] * 6])
    y = x.clone()
    y[1, 4:] = (y[1, 4:] + 1) % V
    y[2] = (y[2] + 1) % V
    a, b = enc(x, mask), enc(y, mask)
    torch.testing.assert_close(a[1, :4], b[1, :4])
    torch.testing.assert_close(enc.pooled(x, mask)[:2], enc.pooled(y, mask)[:2])
    assert a.isfinite().all() and b.isfinite().all()
    assert mean_pool(a, mask)[2].abs().max() == 0  # no real token: a zero vector, not NaN
    # left padding in a causal decoder leaves padded queries with no key at all
    left = torch.tensor([[False, False, True, True, True]])
    assert decoder()(tokens(1, 5), left).isfinite().all()


def test_cross_attention_uses_context_and_its_mask():
    dec = decoder(cross_dim=8)
    x = tokens(2, 5)
    g = torch.Generator().manual_seed(1)
    context, other = torch.randn(2, 4, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    assert not torch.allclose(dec(x, context=context), dec(x, context=other))
    padded_changed = torch.where(mask[..., None], context, other)
    torch.testing.assert_close(dec(x, context=context, context_mask=mask),
                               dec(x, context=padded_changed, context_mask=mask))
    with pytest.raises(ValueError, match="context"):
        dec(x)
    with pytest.raises(ValueError, match="context"):
        decoder()(x, context=context)


@pytest.mark.parametrize("rotary", [False, True])
def test_kv_cache_decoding_equals_full_forward(rotary):
    dec = decoder(cross_dim=8, rotary=rotary, qk_norm=True)
    x, context = tokens(2, 9), torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1))
    full = dec(x, context=context)
    cache, steps, start = dec.new_cache(), [], 0
    for size in (3, 1, 2, 1, 1, 1):  # a prompt, then single tokens and a chunk of two
        steps.append(dec(x[:, start:start + size], context=context, cache=cache))
        start += size
    assert len(cache[0]) == 9
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        dec(tokens(2, MAX_LEN), context=context, cache=cache)


def test_rotary_depends_on_relative_position_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 6, 8, generator=g), torch.randn(1, 2, 6, 8, generator=g)

    def scores(q_offset: int, k_offset: int) -> torch.Tensor:
        return apply_rotary(q, q_offset) @ apply_rotary(k, k_offset).transpose(-1, -2)

    torch.testing.assert_close(scores(0, 0), scores(7, 7), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores(2, 5), scores(10, 13), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scores(0, 0), scores(0, 3), atol=1e-3)
    # without positions self-attention is permutation-equivariant; rotary breaks that
    x, perm = torch.randn(1, 6, 8, generator=g), torch.tensor([3, 0, 5, 1, 4, 2])
    for rotary, equivariant in ((False, True), (True, False)):
        torch.manual_seed(0)
        attn = MultiHeadAttention(8, 2, rotary=rotary)
        assert torch.allclose(attn(x)[:, perm], attn(x[:, perm]), atol=1e-5) == equivariant


def test_tiny_decoder_learns_to_copy():
    # [a b c d SEP a b c d]: the second half is predictable only by attending back to the first
    n, sep = 4, V - 1
    torch.manual_seed(0)
    dec = TransformerDecoder(V, 32, 2, 2, 2 * n + 1, rotary=True, norm="rms", qk_norm=True, activation="relu2")
    opt = torch.optim.AdamW(dec.parameters(), lr=3e-3)
    g, losses = torch.Generator().manual_seed(0), []
    for _ in range(150):
        x = torch.randint(0, sep, (32, n), generator=g)
        seq = torch.cat([x, torch.full((32, 1), sep), x], 1)
        logits = dec(seq[:, :-1])[:, n:]  # predictions of the copied half
        loss = F.cross_entropy(logits.reshape(-1, V), seq[:, n + 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    assert losses[0] > 2.0 and max(losses[-10:]) < 0.2, (losses[0], losses[-10:])


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    enc = TransformerEncoder(V, DIM, DEPTH, HEADS, MAX_LEN, norm="rms", activation="swiglu")
    dec = TransformerDecoder(V, DIM, DEPTH, HEADS, MAX_LEN, cross_dim=DIM, tie_weights=True, qk_norm=True)
    assert dec.head.weight is dec.tokens.weight
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    logits = dec(tokens(2, 5), context=enc(tokens(2, 6), mask), context_mask=mask)
    F.cross_entropy(logits.reshape(-1, V), tokens(2, 5, seed=1).reshape(-1)).backward()
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rms_norm_fallback_matches_torch():
    x, ours, theirs = torch.randn(3, 8), _RMSNorm(8), nn.RMSNorm(8)
    torch.testing.assert_close(ours(x), theirs(x))
    assert ours.state_dict().keys() == theirs.state_dict().keys()


class _ReferenceSpatialSelfAttention(nn.Module):
    """SpatialSelfAttention as it was before the shared attention core, verbatim."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        y = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


def test_spatial_self_attention_loads_old_weights_and_gives_same_outputs():
    torch.manual_seed(0)
    old = _ReferenceSpatialSelfAttention(16)
    new = SpatialSelfAttention(16)
    new.load_state_dict(old.state_dict())  # strict: same parameter names and shapes
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(new(x), old(x), rtol=0, atol=1e-6)
