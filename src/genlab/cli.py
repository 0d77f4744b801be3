"""The `genlab` command: each command parses its options, calls the Python API, and prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from .errors import GenlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, sample, evaluate and compare generative models.")


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command("models")
def models_cmd() -> None:
    """List every model with a one-line description."""
    from .api import models

    for name, family, description in models():
        typer.echo(f"{name:<12} {family:<10} {description}")


@app.command("datasets")
def datasets_cmd() -> None:
    """List every dataset: where it comes from, item shape, classes."""
    from .data import dataset_infos

    typer.echo(f"{'name':<14} {'shape':<9} {'classes':<28} source")
    for info in dataset_infos():
        typer.echo(f"{info.name:<14} {info.shape:<9} {info.classes:<28} {info.source}")
        typer.echo(f"{'':<14} {info.description}")
    typer.echo(f"{'imagefolder:PATH':<14} {'CxSxS':<9} {'subfolders':<28} your PNG/JPEG files, resized (--image-size, default 32)")


@app.command("train")
def train_cmd(
    model: Optional[str] = typer.Argument(None, help="model name (see `genlab models`); omit with --resume"),
    data: str = typer.Option("digits", help="dataset name (see `genlab datasets`) or imagefolder:PATH"),
    data_dir: Optional[str] = typer.Option(None, help="directory holding the dataset's files"),
    download: bool = typer.Option(False, help="download missing dataset files (checksums verified)"),
    image_size: Optional[int] = typer.Option(None, help="resize images to this size"),
    steps: Optional[int] = typer.Option(None, help="stop when the run reaches this many steps in total"),
    minutes: Optional[float] = typer.Option(None, help="train for this many more minutes"),
    out: Optional[str] = typer.Option(None, help="run directory (default runs/MODEL-DATA)"),
    resume: Optional[str] = typer.Option(None, help="continue this run from its latest checkpoint"),
    overwrite: bool = typer.Option(False, help="replace an existing run at --out"),
    batch_size: Optional[int] = typer.Option(None, help="batch size per process"),
    lr: Optional[float] = typer.Option(None, help="learning rate"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:1"),
    sample_every: Optional[int] = typer.Option(None, help="steps between sample grids"),
    checkpoint_every: Optional[int] = typer.Option(None, help="steps between checkpoints"),
    eval_every: Optional[int] = typer.Option(None, help="steps between evaluations (keeps the best checkpoint)"),
    set_: List[str] = typer.Option([], "--set", help="override: key=value (model) or train.key=value"),
    nproc: int = typer.Option(1, help="data-parallel processes (runs itself under torchrun)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train a model, or resume a run. Ctrl-C saves a checkpoint first."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_relaunch_with_torchrun(nproc))
    from .api import train_with_result

    options = {k: v for k, v in dict(data_dir=data_dir, download=download or None, image_size=image_size,
                                     batch_size=batch_size, lr=lr, seed=seed, device=device, sample_every=sample_every,
                                     checkpoint_every=checkpoint_every, eval_every=eval_every).items() if v is not None}
    evaluator, best_key = None, None
    if eval_every:
        from .eval.training import make_training_evaluator, planned_train_config

        evaluator, best_key = make_training_evaluator(planned_train_config(data, resume, set_, **options))
    result = train_with_result(model, data, out=out, steps=steps, minutes=minutes, resume=resume,
                               overwrite=overwrite, overrides=set_, progress=not quiet,
                               evaluator=evaluator, best_key=best_key, **options)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    info = result.run.info()
    typer.echo(f"{result.status}: {result.run.path} at step {result.step} "
               f"({result.train_seconds / 60:.1f} min training, effective batch {info['effective_batch_size']})")
    if result.status == "interrupted":
        typer.echo(f"checkpoint saved; continue with: genlab train --resume {result.run.path} --minutes M")
        raise typer.Exit(130)


def _relaunch_with_torchrun(nproc: int) -> int:
    args, cleaned = sys.argv[1:], []
    for i, a in enumerate(args):  # drop "--nproc N" / "--nproc=N": the children must not relaunch
        if a == "--nproc" or a.startswith("--nproc=") or (i and args[i - 1] == "--nproc"):
            continue
        cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "genlab.cli", *cleaned]
    typer.echo("running: " + " ".join(cmd[1:]), err=True)
    return subprocess.call(cmd)


def _parse_labels(labels: Optional[str], n: int) -> Optional[list[int]]:
    if labels is None:
        return None
    if labels == "all":
        return None  # handled by caller with num_classes
    values = [int(v) for v in labels.split(",") if v.strip()]
    return [values[i % len(values)] for i in range(n)]


@app.command("sample")
def sample_cmd(
    run: str = typer.Argument(..., help="run directory"),
    n: int = typer.Option(64, "-n", help="number of samples"),
    out: str = typer.Option("samples.png", help="a .png grid or an .npz of arrays"),
    seed: int = typer.Option(0, help="random seed"),
    labels: Optional[str] = typer.Option(None, help="class labels, e.g. 3 or 0,1,2 (cycled), or 'all'"),
    sampler: Optional[str] = typer.Option(None, help="diffusion sampler: ddpm or ddim"),
    steps: Optional[int] = typer.Option(None, help="sampler steps (ddim)"),
    eta: float = typer.Option(0.0, help="DDIM eta (0: deterministic)"),
    guidance: float = typer.Option(1.0, help="classifier-free guidance scale (conditional diffusion)"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    batch_size: int = typer.Option(500, help="samples per forward batch"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Sample from a trained run into an image grid or an .npz for evaluation."""
    import torch

    from .api import load
    from .imageio import save_samples

    r = load(run)
    label_list = _parse_labels(labels, n)
    if labels == "all":
        k = int(r.data_info.get("num_classes", 0)) or 1
        label_list = [i % k for i in range(n)]
    options = {k: v for k, v in dict(sampler=sampler, steps=steps).items() if v is not None}
    if eta:
        options["eta"] = eta
    if guidance != 1.0:
        options["guidance_scale"] = guidance
    start = time.perf_counter()
    x = r.sample(n, labels=label_list, seed=seed, batch_size=batch_size, checkpoint=checkpoint, device=device,
                 progress=True, **options)
    seconds = time.perf_counter() - start
    path = save_samples(x, out, labels=None if label_list is None else torch.tensor(label_list))
    typer.echo(f"wrote {n} samples to {path} ({n / seconds:.1f} samples/s, {seconds:.1f} s)")


