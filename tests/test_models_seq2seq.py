"""seq2seq and number-words: the task's words, masking, cached and beam decoding, likelihood, learning, CLI."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import genlab
from genlab.apps.generate import translate_text
from genlab.batch import SOURCE, SOURCE_MASK, X, X_MASK
from genlab.config import from_dict
from genlab.data import load_data
from genlab.data.base import LoadOptions
from genlab.data.number_words import number_words
from genlab.models.autoregressive.seq2seq import Seq2Seq, Seq2SeqConfig

from conftest import TINY_TRAIN_OPTIONS, tiny_config

SMALL = {"max_digits": 2, "pairs": 2000}  # 0..99: targets of at most 14 characters


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(seed: int = 0, **changes) -> tuple[Seq2Seq, object]:
    data = load_data("number-words", LoadOptions(options=SMALL))
    torch.manual_seed(seed)
    return Seq2Seq(from_dict(Seq2SeqConfig, tiny_config("seq2seq", **changes), "seq2seq"), data.spec).eval(), data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "s2s"
    return genlab.train("seq2seq", "number-words", out=out, steps=400, progress=False, data_options=SMALL,
                        model_config=tiny_config("seq2seq", dim=32, encoder_depth=2, decoder_depth=2),
                        **{**TINY_TRAIN_OPTIONS, "batch_size": 32, "lr": 3e-3, "warmup_steps": 20, "log_every": 50})


@pytest.mark.parametrize("n, words", [(0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (21, "twenty-one"),
                                      (100, "one hundred"), (101, "one hundred one"),
                                      (1234, "one thousand two hundred thirty-four"), (1_000_000, "one million"),
                                      (1_000_010, "one million ten"),
                                      (999_999_999, "nine hundred ninety-nine million nine hundred ninety-nine "
                                                    "thousand nine hundred ninety-nine")])
def test_number_words(n, words):
    assert number_words(n) == words


def test_number_words_data_is_fixed_and_holds_every_longest_target():
    a, b = (load_data("number-words", LoadOptions(seed=s)) for s in (0, 0))
    assert torch.equal(a.validation()[X], b.validation()[X])
    assert a.spec.shape[0] == len(number_words(777_777)) + 2  # the longest six-digit number, BOS and EOS
    text = a.tokenizer.decode(a.validation(1)[X][0].tolist())
    assert text == number_words(int(a.tokenizer.decode(a.validation(1)[SOURCE][0].tolist())))


def test_decoder_is_causal_and_encoder_sees_the_whole_source():
    model, data = build()
    batch = data.validation(4)
    logits = model(batch[SOURCE], batch[SOURCE_MASK], batch[X][:, :-1])
    changed = batch[X].clone()
    changed[:, 5:] = 3
    later = model(batch[SOURCE], batch[SOURCE_MASK], changed[:, :-1])
    assert torch.allclose(logits[:, :5], later[:, :5], atol=1e-6)
    source = batch[SOURCE].clone()
    source[:, -1] = 5  # the last source position changes the first target position
    mask = torch.ones_like(batch[SOURCE_MASK])
    a = model(batch[SOURCE], mask, batch[X][:, :2])
    assert not torch.allclose(a[:, 0], model(source, mask, batch[X][:, :2])[:, 0])


def _greedy_without_cache(model, source, mask):
    seq = torch.full((len(source), 1), model.bos)
    for _ in range(model.data_shape[0] - 1):
        seq = torch.cat([seq, model(source, mask, seq)[:, -1].argmax(-1, keepdim=True)], 1)
    return seq


def test_cached_greedy_decoding_equals_decoding_without_the_cache():
    model, data = build()
    batch = data.validation(5)
    cached = model.sample(5, {SOURCE: batch[SOURCE], SOURCE_MASK: batch[SOURCE_MASK]}, decoding="greedy")
    plain = _greedy_without_cache(model, batch[SOURCE], batch[SOURCE_MASK])
    for c, p in zip(cached, plain):  # equal up to the first EOS, padding after it
        end = (c == model.eos).nonzero()
        stop = int(end[0]) + 1 if len(end) else len(c)
        assert torch.equal(c[:stop], p[:stop]) and (c[stop:] == model.pad).all()


def _log_prob(model, source, mask, seq) -> float:
    keep = torch.ones_like(seq, dtype=torch.bool)
    end = (seq == model.eos).nonzero()
    if len(end):
        keep[int(end[0]) + 1:] = False
    batch = {SOURCE: source[None], SOURCE_MASK: mask[None], X: seq[None], X_MASK: keep[None]}
    return -float(model.bits_per_dim(batch)[0]) * math.log(2) * (int(keep.sum()) - 1)


def test_beam_search_finds_at_least_as_likely_targets_as_greedy():
    model, data = build(length_penalty=0.0)
    batch = data.validation(6)
    cond = {SOURCE: batch[SOURCE], SOURCE_MASK: batch[SOURCE_MASK]}
    greedy = model.sample(6, cond, decoding="greedy")
    assert torch.equal(model.sample(6, cond, decoding="beam", beam_size=1), greedy)
    beam = model.sample(6, cond, decoding="beam", beam_size=4)
    for i in range(6):
        src, m = batch[SOURCE][i], batch[SOURCE_MASK][i]
        assert _log_prob(model, src, m, beam[i]) >= _log_prob(model, src, m, greedy[i]) - 1e-4


def test_likelihood_is_the_exact_sum_over_real_target_tokens():
    model, data = build()
    batch = data.validation(1)
    source, mask = batch[SOURCE], batch[SOURCE_MASK]
    for a, b in itertools.product(range(3, model.spec.vocab_size, 7), repeat=2):
        # BOS a b EOS, then two padding positions that must not count
        seq = torch.tensor([[model.bos, a, b, model.eos, model.pad, model.pad]])
        keep = torch.tensor([[True, True, True, True, False, False]])
        bits = float(model.bits_per_dim({SOURCE: source, SOURCE_MASK: mask, X: seq, X_MASK: keep})[0])
        with torch.no_grad():
            logp = model(source, mask, seq[:, :3])[0].log_softmax(-1)  # predictions of a, b and EOS
        by_hand = float(logp[0, a] + logp[1, b] + logp[2, model.eos])
        assert -bits * 3 * math.log(2) == pytest.approx(by_hand, rel=1e-4)


@pytest.mark.slow
def test_training_learns_to_spell_numbers(trained):
    model = trained.load_model()
    untrained, data = build()
    held_out = data.validation(100)
    assert float(model.bits_per_dim(held_out).mean()) < 0.3 * float(untrained.bits_per_dim(held_out).mean())
    numbers = [str(n) for n in range(0, 100, 7)]
    outputs = translate_text(trained, numbers, decoding="beam", beam_size=3)
    correct = sum(o == number_words(int(n)) for n, o in zip(numbers, outputs))
    assert correct >= 0.6 * len(numbers), list(zip(numbers, outputs))


@pytest.mark.slow
def test_cli_generate_translates_and_refuses_bad_input(trained, genlab_cli):
    ok = genlab_cli("generate", str(trained.path), "--input", "42", "--beam", "3")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == translate_text(trained, ["42"], decoding="beam", beam_size=3)[0]
    for args, message in ((["--input", "4$"], "does not know"), (["--input", "12345"], "at most 2"),
                          (["--input", "4", "--prompt", "a"], "not both")):
        bad = genlab_cli("generate", str(trained.path), *args)
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


@pytest.mark.slow
def test_eval_reports_likelihood_and_exact_targets(trained, genlab_cli):
    from genlab.eval.evaluate import evaluate

    entry = evaluate(trained, write=False)
    assert entry["kind"] == "heldout" and entry["scores"]["exact_match"] > 0.5, entry["scores"]
    untrained_loss = math.log(trained.spec.vocab_size)  # a uniform guess
    assert entry["scores"]["val_loss"] < 0.3 * untrained_loss
    shown = genlab_cli("eval", str(trained.path))
    assert shown.returncode == 0 and "exact targets" in shown.stdout and "validation loss" in shown.stdout, shown.stderr
