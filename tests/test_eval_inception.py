"""Inception-v3 from a local file: parameter names of the pytorch-fid/torch-fidelity files, 2048-d features."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import EvalInputError
from genlab.eval.inception import InceptionFeatures, InceptionV3


def test_parameter_names_and_shapes_match_the_fid_weight_files():
    state = InceptionV3().state_dict()
    expected = {  # names and shapes as in pt_inception-2015-12-05-6726825d.pth
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "fc.weight": (1008, 2048),
    }
    for name, shape in expected.items():
        assert tuple(state[name].shape) == shape, name
    assert not any(k.startswith("AuxLogits") for k in state)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-test.pth"
    torch.save(InceptionV3().state_dict(), path)
    return path


def test_loads_a_local_file_and_gives_2048_features(weights_file):
    fx = InceptionFeatures(weights_file)
    assert fx.name == "inception-v3" and len(fx.sha256) == 64 and fx.num_classes == 0
    feats, logits = fx(torch.rand(2, 1, 28, 28) * 2 - 1)  # grayscale 28x28: repeated to RGB, resized to 299
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert (feats >= 0).all()  # average of ReLU outputs, as pool3 is


def test_refuses_other_files(tmp_path, weights_file):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(EvalInputError, match="not an Inception-v3 FID weights file"):
        InceptionFeatures(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EvalInputError, match="cannot read"):
        InceptionFeatures(tmp_path / "junk.pth")
    with pytest.raises(EvalInputError, match="grayscale or RGB"):
        InceptionFeatures(weights_file)(torch.zeros(1, 2, 28, 28))
