"""Fixtures of the evaluation tests: a private cache, the digits data, tiny feature networks, MNIST.

Test modules import what they use, `eval_cache` always (`from eval_fixtures import eval_cache, digits`);
`eval_cache` is autouse wherever it is imported, so no test writes to the user's ~/.cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import shared_mnist_dir
from genlab.data import Dataset, load_dataset
from genlab.eval.features import CNNFeatures, FeatureNetConfig, load_or_train

# Small enough to train in about a second on one core, good enough (~90% on digits) to be a yardstick.
TINY_FEATURES = FeatureNetConfig(width=8, embed_dim=32, epochs=1, min_steps=150)


@pytest.fixture(scope="session", autouse=True)
def eval_cache(tmp_path_factory) -> Path:
    """GENLAB_CACHE pointed at a session directory (subprocesses of the CLI inherit it)."""
    path = tmp_path_factory.mktemp("genlab-cache")
    old = os.environ.get("GENLAB_CACHE")
    os.environ["GENLAB_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GENLAB_CACHE", None)
    else:
        os.environ["GENLAB_CACHE"] = old


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def tiny_features(eval_cache, digits) -> CNNFeatures:
    """A tiny feature network for digits, trained once per session."""
    return load_or_train(digits, TINY_FEATURES)


@pytest.fixture(scope="session")
def default_digits_features(eval_cache, digits) -> CNNFeatures:
    """The default feature network for digits: the pinned one genlab ships (what `genlab eval` uses)."""
    from genlab.eval.features import feature_extractor

    return feature_extractor(digits)


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    path = shared_mnist_dir()
    if not any(path.glob("*-idx*-ubyte*")):
        pytest.skip(f"no MNIST IDX files in {path} (set GENLAB_MNIST_DIR to a directory holding them)")
    return load_dataset("mnist", data_dir=path)


@pytest.fixture(scope="session")
def mnist_features(eval_cache, mnist) -> CNNFeatures:
    return load_or_train(mnist, FeatureNetConfig(width=8, embed_dim=64, epochs=2, min_steps=0))  # ~96%
