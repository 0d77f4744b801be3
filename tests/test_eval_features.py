"""The feature network: size-generic, trained once and cached with its accuracy and weights hash."""

from __future__ import annotations

import json

import pytest
import torch

import genlab.eval.features as features_module
from genlab.files import file_digest
from eval_fixtures import digits, eval_cache  # noqa: F401
from genlab.data import Dataset
from genlab.eval.features import (CNNFeatures, FeatureCNN, FeatureNetConfig, PointFeatures,
                                  load_or_train, quantize)

FAST = FeatureNetConfig(width=8, embed_dim=8, epochs=1, min_steps=80)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_cnn_takes_any_size_and_channel_count(shape):
    net = FeatureCNN(shape[0], shape[-1], 10, width=4, embed_dim=16).eval()
    f, logits = net(torch.zeros(3, *shape))
    assert f.shape == (3, 16) and logits.shape == (3, 10)


def test_trained_once_then_read_from_the_cache(digits, monkeypatch, eval_cache):
    first = load_or_train(digits, FAST)
    records = [json.loads(p.read_text()) for p in (eval_cache / "features").glob("digits-*.json")]
    record = next(r for r in records if r["config"]["embed_dim"] == FAST.embed_dim)
    weights = [p for p in (eval_cache / "features").glob("digits-*.safetensors") if file_digest(p) == first.sha256]
    assert record["weights_sha256"] == first.sha256 and len(weights) == 1
    assert 0.5 < first.accuracy <= 1 and record["accuracy"] == first.accuracy
    assert "validation split" in first.accuracy_note and first.num_classes == 10

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although cached")

    monkeypatch.setattr(features_module, "train_feature_net", no_training)
    again = load_or_train(digits, FAST)
    assert again.sha256 == first.sha256
    x = digits.x_val[:50]
    assert torch.equal(again(x)[0], first(x)[0])


def test_a_damaged_cache_file_is_retrained(digits, monkeypatch):
    fx = load_or_train(digits, FAST)
    weights = next(p for p in (features_module.cache_root() / "features").glob("digits-*.safetensors")
                   if file_digest(p) == fx.sha256)
    weights.write_bytes(weights.read_bytes()[:-10])
    calls = []
    real = features_module.train_feature_net
    monkeypatch.setattr(features_module, "train_feature_net", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert load_or_train(digits, FAST).sha256 == fx.sha256  # same seed, same data: the same weights again
    assert calls == [1]


def test_other_data_gets_its_own_network(digits):
    a = load_or_train(digits, FAST)
    shifted = Dataset("digits", digits.x_train.flip(-1), digits.y_train, digits.x_val.flip(-1), digits.y_val,
                      class_names=digits.class_names)
    assert load_or_train(shifted, FAST).sha256 != a.sha256


def test_unlabelled_images_train_on_rotations(digits):
    unlabelled = Dataset("digits-nolabels", digits.x_train, None, digits.x_val, None)
    fx = load_or_train(unlabelled, FAST)
    assert fx.meta["task"] == "rotation" and fx.num_classes == 0
    assert fx.accuracy > 0.4 and "rotation" in fx.accuracy_note  # chance is 0.25


def test_points_are_their_own_features():
    fx = PointFeatures(2)
    x = torch.randn(7, 2)
    f, logits = fx(x)
    assert torch.equal(f, x) and logits is None


def test_quantize_rounds_to_8_bits():
    x = torch.tensor([-1.2, -1.0, 0.0, 0.001, 0.5, 1.0])
    q = quantize(x)
    assert torch.allclose((q + 1) * 127.5, ((q + 1) * 127.5).round(), atol=1e-4)
    assert q[0] == -1 and q[-1] == 1 and abs(q[3] - q[2]) <= 1 / 127.5


def test_describe_names_the_yardstick(digits):
    d = load_or_train(digits, FAST).describe()
    assert d["name"] == "genlab-cnn/digits" and len(d["sha256"]) == 64 and d["dim"] == 8
    assert isinstance(CNNFeatures, type)
