"""The main job: train the VAE, DCGAN and DDPM briefly on one dataset, sample, time, and report.

Needs no files and no network on the default `digits` data. Writes OUT/report.html (self-contained),
plus the runs, grids and curves beside it.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import torch

from .api import train
from .outputs import save_samples
from .runs import Run

DEMO_MODELS = ("vae", "dcgan", "ddpm")


def time_sampling(run: Run, n: int, **options) -> float:
    """Samples per second for one batch of n after a warm-up batch of the same shape (inference mode)."""
    run.sample(n, seed=1, batch_size=n, **options)  # warm-up: lazy init, allocator, caches, compilation if any
    start = time.perf_counter()
    run.sample(n, seed=0, batch_size=n, **options)
    return n / (time.perf_counter() - start)


def plot_curves(runs: dict[str, Run], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3), dpi=100)
    for ax, (name, run) in zip(list(axes) if len(runs) > 1 else [axes], runs.items()):
        rows = [r for r in run.metrics() if "eval" not in r]
        keys = [k for k in rows[-1] if k.endswith("loss")] if rows else []
        for k in keys:
            ax.plot([r["step"] for r in rows], [r[k] for r in rows], label=k)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def run_demo(out: str | Path = "demo", minutes_per_model: float = 2.0, data: str = "digits",
             data_dir: str | None = None, models: tuple[str, ...] = DEMO_MODELS, timing_samples: int = 256) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Run] = {}
    rows = []
    for name in models:
        print(f"== {name}: training {minutes_per_model:g} min on {data}", flush=True)
        run = train(name, data, out=out / "runs" / name, minutes=minutes_per_model, overwrite=True,
                    data_dir=data_dir, sample_every=0)
        runs[name] = run
        info = run.info()
        model = run.load_model()
        grid = save_samples(run.sample(64, seed=0, progress=True), out / f"{name}-samples.png", model.output_kind)
        speeds, extra_grids = {}, []
        for i, (label, preset) in enumerate(model.sampling_presets().items()):
            calls = model.sample_options(**preset).get("steps", 1)
            speeds[label] = time_sampling(run, 64 if calls > 100 else timing_samples, **preset)  # long chains: fewer
            if i:  # the first preset is the default, already drawn above
                slug = label.lower().replace(" ", "-")
                extra_grids.append((label, save_samples(run.sample(64, seed=0, **preset), out / f"{name}-{slug}-samples.png",
                                                        model.output_kind)))
        rows.append({"model": name, "parameters": info["parameters"], "steps": info["step"],
                     "train_minutes": round(info["train_seconds"] / 60, 2),
                     "samples_per_sec": {k: round(v, 1) for k, v in speeds.items()},
                     "grid": str(grid), "extra_grids": [(t, str(p)) for t, p in extra_grids]})
        print(f"   {info['step']} steps, sampling: " + ", ".join(f"{k}: {v:.1f}/s" for k, v in speeds.items()), flush=True)
    curves = plot_curves(runs, out / "training-curves.png")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    report = out / "report.html"
    report.write_text(_render(rows, curves, data))
    return report


def _render(rows: list[dict], curves: Path, data: str) -> str:
    table = "".join(
        f"<tr><td>{r['model']}</td><td>{r['parameters']:,}</td><td>{r['steps']}</td><td>{r['train_minutes']}</td>"
        f"<td>{'<br>'.join(f'{k}: {v}' for k, v in r['samples_per_sec'].items())}</td></tr>"
        for r in rows
    )
    grids = "".join(
        f"<figure>{_img(Path(r['grid']))}<figcaption>{r['model']}</figcaption></figure>"
        + "".join(f"<figure>{_img(Path(p))}<figcaption>{r['model']}, {t}</figcaption></figure>" for t, p in r["extra_grids"])
        for r in rows
    )
    device = "CUDA" if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genlab demo on {html.escape(data)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}figure{{display:inline-block;margin:8px}}
img{{image-rendering:pixelated;max-width:100%}}</style></head><body>
<h1>genlab demo: three families on <code>{html.escape(data)}</code></h1>
<p>Each model trained for the same wall-clock budget on {device}; samples come from the EMA weights.
Sampling speed is measured after a warm-up batch, in inference mode.</p>
<table><tr><th>model</th><th>parameters</th><th>training steps</th><th>training minutes</th><th>samples/sec</th></tr>
{table}</table>
<h2>Samples</h2>{grids}
<h2>Training curves</h2>{_img(curves)}
</body></html>"""
