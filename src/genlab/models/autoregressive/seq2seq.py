"""Encoder-decoder transformer for text-to-text pairs (`pairs:PATH`, `number-words`).

Vaswani et al. 2017: a bidirectional encoder over the source, a causal decoder that cross-attends to
it, trained by next-token cross-entropy on the target (teacher forcing), pre-norm blocks (Xiong et al.
2020). Source and target share one tokenizer (data/sequences.py), so one embedding serves the encoder,
the decoder and the output layer (Press & Wolf 2017). Decoding: greedy, sampling with a temperature,
or beam search with the GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016), all with the
decoder's KV cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ...batch import SOURCE, SOURCE_MASK, X, X_MASK
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.distributions import token_nll, weighted_mean
from ...nn.transformer import TransformerDecoder, TransformerEncoder
from ...train.optim import OptimizerSpec, no_decay_groups
from ..base import GenerativeModel, LossOutput


@dataclass
class Seq2SeqConfig:
    dim: int = 128
    encoder_depth: int = 3
    decoder_depth: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    decoding: Literal["greedy", "beam", "sample"] = "greedy"
    beam_size: int = 4
    length_penalty: float = 0.6  # GNMT's alpha; 0 ranks beams by their summed log-probability
    temperature: float = 1.0  # decoding="sample" only


class Seq2Seq(GenerativeModel):
    family = "autoregressive"
    description = "encoder-decoder transformer for text pairs: greedy, sampled or beam-search decoding"
    config_class = Seq2SeqConfig
    train_defaults = {"lr": 1e-3, "batch_size": 64, "betas": (0.9, 0.98), "weight_decay": 0.01, "warmup_steps": 200,
                      "ema_decay": 0.0, "grad_clip": 1.0, "schedule": "cosine"}
    likelihood = "exact"
    data_kinds = ("tokens",)
    required_inputs = (SOURCE,)

    def __init__(self, config: Seq2SeqConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        if "bos_id" not in spec.extras:
            raise ArgumentError("seq2seq trains on paired sequences: --data pairs:FILE.tsv or --data number-words")
        self.pad, self.bos, self.eos = (int(spec.extras[k]) for k in ("pad_id", "bos_id", "eos_id"))
        self.source_length = int(spec.extras["source_length"])
        vocab = spec.vocab_size
        self.encoder = TransformerEncoder(vocab, config.dim, config.encoder_depth, config.heads, self.source_length,
                                          mlp_ratio=config.mlp_ratio, dropout=config.dropout)
        self.decoder = TransformerDecoder(vocab, config.dim, config.decoder_depth, config.heads, self.data_shape[0],
                                          cross_dim=config.dim, tie_weights=True, mlp_ratio=config.mlp_ratio,
                                          dropout=config.dropout)
        self.decoder.tokens = self.encoder.tokens  # one embedding for both sides (and, tied, the output layer)
        self.decoder.head.weight = self.encoder.tokens.weight

    def forward(self, source: torch.Tensor, source_mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, vocab) of target (B, T) given the source (B, S)."""
        memory = self.encoder(source, source_mask)  # (B, S, dim)
        return self.decoder(target, context=memory, context_mask=source_mask)

    def optimizers(self) -> list[OptimizerSpec]:
        return [OptimizerSpec("model", no_decay_groups(self))]

    # ------------------------------------------------------------------ training and likelihood
    def _token_nll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[X]  # (B, T): BOS target EOS PAD...
        return token_nll(self(batch[SOURCE], batch[SOURCE_MASK], x[:, :-1]), x[:, 1:], batch[X_MASK][:, 1:])

    def training_loss(self, batch, phase, step, generator):
        loss = weighted_mean(*self._token_nll(batch))
        return LossOutput(loss, {"loss": loss.detach()})

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None) -> torch.Tensor:
        """Exact -log2 p(target | source) per target token (EOS included), per pair (B,)."""
        return (weighted_mean(*self._token_nll(batch), dim=1) / math.log(2)).float()

    # ------------------------------------------------------------------ decoding
    def sample_options(self, decoding: str | None = None, beam_size: int | None = None,
                       temperature: float | None = None, **given: Any) -> dict[str, Any]:
        return {"decoding": decoding or self.config.decoding, "beam_size": beam_size or self.config.beam_size,
                "temperature": self.config.temperature if temperature is None else temperature}

    def network_calls(self, **options: Any) -> int:
        return self.data_shape[0] - 1

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {"greedy": {"decoding": "greedy"}, f"beam {self.config.beam_size}": {"decoding": "beam"}}

    def evaluation_conditions(self, n: int, real=None, **options: Any):
        if real is None or SOURCE not in real:
            raise ArgumentError("a seq2seq run is sampled from source sentences: give them with --input")
        return {SOURCE: real[SOURCE][:n], SOURCE_MASK: real[SOURCE_MASK][:n]}

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, decoding=None, beam_size=None, temperature=None,
               **_) -> torch.Tensor:
        """Targets (n, T) for conditions["source"] (n, S): BOS, the tokens, EOS, then padding."""
        conditions = self.check_conditions(n, conditions)
        if SOURCE not in conditions:
            raise ArgumentError("seq2seq needs the source to translate: conditions['source'] (--input TEXT)")
        source = conditions[SOURCE].long()
        mask = conditions.get(SOURCE_MASK, source != self.pad).bool()
        if source.shape[1] > self.source_length:
            raise ArgumentError(f"a source of {source.shape[1]} tokens is longer than this run's "
                                f"{self.source_length}; shorten it")
        options = self.sample_options(decoding, beam_size, temperature)
        if options["decoding"] not in ("greedy", "beam", "sample"):
            raise ArgumentError(f"decoding must be greedy, beam or sample, got {options['decoding']!r}")
        memory = self.encoder(source, mask)  # (n, S, dim)
        if options["decoding"] == "beam" and options["beam_size"] > 1:
            return self._beam_search(memory, mask, options["beam_size"])
        return self._decode(memory, mask, options["temperature"] if options["decoding"] == "sample" else 0.0, generator)

    def _decode(self, memory, mask, temperature: float, generator) -> torch.Tensor:
        n, length = memory.shape[0], self.data_shape[0]
        out = torch.full((n, length), self.pad, dtype=torch.long, device=memory.device)
        out[:, 0] = self.bos
        done = torch.zeros(n, dtype=torch.bool, device=memory.device)
        cache = self.decoder.new_cache()
        for t in range(1, length):
            logits = self.decoder(out[:, t - 1:t], context=memory, context_mask=mask, cache=cache)[:, -1].float()
            if temperature > 0:
                token = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
            else:
                token = logits.argmax(-1)
            out[:, t] = torch.where(done, self.pad, token)
            done = done | (token == self.eos)
        return out

    def _beam_search(self, memory, mask, beams: int) -> torch.Tensor:
        n, length, vocab = memory.shape[0], self.data_shape[0], self.spec.vocab_size
        device = memory.device
        memory, mask = memory.repeat_interleave(beams, 0), mask.repeat_interleave(beams, 0)  # (n*K, S, ...)
        seqs = torch.full((n * beams, length), self.pad, dtype=torch.long, device=device)
        seqs[:, 0] = self.bos
        scores = torch.full((n, beams), -math.inf, device=device)
        scores[:, 0] = 0.0  # one live beam to start: the others would only duplicate it
        done = torch.zeros(n * beams, dtype=torch.bool, device=device)
        lengths = torch.ones(n * beams, device=device)
        cache = self.decoder.new_cache()
        only_pad = torch.full((vocab,), -math.inf, device=device)
        only_pad[self.pad] = 0.0  # a finished beam continues with padding, at no cost
        for t in range(1, length):
            logp = self.decoder(seqs[:, t - 1:t], context=memory, context_mask=mask, cache=cache)[:, -1].float()
            logp = torch.where(done[:, None], only_pad, logp.log_softmax(-1))  # (n*K, V)
            total = (scores.view(-1, 1) + logp).view(n, beams * vocab)
            scores, flat = total.topk(beams, dim=-1)  # (n, K)
            parent = (flat // vocab + torch.arange(n, device=device)[:, None] * beams).view(-1)  # rows of n*K
            token = (flat % vocab).view(-1)
            seqs, done, lengths = seqs[parent], done[parent], lengths[parent]
            for layer in cache:
                layer.k, layer.v = layer.k[parent], layer.v[parent]
            seqs[:, t] = token
            lengths = lengths + (~done).float()
            done = done | (token == self.eos)
            if bool(done.all()):  # one host read a step: stops long before the padded length
                break
        penalty = ((5 + lengths.view(n, beams)) / 6) ** self.config.length_penalty
        best = (scores / penalty).argmax(-1) + torch.arange(n, device=device) * beams
        return seqs[best]
