"""The real-vs-generated detector: its AUC, and scoring images with a saved detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from eval_fixtures import digits, eval_cache  # noqa: F401
from genlab.errors import EvalInputError
from genlab.eval.detect import detect, detect_source, load_detector, roc_auc, score
from genlab.eval.evaluate import read_images


def test_roc_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    labels = rng.integers(0, 2, 300)
    assert roc_auc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(roc_auc_score(labels, scores))
    assert roc_auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1])) == 1.0
    with pytest.raises(EvalInputError, match="both"):
        roc_auc(torch.rand(4), torch.ones(4))


def test_detect_a_run_save_the_detector_and_score_a_folder(train_tiny, tmp_path, digits):
    from PIL import Image

    from genlab.imageio import to_uint8

    run = train_tiny("dcgan", steps=1)
    entry = detect_source(run.path, n=120, epochs=2)
    assert entry["auc"] > 0.9  # one training step: blobs, easy to tell from digits
    assert entry["n_train_per_class"] + entry["n_test_per_class"] == 120
    assert (run.path / entry["files"]["most_fake"]).exists()
    net, meta = load_detector(run.path / entry["files"]["detector"])
    assert meta["input_shape"] == [1, 8, 8] and meta["auc"] == entry["auc"]
    folder = tmp_path / "to-score"
    folder.mkdir()
    for i, img in enumerate(to_uint8(run.sample(5, seed=9))):
        Image.fromarray(img[..., 0]).save(folder / f"fake{i}.png")
    for i, img in enumerate(to_uint8(digits.x_val[:5])):
        Image.fromarray(img[..., 0]).convert("RGB").save(folder / f"real{i}.png")  # RGB: converted to the detector's gray
    names, x = read_images(folder, (1, 8, 8))
    p = dict(zip(names, score(net, x).tolist()))
    assert min(p[f"fake{i}.png"] for i in range(5)) > max(p[f"real{i}.png"] for i in range(5))


def test_detect_needs_matching_shapes_and_enough_items():
    with pytest.raises(EvalInputError, match="differ in shape"):
        detect(torch.zeros(10, 1, 8, 8), torch.zeros(10, 1, 9, 9))
    with pytest.raises(EvalInputError, match="at least 4 generated"):
        detect(torch.zeros(10, 1, 8, 8), torch.zeros(3, 1, 8, 8))
    with pytest.raises(EvalInputError, match="no detector"):
        load_detector("/nonexistent/detector")
