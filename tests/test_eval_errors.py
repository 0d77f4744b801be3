"""Bad input gets a GenlabError that names the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genlab
from eval_fixtures import digits, eval_cache, tiny_features  # noqa: F401
from genlab.api import data_info
from genlab.errors import EvalInputError, GenlabError
from genlab.runs import Run, TrainConfig, model_config_from


@pytest.mark.parametrize("shape,match", [
    ((10, 1, 16, 16), r"shape \(1, 16, 16\).*Resize the samples"),
    ((10, 3, 8, 8), r"3 channel\(s\) but digits images have 1.*grayscale"),
    ((0, 1, 8, 8), "no samples to evaluate"),
    ((10, 64), r"shape \(64,\)"),
])
def test_samples_that_do_not_fit_the_data(tiny_features, shape, match):
    with pytest.raises(EvalInputError, match=match):
        genlab.evaluate(torch.zeros(shape), data="digits", features=tiny_features, write=False)


def test_nan_samples_are_counted_and_refused(tiny_features):
    x = torch.zeros(20, 1, 8, 8)
    x[[3, 7], 0, 2, 2] = float("nan")
    x[9, 0, 0, 0] = float("inf")
    with pytest.raises(EvalInputError, match="3 of 20 samples contain NaN or infinite values.*earlier checkpoint"):
        genlab.evaluate(x, data="digits", features=tiny_features, write=False)


def test_integer_or_out_of_range_samples_are_refused(tiny_features):
    with pytest.raises(EvalInputError, match=r"floats .* x.float\(\) / 127.5 - 1"):
        genlab.evaluate(torch.zeros(5, 1, 8, 8, dtype=torch.uint8), data="digits", features=tiny_features, write=False)
    with pytest.raises(EvalInputError, match=r"must lie in \[-1, 1\], these span \[0, 255\]"):
        genlab.evaluate(torch.linspace(0, 255, 320).reshape(5, 1, 8, 8), data="digits", features=tiny_features, write=False)


def test_feature_network_refuses_other_sizes(tiny_features):
    with pytest.raises(EvalInputError, match=r"do not fit the feature network 'genlab-cnn/digits'.*--image-size 28"):
        tiny_features(torch.zeros(2, 1, 28, 28))


def test_run_without_checkpoints(tmp_path, digits):
    run = Run.create(tmp_path / "empty-run", "vae", model_config_from("vae"), TrainConfig(), data_info(digits))
    with pytest.raises(EvalInputError, match="no checkpoint to evaluate: train it first.*--resume"):
        genlab.evaluate(run.path, n=10)


def test_arrays_need_the_data_named(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, images=np.zeros((4, 8, 8, 1), np.uint8))
    with pytest.raises(EvalInputError, match="--data NAME"):
        genlab.evaluate(path)
    with pytest.raises(EvalInputError, match="--steps and --sampler apply to runs"):
        genlab.evaluate(path, data="digits", steps=10)


def test_not_a_source(tmp_path):
    with pytest.raises(EvalInputError, match="neither a run directory"):
        genlab.evaluate(tmp_path / "missing", data="digits")


def test_missing_inception_weights_are_never_downloaded(tmp_path, digits):
    with pytest.raises(EvalInputError, match="does not exist. genlab never downloads weights.*pt_inception-2015-12-05"):
        genlab.evaluate(digits.x_val, data="digits", features=str(tmp_path / "pt_inception.pth"), write=False)


def test_every_eval_error_is_a_genlab_error():
    assert issubclass(EvalInputError, GenlabError)


def test_steps_for_a_one_pass_model(train_tiny, tiny_features):
    run = train_tiny("dcgan", steps=1)
    with pytest.raises(EvalInputError, match="dcgan samples in one pass"):
        genlab.evaluate(run.path, n=10, steps=20, features=tiny_features, write=False)
