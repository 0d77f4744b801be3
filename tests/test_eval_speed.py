"""Timed sampling draws exactly the samples `Run.sample` draws, and reports its speed."""

from __future__ import annotations

import torch

from genlab.eval.speed import timed_sampling


def test_samples_match_run_sample_and_speed_is_reported(train_tiny):
    run = train_tiny("dcgan", steps=2)
    model = run.load_model(device="cpu")
    samples, speed = timed_sampling(model, 70, batch_size=32, seed=5)
    assert torch.equal(samples, run.sample(70, seed=5, batch_size=32, device="cpu"))  # warm-up left no trace
    assert speed["batches_timed"] == 3 and speed["batch_size"] == 32 and speed["warmup_batches"] == 1
    assert speed["samples_per_sec"] > 0 and 0 < speed["latency_per_batch_s"] <= speed["sampling_seconds"]
    assert speed["device"] == "cpu"


def test_diffusion_options_reach_the_sampler(train_tiny):
    run = train_tiny("ddpm", steps=2)
    model = run.load_model(device="cpu")
    a, fast = timed_sampling(model, 8, seed=1, options={"sampler": "ddim", "steps": 2}, warmup=0)
    b, slow = timed_sampling(model, 8, seed=1, options={"sampler": "ddim", "steps": 10}, warmup=0)
    assert fast["warmup_batches"] == 0 and not torch.equal(a, b)
    assert torch.equal(a, run.sample(8, seed=1, sampler="ddim", steps=2, device="cpu"))
