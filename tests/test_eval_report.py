"""The trilemma report: one self-contained page, separate tables for different protocols, Pareto front."""

from __future__ import annotations

import re

import pytest
import torch

import genlab
from eval_fixtures import digits, eval_cache, tiny_features  # noqa: F401
from genlab.errors import EvalInputError
from genlab.eval.detect import detect_source
from genlab.eval.evaluate import evaluate_steps
from genlab.eval.report import make_report, pareto_front


def test_pareto_front():
    # (fid, recall, speed): lower fid, higher recall and speed are better
    pts = [(10, 0.5, 100), (5, 0.6, 10), (12, 0.4, 50), (5, 0.6, 10.5), (30, 0.9, 1)]
    assert pareto_front(pts) == [True, False, False, True, True]


def test_report_is_self_contained_and_splits_protocols(tmp_path, train_tiny, digits, tiny_features):
    opts = dict(features=tiny_features, kid_subsets=5, likelihood_n=20)
    ddpm = train_tiny("ddpm", steps=2, out=tmp_path / "ddpm")
    evaluate_steps(ddpm, n=60, sampler="ddim", steps=[2, 4], **opts)
    vae = train_tiny("vae", steps=2, out=tmp_path / "vae")
    genlab.evaluate(vae.path, n=60, **opts)
    detect_source(vae.path, n=60, epochs=1)  # its AUC and most-fake picture join the vae row
    genlab.evaluate(torch.rand(60, 1, 8, 8) * 2 - 1, data="digits", out=tmp_path / "noise", **opts)
    genlab.evaluate(digits.x_val[:50], data="digits", out=tmp_path / "real50", **opts)  # 50 samples: another protocol
    (tmp_path / "not-evaluated").mkdir()
    out = make_report([tmp_path / d for d in ("ddpm", "vae", "noise", "real50", "not-evaluated")], tmp_path / "r" / "report.html")
    page = out.read_text()
    assert "<table" in page and page.count("<h2>Protocol") == 2
    assert "num_samples 50 vs 60" in page and "not comparable" in page
    assert "not-evaluated: no evaluations yet" in page and "the detector is surest are fake" in page
    assert not re.search(r"src=['\"](?!data:)", page)  # every image is embedded
    assert page.count("data:image/png;base64,") >= 6  # scatters, steps curves, sample grids
    for name in ("report-trilemma-protocol1.png", "report-trilemma-protocol2.png", "report-steps-protocol1.png"):
        assert (out.parent / name).stat().st_size > 1000
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", page)
    assert ("ddpm", "ddpm", "ddim", "4") in rows and ("vae", "vae", "direct", "1") in rows


def test_nothing_to_report(tmp_path):
    with pytest.raises(EvalInputError, match="nothing to report"):
        make_report([tmp_path], tmp_path / "r.html")