@app.command("info")
def info_cmd(run: str = typer.Argument(..., help="run directory"),
             as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show a run's config, steps, training time and last losses."""
    from .api import load

    info = load(run).info()
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    typer.echo(f"run        {info['run']}")
    typer.echo(f"model      {info['model']}  ({info['parameters']:,} parameters)")
    typer.echo(f"data       {info['data']['name']}  shape {info['data']['shape']}  classes {info['data']['num_classes']}")
    typer.echo(f"status     {info['status']}  step {info['step']}  {info['train_seconds'] / 60:.1f} min")
    typer.echo(f"batch      {info['effective_batch_size']} effective ({info['world_size']} process(es))")
    typer.echo(f"checkpoint {info['checkpoint']}")
    typer.echo("losses     " + "  ".join(f"{k}={v:.4g}" for k, v in info["last_losses"].items() if isinstance(v, (int, float))))
    typer.echo("model config " + json.dumps(info["model_config"]))
    typer.echo("train config " + json.dumps(info["train"]))


@app.command("demo")
def demo_cmd(out: str = typer.Option("demo", help="output directory"),
             minutes: float = typer.Option(2.0, help="training minutes per model"),
             data: str = typer.Option("digits", help="dataset"),
             data_dir: Optional[str] = typer.Option(None, help="dataset directory")) -> None:
    """The main job: train VAE, DCGAN and DDPM briefly, sample, time, and write demo/report.html."""
    from .demo import run_demo

    report = run_demo(out, minutes_per_model=minutes, data=data, data_dir=data_dir)
    typer.echo(f"report: {Path(report).resolve()}")


# ---------------------------------------------------------------------------------------------- evaluation
def _steps_list(steps: Optional[str]) -> list:
    if not steps:
        return [None]
    try:
        return [int(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        fail(f"--steps takes integers separated by commas, e.g. 20,50,250; got '{steps}'")


@app.command("eval")
def eval_cmd(
    source: str = typer.Argument(..., help="run directory, .npz of samples, or folder of images"),
    data: Optional[str] = typer.Option(None, help="dataset to compare with (default: the run's own)"),
    data_dir: Optional[str] = typer.Option(None, help="directory holding the dataset's files"),
    n: Optional[int] = typer.Option(None, "-n", help="number of samples (default: 10000 for runs, all for files)"),
    sampler: Optional[str] = typer.Option(None, help="diffusion sampler: ddpm or ddim"),
    steps: Optional[str] = typer.Option(None, help="sampler steps; several (20,50,250) give one column each"),
    eta: float = typer.Option(0.0, help="DDIM eta"),
    guidance: float = typer.Option(1.0, help="classifier-free guidance scale"),
    seed: int = typer.Option(0, help="sampling seed"),
    batch_size: int = typer.Option(500, help="samples per batch (the speed is measured per batch)"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    features: str = typer.Option("auto", help="auto (genlab's feature network for the data) or a local Inception-v3 weights file"),
    reference: str = typer.Option("train", help="real split to compare with: train or val"),
    reference_size: int = typer.Option(10_000, help="real items in the reference (a fixed subset if the split is larger)"),
    k: int = typer.Option(5, "-k", help="neighbours for precision/recall/density/coverage"),
    kid_subsets: int = typer.Option(100, help="KID subsets"),
    kid_subset_size: int = typer.Option(1000, help="KID subset size"),
    likelihood: bool = typer.Option(True, help="held-out bits/dim for models that have a likelihood"),
    likelihood_n: int = typer.Option(1000, help="validation items for bits/dim"),
    memorization: bool = typer.Option(True, help="nearest-training-image check"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
    write: bool = typer.Option(True, help="append the result to eval.json"),
    as_json: bool = typer.Option(False, "--json", help="print the eval.json entry"),
) -> None:
    """Measure quality, diversity, coverage, memorisation, likelihood and speed; print a table."""
    from .eval.evaluate import evaluate_steps, summary

    entries = evaluate_steps(source, data, n=n, steps=_steps_list(steps), sampler=sampler, eta=eta, guidance=guidance,
                             seed=seed, batch_size=batch_size, checkpoint=checkpoint, data_dir=data_dir,
                             features=features, reference=reference, reference_size=reference_size, k=k,
                             kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, likelihood=likelihood,
                             likelihood_n=likelihood_n, memorization=memorization, device=device, write=write,
                             progress=not as_json)
    typer.echo(json.dumps(entries[0] if len(entries) == 1 else entries, indent=1) if as_json else summary(entries))


@app.command("detect")
def detect_cmd(
    source: Optional[str] = typer.Argument(None, help="run directory, .npz of samples, or folder of images"),
    data: Optional[str] = typer.Option(None, help="dataset of real images (default: the run's own)"),
    data_dir: Optional[str] = typer.Option(None, help="directory holding the dataset's files"),
    n: int = typer.Option(2000, "-n", help="generated images (and as many real ones)"),
    reference: str = typer.Option("train", help="real split: train or val"),
    epochs: int = typer.Option(5, help="training epochs of the detector"),
    seed: int = typer.Option(0, help="seed of sampling, split and training"),
    sampler: Optional[str] = typer.Option(None, help="diffusion sampler: ddpm or ddim"),
    steps: Optional[int] = typer.Option(None, help="sampler steps"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
    score: Optional[str] = typer.Option(None, help="score every image in this folder with a saved --detector"),
    detector: Optional[str] = typer.Option(None, help="a detector saved by an earlier `genlab detect`"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Can a classifier tell real images from generated ones? Held-out ROC-AUC (0.5: it cannot)."""
    if score is not None:
        from .eval.detect import load_detector
        from .eval.detect import score as score_items
        from .eval.evaluate import read_images

        if detector is None:
            fail("--score needs --detector PATH (a detector saved by `genlab detect RUN`)")
        net, meta = load_detector(detector)
        names, x = read_images(score, tuple(meta["input_shape"]))
        p = score_items(net, x)
        if as_json:
            typer.echo(json.dumps({"mean": float(p.mean()), "scores": dict(zip(names, p.tolist()))}, indent=1))
            return
        for name, v in sorted(zip(names, p.tolist()), key=lambda t: -t[1]):
            typer.echo(f"{v:.4f}  {name}")
        typer.echo(f"mean probability of being generated: {float(p.mean()):.4f} over {len(names)} images "
                   f"(detector AUC {meta['auc']:.3f} against {meta.get('generated')})")
        return
    if source is None:
        fail("give a run, .npz or image folder to test, or --score FOLDER --detector PATH")
    from .eval.detect import detect_source

    entry = detect_source(source, data, n=n, reference=reference, epochs=epochs, seed=seed, checkpoint=checkpoint,
                          sampler=sampler, steps=steps, data_dir=data_dir, device=device)
    if as_json:
        typer.echo(json.dumps(entry, indent=1))
        return
    typer.echo(f"ROC-AUC {entry['auc']:.3f} (0.5: indistinguishable, 1.0: every sample gives itself away), "
               f"accuracy {entry['accuracy']:.3f}, {entry['n_test_per_class']} held-out images per class")
    if "written_to" in entry:
        where = Path(entry["written_to"]).parent
        typer.echo(f"most surely fake: {where / entry['files']['most_fake']}")
        typer.echo(f"detector:         {where / entry['files']['detector']} (score images: --score DIR --detector PATH)")


@app.command("report")
def report_cmd(sources: List[str] = typer.Argument(..., help="run directories (or .npz / eval.json files)"),
               out: str = typer.Option("report.html", help="the HTML file (PNGs are written beside it)"),
               title: str = typer.Option("genlab: the trilemma", help="page title")) -> None:
    """One HTML page across runs: every measure, quality vs diversity vs speed, steps curves, samples."""
    from .eval.report import make_report

    path = make_report(sources, out, title)
    typer.echo(f"report: {path.resolve()}")


features_app = typer.Typer(no_args_is_help=True, help="The feature network that evaluation measures with.")
app.add_typer(features_app, name="features")


@features_app.command("train")
def features_train_cmd(
    data: str = typer.Option("digits", help="dataset whose real training images the network learns"),
    data_dir: Optional[str] = typer.Option(None, help="directory holding the dataset's files"),
    image_size: Optional[int] = typer.Option(None, help="resize images to this size"),
    retrain: bool = typer.Option(False, help="train again even if cached"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Train (or show the cached) feature network for a dataset; prints its held-out accuracy."""
    from .data import load_dataset
    from .eval.features import cache_root, load_or_train
    from .runs import resolve_device

    dataset = load_dataset(data, data_dir=data_dir, image_size=image_size)
    fx = load_or_train(dataset, device=resolve_device(device or "auto"), retrain=retrain, progress=True)
    typer.echo(f"{fx.name}  sha256 {fx.sha256[:12]}  {100 * fx.accuracy:.2f}% {fx.accuracy_note}")
    typer.echo(f"trained on {fx.meta['train_size']} images in {fx.meta['train_seconds']} s; cached in {cache_root() / 'features'}")


def main() -> None:
    try:
        app()
    except GenlabError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
