"""The trilemma report: quality, diversity and speed across runs, in one self-contained HTML page.

`genlab report runs/* --out report.html` reads each run's eval.json (and detect.json) and writes
- a table of every measure, one row per (run, sampler, steps);
- a quality-vs-diversity scatter (FID against recall) with sampling speed as marker size and colour, and
  the Pareto front over all three marked (Xiao et al. 2022 name the trade-off the generative trilemma);
- FID and speed against sampler steps, for runs evaluated at several step counts;
- the sample grids side by side.
Images are embedded as base64, so the page is one file; the plots are also written as PNGs beside it.

Scores measured under different protocols (another feature network or its weights, another reference,
sample count or k: see protocol.py) are never put in one column: each protocol gets its own table and
plots, and the page says which fields differ.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import EvalInputError
from .evaluate import read_entries
from .protocol import Protocol


@dataclass
class Row:
    label: str  # the run (or file) name
    entry: dict[str, Any]
    base: Path  # directory that the entry's file paths are relative to
    detect: dict[str, Any] | None = None  # the latest `genlab detect` entry of the same source

    @property
    def protocol(self) -> Protocol:
        return Protocol.from_dict(self.entry["protocol"])

    @property
    def name(self) -> str:
        p = self.entry["protocol"]
        return self.label + (f" {p['sampler']}-{p['steps']}" if p.get("sampler") not in (None, "direct") else "")

    def score(self, key: str) -> float | None:
        v = self.entry["scores"].get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _eval_files(source: Path) -> tuple[Path | None, Path | None, str]:
    """(eval.json, detect.json, label) for a run directory, a folder, an .npz or an eval.json."""
    if source.suffix == ".json":
        detect = source.with_name(source.name.replace("eval.json", "detect.json"))
        label = source.parent.name if source.name == "eval.json" else source.name.removesuffix(".eval.json")
        return source, detect, label
    if source.suffix == ".npz":
        return source.with_name(source.stem + ".eval.json"), source.with_name(source.stem + ".detect.json"), source.stem
    return source / "eval.json", source / "detect.json", source.name


def collect(sources: Sequence[str | Path]) -> tuple[list[Row], list[str]]:
    """Latest entry per (source, sampler, steps, protocol); notes for sources without evaluations."""
    rows, notes = [], []
    for src in sources:
        eval_path, detect_path, label = _eval_files(Path(src))
        entries = read_entries(eval_path) if eval_path else []
        if not entries:
            notes.append(f"{src}: no evaluations yet (run `genlab eval {src}`)")
            continue
        detected = read_entries(detect_path)[-1] if detect_path and detect_path.exists() else None
        latest: dict[tuple, dict] = {}
        for e in entries:  # later entries replace earlier ones measured the same way
            p = Protocol.from_dict(e["protocol"])
            latest[(p.sampler, p.steps, p.comparable())] = e
        rows += [Row(label, e, eval_path.parent, detected) for e in latest.values()]
    return rows, notes


def group_by_protocol(rows: list[Row]) -> list[list[Row]]:
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.protocol.comparable(), []).append(r)
    return sorted(groups.values(), key=len, reverse=True)


def pareto_front(points: list[tuple[float, float, float]]) -> list[bool]:
    """Which points no other point beats: (fid, recall, speed), lower fid and higher recall and speed win."""
    def dominates(a, b):
        better_or_equal = a[0] <= b[0] and a[1] >= b[1] and a[2] >= b[2]
        return better_or_equal and (a[0] < b[0] or a[1] > b[1] or a[2] > b[2])

    return [not any(dominates(q, p) for q in points if q is not p) for p in points]


# ---------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def trilemma_figure(rows: list[Row], title: str):
    """FID (quality, up is better) against recall (diversity), speed as marker size and colour."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    pts = [(r, r.score("fid"), r.score("recall"), r.score("samples_per_sec")) for r in rows]
    pts = [p for p in pts if p[1] is not None and p[2] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    if not pts:
        ax.text(0.5, 0.5, "no FID/recall scores", ha="center", transform=ax.transAxes)
        return fig
    speeds = [s for *_, s in pts if s]
    norm = LogNorm(vmin=min(speeds), vmax=max(max(speeds), min(speeds) * 1.01)) if speeds else None
    front = pareto_front([(f, rc, s if s else -math.inf) for _, f, rc, s in pts])
    recalls = [rc for _, _, rc, _ in pts]
    x_mid = (min(recalls) + max(recalls)) / 2
    for (row, f, rc, s), best in zip(pts, front):
        size = 40 + 60 * (math.log10(s) - math.log10(min(speeds)) + 0.5) if s else 60
        if s:
            sc = ax.scatter(rc, f, s=size, c=[s], cmap="viridis", norm=norm, edgecolors="black" if best else "none",
                            linewidths=2 if best else 0, zorder=3)
        else:  # speed unknown (an .npz): hollow
            ax.scatter(rc, f, s=size, facecolors="none", edgecolors="grey", zorder=3)
        right = rc > x_mid  # labels of points on the right go to their left, inside the axes
        ax.annotate(row.name + (" *" if best else ""), (rc, f), textcoords="offset points", fontsize=7,
                    xytext=(-8 if right else 8, 5), ha="right" if right else "left")
    on_front = sorted((rc, f) for (_, f, rc, _), best in zip(pts, front) if best)
    if len(on_front) > 1:
        ax.plot(*zip(*on_front), "k--", lw=0.8, zorder=2, label="Pareto front (FID, recall, speed)")
        ax.legend(fontsize=7, loc="lower right")
    if speeds:
        from matplotlib.ticker import LogFormatter

        fig.colorbar(sc, ax=ax, label="samples / s (marker size too)", format=LogFormatter(labelOnlyBase=False))
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel("recall (diversity) ->")
    ax.set_ylabel("FID (quality; lower is better)")
    if max(f for _, f, _, _ in pts) / max(1e-9, min(f for _, f, _, _ in pts)) > 20:
        ax.set_yscale("log")
    ax.invert_yaxis()  # better quality upwards
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def steps_figure(rows: list[Row]):
    """FID and samples/s against sampler steps, one line per (run, sampler); None if no run has two step counts."""
    curves: dict[tuple[str, str], list[tuple[int, float, float | None]]] = {}
    for r in rows:
        p = r.entry["protocol"]
        if p.get("steps") and r.score("fid") is not None:
            curves.setdefault((r.label, p["sampler"]), []).append((p["steps"], r.score("fid"), r.score("samples_per_sec")))
    curves = {k: sorted(v) for k, v in curves.items() if len({s for s, _, _ in v}) > 1}
    if not curves:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for (label, sampler), pts in curves.items():
        steps = [s for s, _, _ in pts]
        a1.plot(steps, [f for _, f, _ in pts], "o-", label=f"{label} ({sampler})")
        if all(v is not None for _, _, v in pts):
            a2.plot(steps, [v for _, _, v in pts], "o-", label=f"{label} ({sampler})")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    all_steps = sorted({s for pts in curves.values() for s, _, _ in pts})
    a2.set_yscale("log")
    for ax, ylabel in ((a1, "FID (lower is better)"), (a2, "samples / s")):
        ax.set_xscale("log")
        ax.set_xticks(all_steps)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("sampler steps (network calls)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    a1.ticklabel_format(axis="y", useOffset=False)
    a1.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    return buf.getvalue()


def _img(data: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


# ---------------------------------------------------------------------------------------------- the page
def _f(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _score(key: str, fmt: str):
    return lambda r: _f(r.score(key), fmt)


def _kid(r: Row) -> str:
    if r.score("kid_mean") is None:
        return "-"
    return f"{1000 * r.score('kid_mean'):.2f} &plusmn; {1000 * r.score('kid_std'):.2f}"


def _modes(r: Row) -> str:
    s = r.entry["scores"]
    return "-" if "modes_covered" not in s else f"{s['modes_covered']}/{s['num_modes']}, {s['high_quality_share']:.2f}"


def _bits(r: Row) -> str:
    return "-" if r.score("bits_per_dim") is None else f"{r.score('bits_per_dim'):.3f} ({r.entry['likelihood']['kind']})"


def _latency(r: Row) -> str:
    sp = r.entry.get("speed")
    return "-" if not sp else f"{sp['latency_per_batch_s']:.3f} (of {sp['batch_size']})"


def _run(key: str, fmt):
    return lambda r: "-" if "run" not in r.entry else fmt(r.entry["run"][key])


COLUMNS = [  # (header, function of a row -> cell text)
    ("run", lambda r: html.escape(r.label)),
    ("model", _run("model", str)),
    ("sampler", lambda r: r.entry["protocol"].get("sampler") or "-"),
    ("steps", lambda r: str(r.entry["protocol"].get("steps") or "-")),
    ("FID", _score("fid", "{:.2f}")),
    ("KID x1000", _kid),
    ("precision", _score("precision", "{:.3f}")),
    ("recall", _score("recall", "{:.3f}")),
    ("density", _score("density", "{:.3f}")),
    ("coverage", _score("coverage", "{:.3f}")),
    ("class entropy", _score("class_entropy", "{:.3f}")),
    ("class KL", _score("class_kl", "{:.4f}")),
    ("cond. acc.", _score("conditional_accuracy", "{:.3f}")),
    ("modes / HQ", _modes),
    ("memorised", _score("memorized_share", "{:.4f}")),
    ("bits/dim", _bits),
    ("samples/s", _score("samples_per_sec", "{:.1f}")),
    ("s / batch", _latency),
    ("params", _run("parameters", "{:,}".format)),
    ("train min", _run("train_seconds", lambda v: f"{v / 60:.1f}")),
    ("detector AUC", lambda r: _f(r.detect["auc"] if r.detect else None, "{:.3f}")),
]


def _protocol_text(p: Protocol, entry: dict) -> str:
    f = entry["features"]
    acc = f" (held-out accuracy {100 * f['accuracy']:.1f}%)" if f.get("accuracy") is not None else ""
    return (f"features <b>{html.escape(p.features)}</b> sha256 <code>{p.features_sha256[:12]}</code>{acc}; "
            f"reference {html.escape(p.data)} {p.reference_split} split, {p.reference_size} items; "
            f"{p.num_samples} samples per row; k={p.k}; KID {p.kid_subsets} subsets of {p.kid_subset_size}")


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
         ".warn{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}.note,.protocol{font-size:13px;color:#444}"
         ".grids{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-size:12px}")
INTRO = ("<p>Quality (FID, precision, density), diversity (recall, coverage, class entropy) and speed (samples "
         "per second after warm-up) of each run. Lower FID, KID, class KL, memorised share and bits/dim are "
         "better; higher precision, recall, density, coverage and samples/s are better. Detector AUC 0.5: real "
         "and generated images cannot be told apart.</p>")


def make_report(sources: Sequence[str | Path], out: str | Path = "report.html",
                title: str = "genlab: the trilemma") -> Path:
    """Write the HTML report (and its PNGs beside it) for the evaluations of `sources`; return its path."""
    rows, notes = collect(sources)
    if not rows:
        raise EvalInputError("nothing to report: none of the sources has an eval.json. Evaluate them first "
                             "(`genlab eval RUN`). " + " ".join(notes))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    groups = group_by_protocol(rows)
    parts = [f"<h1>{html.escape(title)}</h1>", INTRO]
    if len(groups) > 1:
        first = groups[0][0].protocol
        reasons = "".join(f"<li>protocol {i} ({html.escape(', '.join(r.name for r in g))}) differs from protocol 1 "
                          f"in: {html.escape('; '.join(g[0].protocol.differences(first)))}</li>"
                          for i, g in enumerate(groups[1:], start=2))
        parts.append("<div class='warn'><b>Scores measured under different protocols are not comparable and are "
                     f"shown in separate tables.</b><ul>{reasons}</ul>Re-evaluate with the same feature network, "
                     "reference and sample count to compare them.</div>")
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in notes]
    for i, group in enumerate(groups, start=1):
        parts.append(_protocol_section(group, i, out.with_suffix(""), "" if len(groups) == 1 else f"-protocol{i}"))
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                   f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return out


def _protocol_section(group: list[Row], i: int, stem: Path, suffix: str) -> str:
    """Table, trilemma scatter, steps curves and sample grids of the rows sharing one protocol."""
    p = group[0].protocol
    header = "".join(f"<th>{h}</th>" for h, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{fn(r)}</td>" for _, fn in COLUMNS) + "</tr>" for r in group)
    parts = [f"<h2>Protocol {i}</h2><p class='protocol'>{_protocol_text(p, group[0].entry)}. FIDs from different "
             f"feature networks are not comparable.</p><table><tr>{header}</tr>{body}</table>"]
    tri = _png(trilemma_figure(group, f"{p.data}: {p.num_samples} samples, {p.features}"))
    (stem.parent / f"{stem.name}-trilemma{suffix}.png").write_bytes(tri)
    parts.append("<h3>Quality vs diversity, with speed</h3>" + _img(tri, "trilemma scatter")
                 + "<p class='note'>Black-ringed points (and *) are on the Pareto front: no other run has lower FID, "
                 "higher recall and more samples/s at once. Hollow points: speed unknown (samples from a file).</p>")
    fig = steps_figure(group)
    if fig is not None:
        png = _png(fig)
        (stem.parent / f"{stem.name}-steps{suffix}.png").write_bytes(png)
        parts.append("<h3>Quality vs sampler steps</h3>" + _img(png, "quality against steps"))
    grids = [_grid_figure(r) for r in group]
    if any(grids):
        parts.append("<h3>Samples</h3><div class='grids'>" + "".join(grids) + "</div>")
    return "".join(parts)


def _grid_figure(r: Row) -> str:
    """The row's sample grid and closest-pairs picture, embedded; empty if the files are gone."""
    captions = {"samples": ("samples", 260), "memorization": ("closest sample / training pairs", 520),
                "most_fake": ("held-out samples the detector is surest are fake", 260)}
    files = {**r.entry.get("files", {}), **((r.detect or {}).get("files", {}))}
    out = ""
    for key, (caption, width) in captions.items():
        path = r.base / files[key] if key in files else None
        if path is not None and path.exists():
            out += _img(path.read_bytes(), f"{r.name} {caption}", width)
            out += f"<figcaption>{html.escape(r.name)}: {caption}</figcaption>"
    return f"<figure>{out}</figure>" if out else ""
