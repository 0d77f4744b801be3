"""GPT: causal masking, the KV cache, exact likelihood, sampling filters, Muon, tokenizers and the CLI."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

import genlab
from genlab.apps.generate import generate_text
from genlab.batch import PROMPT, X
from genlab.config import from_dict
from genlab.data import load_data
from genlab.data.base import LoadOptions
from genlab.errors import ArgumentError
from genlab.models.autoregressive.gpt import GPT, GPTConfig, check_filters, next_token
from genlab.runs import Run

from conftest import REPO_ROOT, TINY_TRAIN_OPTIONS, tiny_config

CORPUS = "".join(f"the {w} sat on the mat.\n" for w in ["cat", "dog", "bat", "rat", "owl"] * 40)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def build(corpus: Path, block_size: int = 16, seed: int = 0, **changes) -> tuple[GPT, object]:
    data = load_data(f"text:{corpus}", LoadOptions(options={"block_size": block_size}))
    torch.manual_seed(seed)
    config = from_dict(GPTConfig, tiny_config("gpt", **changes), "gpt")
    return GPT(config, data.spec), data


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("runs") / "gpt"
    return genlab.train("gpt", f"text:{corpus}", out=out, steps=80, progress=False, model_config=tiny_config("gpt"),
                        data_options={"block_size": 16}, **{**TINY_TRAIN_OPTIONS, "lr": 1e-2})


@pytest.mark.parametrize("recipe", ["fast", "plain"])
def test_outputs_at_a_position_depend_on_earlier_tokens_only(corpus, recipe):
    model, _ = build(corpus, recipe=recipe)
    model.eval()
    x = torch.randint(0, model.spec.vocab_size, (2, 12), generator=gen(0))
    changed = x.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % model.spec.vocab_size
    a, b = model(x), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6), "a later token changed an earlier position's logits"
    assert not torch.allclose(a[:, 7:], b[:, 7:]), "positions from 7 on ignore their own inputs"
    first = x.clone()
    first[:, 0] = (first[:, 0] + 1) % model.spec.vocab_size
    assert not torch.allclose(model(first)[:, -1], a[:, -1]), "the last position ignores the first token"


@pytest.mark.parametrize("recipe", ["fast", "plain"])
def test_cached_generation_equals_generation_without_the_cache(corpus, recipe):
    model, _ = build(corpus, recipe=recipe)
    model.eval()
    prompt = torch.randint(0, model.spec.vocab_size, (3, 4), generator=gen(1))
    # beyond the block size too: both then work on the recent window (the cache rebuilt from it)
    for steps in (10, 12):
        cached = torch.stack(list(model.generate(prompt, steps, generator=gen(2))), 1)
        plain = torch.stack(list(model.generate(prompt, steps, generator=gen(2), cache=False)), 1)
        assert torch.equal(cached, plain)
    # and the cached logits are those of a full forward pass
    kv = model.net.new_cache()
    seq = torch.randint(0, model.spec.vocab_size, (2, 10), generator=gen(3))
    step_logits = [model(seq[:, :4], cache=kv)[:, -1]] + [model(seq[:, i:i + 1], cache=kv)[:, -1] for i in range(4, 10)]
    assert torch.allclose(torch.stack(step_logits, 1), model(seq)[:, 3:], atol=1e-5)


def test_generation_past_the_block_size_keeps_going(corpus):
    model, _ = build(corpus, block_size=8)
    out = model.sample(2, generator=gen(0), max_tokens=30)
    assert out.shape == (2, 31) and out.dtype == torch.long


def test_likelihood_is_exact_probabilities_of_all_sequences_sum_to_one(corpus, tmp_path):
    tiny = tmp_path / "abc.txt"
    tiny.write_text("abcab" * 20, encoding="utf-8")
    data = load_data(f"text:{tiny}", LoadOptions(options={"block_size": 3}))
    torch.manual_seed(0)
    model = GPT(from_dict(GPTConfig, tiny_config("gpt"), "gpt"), data.spec).eval()
    vocab = data.spec.vocab_size  # 3
    # every window (start token, then 3 tokens): bits/token * 3 tokens = -log2 p(x1..x3 | x0)
    for start in range(vocab):
        windows = torch.tensor([[start, *rest] for rest in itertools.product(range(vocab), repeat=3)])
        bits = model.bits_per_dim({X: windows}) * 3
        assert abs(float((2.0 ** -bits.double()).sum()) - 1.0) < 1e-4
    # and one window by hand, token by token
    w = torch.tensor([[0, 1, 2, 0]])
    with torch.no_grad():
        logp = sum(float(model(w[:, : t + 1])[0, -1].log_softmax(-1)[w[0, t + 1]]) for t in range(3))
    assert float(model.bits_per_dim({X: w})[0]) == pytest.approx(-logp / 3 / math.log(2), rel=1e-4)


def test_training_beats_the_untrained_model_on_held_out_text(corpus, trained):
    model = trained.load_model()
    untrained, data = build(corpus)
    held_out = data.validation()
    assert float(model.bits_per_dim(held_out).mean()) < 0.5 * float(untrained.bits_per_dim(held_out).mean())


def test_filters_and_temperature():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).expand(500, 4)
    greedy = next_token(logits, 0.0, None, None, gen(0))
    assert torch.equal(greedy, torch.zeros(500, dtype=torch.long))
    assert torch.equal(next_token(logits, 1.0, 1, None, gen(0)), greedy)  # top-k 1 is greedy
    top2 = next_token(logits, 1.0, 2, None, gen(0))
    assert set(top2.tolist()) == {0, 1}
    # top-p 0.8: p = [0.64, 0.24, 0.09, 0.03]; 0 and 1 hold 0.88 >= 0.8, so only they remain
    assert set(next_token(logits, 1.0, None, 0.8, gen(0)).tolist()) == {0, 1}
    assert set(next_token(logits, 1.0, None, 0.5, gen(0)).tolist()) == {0}
    hot = next_token(logits, 100.0, None, None, gen(0))
    assert len(set(hot.tolist())) == 4  # a high temperature flattens the distribution
    with pytest.raises(ArgumentError, match="top-p"):
        check_filters(1.0, None, 1.5)


def test_muon_steps_the_hidden_matrices_and_adamw_the_rest(corpus):
    from genlab.train.optim import Defaults, build as build_optimizer

    model, _ = build(corpus)
    (spec,) = model.optimizers()
    built = build_optimizer(spec, Defaults(1e-3, (0.9, 0.99), 0.1, 0, 1.0))
    muon, adamw = built.optimizer.parts["muon"], built.optimizer.parts["adamw"]
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    assert in_muon and all(p.dim() == 2 for g in muon.param_groups for p in g["params"])
    assert id(model.net.tokens.weight) not in in_muon and id(model.net.head.weight) not in in_muon
    assert len(built.base_lrs) == len(built.optimizer.param_groups)
    plain, _ = build(corpus, recipe="plain")
    assert plain.optimizers()[0].kind == "adamw" and plain.net.positions is not None


def test_float32_muon_takes_torchs_steps_without_bfloat16():
    from genlab.train.optim import Float32Muon, orthogonalise

    torch.manual_seed(0)
    update = torch.randn(48, 16)
    ortho = orthogonalise(update, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert ortho.dtype == torch.float32 and ortho.shape == update.shape
    singular = torch.linalg.svdvals(ortho)
    assert singular.min() > 0.5 and singular.max() < 1.5  # near-orthogonal, as Muon's quintic leaves it
    # the same singular vectors as the update: its projection onto them is diagonal
    u, _, vh = torch.linalg.svd(update, full_matrices=False)
    core = u.T @ ortho @ vh.T
    assert (core - torch.diag(torch.diagonal(core))).abs().max() < 1e-3
    # two steps against torch's own Muon (bfloat16 iterations): the same updates to bfloat16's precision
    start = [torch.randn(32, 16), torch.randn(16, 16)]
    grads = [torch.randn_like(w) for w in start]
    steps = []
    for kind in (torch.optim.Muon, Float32Muon):
        params = [torch.nn.Parameter(w.clone()) for w in start]
        opt = kind(params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
        for _ in range(2):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        steps.append([p.detach() - w for p, w in zip(params, start)])
        assert set(opt.state[params[0]]) == {"momentum_buffer"}  # checkpoints interchange
    for ours, theirs in zip(steps[1], steps[0]):
        assert ours.abs().max() > 0.01 and (ours - theirs).abs().max() < 0.05 * ours.abs().max()


def test_run_keeps_its_tokenizer_and_resumes_exactly(corpus, tmp_path):
    # total_steps fixed: the cosine schedule's length would otherwise follow each call's --steps budget
    common = dict(progress=False, model_config=tiny_config("gpt"), data_options={"block_size": 16}, total_steps=6,
                  **{**TINY_TRAIN_OPTIONS, "lr": 1e-2})
    whole = genlab.train("gpt", f"text:{corpus}", out=tmp_path / "whole", steps=6, **common)
    genlab.train("gpt", f"text:{corpus}", out=tmp_path / "split", steps=3, **common)
    split = genlab.train(resume=tmp_path / "split", steps=6, progress=False)
    a, b = whole.load_model(), split.load_model()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    from genlab.data.text import tokenizer_from_assets

    tokenizer = tokenizer_from_assets(whole.assets())
    assert tokenizer.decode(tokenizer.encode(CORPUS[:200])) == CORPUS[:200]


def test_generate_respects_max_tokens_stop_strings_and_seeds(trained):
    a = generate_text(trained, "the ", max_tokens=40, seed=3)
    assert a.tokens == 40 and a.stopped_by is None
    assert generate_text(trained, "the ", max_tokens=40, seed=3).text == a.text
    assert generate_text(trained, "the ", max_tokens=40, seed=4).text != a.text or a.text == ""
    pieces = []
    stopped = generate_text(trained, "the ", max_tokens=200, stop=["."], seed=3, stream=pieces.append)
    assert stopped.stopped_by == "." and "." not in stopped.text and stopped.tokens < 200
    assert "".join(pieces) == stopped.text
    greedy = generate_text(trained, "the cat sat on the", max_tokens=5, temperature=0)
    assert greedy.text == " mat."  # learnt from the corpus
    with pytest.raises(ArgumentError, match="does not know"):
        generate_text(trained, "the cat @", max_tokens=5)


def test_cli_generate_and_sample_with_a_prompt(trained, genlab_cli, tmp_path):
    cli = genlab_cli
    result = cli("generate", str(trained.path), "--prompt", "the", "--max-tokens", "30", "--stop", "\n",
                 "--out", str(tmp_path / "g.txt"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("the") and "tokens/s" in result.stderr
    assert (tmp_path / "g.txt").read_text().startswith("the")
    result = cli("sample", str(trained.path), "-n", "3", "--prompt", "the dog", "--out", str(tmp_path / "s.txt"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s.txt").read_text().count("the dog") >= 3
    bad = cli("generate", str(trained.path), "--top-p", "2")
    assert bad.returncode != 0 and "--top-p" in bad.stderr and "Traceback" not in bad.stderr


def test_shakespeare_needs_its_file_and_names_the_fix(tmp_path):
    from genlab.errors import DataError

    with pytest.raises(DataError, match="--data-dir"):
        load_data("shakespeare", LoadOptions(data_dir=tmp_path))
    shared = (REPO_ROOT / ".." / "shared" / "data" / "tinyshakespeare").resolve()
    if not (shared / "input.txt").is_file():
        pytest.skip(f"Tiny Shakespeare not found at {shared}")
    data = load_data("shakespeare", LoadOptions(data_dir=shared, options={"block_size": 64}))
    assert data.spec.vocab_size == 65 and len(data.train_tokens) + len(data.val_tokens) == 1115394


def test_heldout_evaluator_reports_the_mean_validation_loss(corpus, trained):
    from genlab.eval.heldout import heldout_evaluator

    model = trained.load_model()
    data = load_data(f"text:{corpus}", LoadOptions(options={"block_size": 16}))
    scores = heldout_evaluator(data, batch_size=5)(model, 0)
    x = data.validation()[X]
    with torch.no_grad():
        logits = model(x[:, :-1])
        direct = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()))
    assert scores["val_loss"] == pytest.approx(direct, rel=1e-4)
    assert scores["perplexity"] == pytest.approx(math.exp(direct), rel=1e-3)
    assert scores["bits_per_char"] == pytest.approx(scores["bits_per_token"])  # one character per token


def test_tied_weights_survive_a_checkpoint(corpus, tmp_path):
    run = genlab.train("gpt", f"text:{corpus}", out=tmp_path / "tied", steps=3, progress=False,
                       model_config=tiny_config("gpt", tie_weights=True), data_options={"block_size": 16},
                       **TINY_TRAIN_OPTIONS)
    model = run.load_model()
    assert model.net.head.weight is model.net.tokens.weight  # still one tensor after loading
    trained = Run(run.path).load_model(ema=False)
    assert torch.equal(trained.net.head.weight, trained.net.tokens.weight)


def test_eval_of_a_language_model_run_reports_its_held_out_loss(corpus, trained):
    from genlab.eval.evaluate import evaluate
    from genlab.eval.heldout import heldout_evaluator

    entry = evaluate(trained, write=False)
    data = load_data(f"text:{corpus}", LoadOptions(options={"block_size": 16}))
    expected = heldout_evaluator(data)(trained.load_model(), 0)
    assert entry["kind"] == "heldout" and entry["scores"]["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-5)
    assert entry["scores"]["tokens_per_sec"] > 0


def test_bpe_runs_generate_whole_characters(tmp_path):
    # byte-level BPE tokens can end inside a UTF-8 character: the stream waits for its next byte, so the
    # pieces shown add up to the decoded text (a half-trained model may still emit invalid bytes, which
    # decode to U+FFFD in both)
    text = "".join(f"café {w} naïve über {w}.\n" for w in ["rose", "lily", "iris"] * 60)
    path = tmp_path / "accents.txt"
    path.write_text(text, encoding="utf-8")
    run = genlab.train("gpt", f"text:{path}", out=tmp_path / "bpe", steps=40, progress=False,
                       model_config=tiny_config("gpt"), data_options={"block_size": 16, "tokenizer": "bpe",
                                                                      "vocab_size": 300},
                       **{**TINY_TRAIN_OPTIONS, "lr": 1e-2})
    pieces = []
    out = generate_text(run, "café", max_tokens=30, seed=0, stream=pieces.append)
    assert "".join(pieces) == out.text and out.tokens == 30
    assert not out.text.endswith("\ufffd")  # never half a character at the end
    entry = genlab.evaluate(run.path, write=False)
    assert entry["scores"]["bits_per_char"] < entry["scores"]["bits_per_token"]  # a token spans several characters
