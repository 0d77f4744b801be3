"""`genlab.evaluate` on runs, .npz files, image folders, tensors and points; eval.json accumulates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genlab
from eval_fixtures import digits, eval_cache, tiny_features  # noqa: F401
from genlab.data.toy import sample_points
from genlab.eval.evaluate import evaluate_steps, read_entries, summary
from genlab.outputs import save_samples

FAST = dict(kid_subsets=5, likelihood_n=40)


def test_run_is_sampled_timed_measured_and_recorded(train_tiny, tiny_features, digits):
    run = train_tiny("vae", steps=3)
    e = genlab.evaluate(run.path, n=120, batch_size=50, features=tiny_features, **FAST)
    p = e["protocol"]
    assert (p["num_samples"], p["data"], p["sampler"], p["steps"], p["seed"]) == (120, "digits", "direct", 1, 0)
    assert p["features"] == "genlab-cnn/digits" and p["features_sha256"] == tiny_features.sha256
    assert p["reference_split"] == "train" and p["reference_size"] == len(digits.x_train)
    s = e["scores"]
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "class_entropy",
                "class_kl", "memorized_share", "bits_per_dim", "samples_per_sec"):
        assert np.isfinite(s[key]), key
    assert e["likelihood"]["kind"] == "bound" and e["likelihood"]["n"] == 40
    assert e["speed"]["batch_size"] == 50 and e["speed"]["batches_timed"] == 3
    assert e["run"]["model"] == "vae" and e["run"]["parameters"] > 0 and e["features"]["accuracy"] > 0.8
    assert len(e["class_histogram"]) == 10 and sum(e["class_histogram"]) == pytest.approx(1.0, abs=1e-5)  # 10 entries rounded to 1e-6
    assert (run.path / e["files"]["samples"]).exists() and (run.path / e["files"]["memorization"]).exists()
    genlab.evaluate(run.path, n=60, features=tiny_features, memorization=False, likelihood=False, **FAST)
    entries = read_entries(run.path / "eval.json")
    assert [x["protocol"]["num_samples"] for x in entries] == [120, 60]  # results accumulate
    assert "memorized_share" not in entries[1]["scores"] and "bits_per_dim" not in entries[1]["scores"]
    assert "FID" in summary(entries) and "accuracy" in summary(entries)


def test_steps_sweep_gives_one_entry_per_step_count(train_tiny, tiny_features):
    run = train_tiny("ddpm", steps=2)
    entries = evaluate_steps(run.path, n=40, sampler="ddim", steps=[2, 5], features=tiny_features, **FAST)
    assert [(e["protocol"]["sampler"], e["protocol"]["steps"]) for e in entries] == [("ddim", 2), ("ddim", 5)]
    assert entries[0]["scores"]["fid"] != entries[1]["scores"]["fid"]
    assert entries[0]["likelihood"] is entries[1]["likelihood"]  # measured once: it does not depend on steps
    assert entries[0]["scores"]["bits_per_dim"] == entries[1]["scores"]["bits_per_dim"]
    assert len(read_entries(run.path / "eval.json")) == 2


def test_evaluations_that_differ_only_in_eta_keep_their_own_sample_grids(train_tiny, tiny_features):
    run = train_tiny("ddpm", steps=2)
    grids = [genlab.evaluate(run.path, n=20, sampler="ddim", steps=2, eta=eta, features=tiny_features,
                             likelihood=False, memorization=False, **FAST)["files"]["samples"] for eta in (0.0, 1.0)]
    assert grids[0] != grids[1] and "eta1" in grids[1]
    assert all((run.path / g).exists() for g in grids)


def test_conditional_run_reports_accuracy_against_requested_classes(train_tiny, tiny_features):
    run = train_tiny("ddpm", steps=2, model_config={"base_channels": 8, "num_timesteps": 20}, condition="label")
    e = genlab.evaluate(run.path, n=30, sampler="ddim", steps=2, features=tiny_features, write=False, **FAST)
    assert 0 <= e["scores"]["conditional_accuracy"] <= 1


def test_npz_and_in_memory_samples_score_the_same(tmp_path, digits, tiny_features):
    x = (digits.x_val[:150] + 0.003).clamp(-1, 1)  # not on the 8-bit grid: both are rounded the same way
    labels = digits.y_val[:150]
    path = save_samples(x, tmp_path / "samples.npz", "image", labels=labels)
    from_file = genlab.evaluate(path, data="digits", features=tiny_features, **FAST)
    in_memory = genlab.evaluate(x, data="digits", labels=labels, features=tiny_features, write=False, **FAST)
    assert from_file["scores"] == in_memory["scores"]
    assert from_file["scores"]["conditional_accuracy"] > 0.8  # the labels in the file are the true classes
    assert from_file["speed"] is None and from_file["protocol"]["sampler"] is None
    assert (tmp_path / "samples.eval.json").exists() and from_file["kind"] == "npz"


def test_folder_of_images(tmp_path, digits, tiny_features):
    from PIL import Image

    from genlab.imageio import to_uint8

    for i, img in enumerate(to_uint8(digits.x_val[:40])):
        Image.fromarray(img[..., 0]).save(tmp_path / f"{i:03d}.png")
    e = genlab.evaluate(tmp_path, data="digits", features=tiny_features, **FAST)
    assert e["kind"] == "folder" and e["protocol"]["num_samples"] == 40 and e["scores"]["precision"] > 0.8
    assert json.loads((tmp_path / "eval.json").read_text())["entries"][0]["scores"] == e["scores"]


def test_points_use_coordinates_and_mode_coverage():
    x, _ = sample_points("8gaussians", 1000, np.random.default_rng(3))
    e = genlab.evaluate(torch.tensor(x, dtype=torch.float32), data="8gaussians", write=False, kid_subsets=5)
    assert e["protocol"]["features"] == "coordinates"
    assert e["scores"]["modes_covered"] == 8 and e["scores"]["high_quality_share"] > 0.95
    assert e["scores"]["precision"] > 0.9 and e["scores"]["fid"] < 0.01


def test_reference_statistics_are_cached(digits, tiny_features, eval_cache):
    genlab.evaluate(digits.x_val, data="digits", features=tiny_features, write=False, **FAST)
    cached = sorted(p.name for p in (eval_cache / "reference").iterdir())
    assert any(n.endswith("-radii-k5.safetensors") for n in cached)
    calls = []
    original = type(tiny_features).__call__
    type(tiny_features).__call__ = lambda self, x, batch_size=500: calls.append(len(x)) or original(self, x, batch_size)
    try:
        genlab.evaluate(digits.x_val, data="digits", features=tiny_features, write=False, **FAST)
    finally:
        type(tiny_features).__call__ = original
    assert calls == [len(digits.x_val)]  # only the samples went through the network, not the reference
