"""Evaluation during training: scores in metrics.jsonl and a "best" checkpoint kept by FID."""

from __future__ import annotations

import json

from eval_fixtures import digits, eval_cache, tiny_features  # noqa: F401
from genlab.eval.training import make_training_evaluator, planned_train_config
from genlab.runs import TrainConfig
from genlab.train import checkpoint as ckpt


def test_planned_config_follows_options_and_overrides():
    cfg = planned_train_config("digits", None, ["train.eval_samples=77", "latent_dim=3"], batch_size=8)
    assert (cfg.data, cfg.eval_samples, cfg.batch_size) == ("digits", 77, 8)


def test_evaluator_scores_the_model_with_the_same_protocol_each_time(train_tiny, tiny_features):
    run = train_tiny("dcgan", steps=2)
    evaluator, best_key = make_training_evaluator(TrainConfig(data="digits", eval_samples=50), features=tiny_features)
    model = run.load_model(device="cpu")
    a, b = evaluator(model, 10), evaluator(model, 20)
    assert best_key == "fid" and a["fid"] == b["fid"] > 0  # same seed, same model: same score
    assert a["protocol"]["num_samples"] == 50 and a["protocol"]["features_sha256"] == tiny_features.sha256
    assert {"precision", "recall", "kid_mean", "class_entropy", "samples_per_sec"} <= set(a)
    assert not model.training


def test_training_logs_evaluations_and_keeps_the_best(train_tiny, tiny_features):
    evaluator, best_key = make_training_evaluator(TrainConfig(data="digits", eval_samples=40), features=tiny_features)
    run = train_tiny("vae", steps=4, eval_every=2, evaluator=evaluator, best_key=best_key)
    evals = [r for r in run.metrics() if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval"]["fid"] > 0 and r["eval"]["protocol"]["num_samples"] == 40 for r in evals)
    best = ckpt.resolve(run.checkpoints, "best")
    best_step = min(evals, key=lambda r: r["eval"]["fid"])["step"]
    assert json.loads((best / "meta.json").read_text())["step"] == best_step
