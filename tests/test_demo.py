"""The main job end to end, with seconds instead of minutes per model."""

import json
import re

import pytest

from genlab.demo import run_demo


@pytest.mark.slow
def test_demo_writes_a_self_contained_report(tmp_path):
    report = run_demo(tmp_path / "demo", minutes_per_model=0.03, timing_samples=16)
    html = report.read_text()
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["model"] for r in rows] == ["vae", "dcgan", "ddpm"]
    for r in rows:
        assert r["steps"] > 0 and r["parameters"] > 1000
        assert all(v > 0 for v in r["samples_per_sec"].values())
    # diffusion is timed with its full chain, with DDIM and with DPM-Solver++
    assert set(rows[2]["samples_per_sec"]) == {"ancestral 1000 steps", "DDIM 50 steps", "DDIM 20 steps", "DPM++ 10 steps"}
    assert set(rows[0]["samples_per_sec"]) == {"one pass", "truncation 0.7"}
    # every picture is embedded, none linked: 3 model grids + the VAE's truncated grid + 3 fast-sampler grids
    # (DDIM 50, 20, DPM++ 10) + the curves
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 8
    assert "src=\"/" not in html and "<th>samples/sec</th>" in html
