"""Held-out bits/dim for models with a likelihood, labelled exact or bound; none for GANs."""

from __future__ import annotations

from genlab.data import load_dataset
from genlab.eval.likelihood import held_out_bits_per_dim


def test_vae_gives_a_bound_and_gan_gives_none(train_tiny):
    val = load_dataset("digits").x_val
    vae = train_tiny("vae", steps=3).load_model(device="cpu")
    out = held_out_bits_per_dim(vae, val, n=50, batch_size=20)
    assert out["kind"] == "bound" and out["n"] == 50 and out["bits_per_dim"] > 0 and out["std_error"] > 0
    again = held_out_bits_per_dim(vae, val, n=50, batch_size=20)
    assert again["bits_per_dim"] == out["bits_per_dim"]  # seeded: reproducible
    gan = train_tiny("dcgan", steps=1).load_model(device="cpu")
    assert held_out_bits_per_dim(gan, val) is None


def test_point_data_without_a_likelihood_is_skipped_with_the_reason(train_tiny):
    vae = train_tiny("vae", steps=1, data="moons").load_model(device="cpu")
    out = held_out_bits_per_dim(vae, load_dataset("moons").x_val, n=10)
    assert out["kind"] == "bound" and "8-bit images" in out["skipped"]
