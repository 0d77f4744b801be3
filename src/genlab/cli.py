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
    """List every dataset and data scheme: where it comes from, item shape, classes, options."""
    from .data import dataset_infos

    typer.echo(f"{'name':<18} {'shape':<9} {'classes':<28} source")
    for info in dataset_infos():
        typer.echo(f"{info.usage or info.name:<18} {info.shape:<9} {info.classes:<28} {info.source}")
        typer.echo(f"{'':<18} {info.description}")
        for option, help_text in info.options.items():
            typer.echo(f"{'':<18}   --set train.data_options.{option}=...  {help_text}")


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
    eval_every: Optional[int] = typer.Option(None, help="steps between evaluations (keeps the best checkpoint; GANs: 1000)"),
    on_collapse: Optional[str] = typer.Option(None, help="on mode collapse or divergence (GANs): warn, rollback "
                                              "(to the last healthy checkpoint, at half the learning rate) or stop"),
    set_: List[str] = typer.Option([], "--set", help="override: key=value (model) or train.key=value"),
    condition: List[str] = typer.Option([], "--condition", help="train with this condition, e.g. label (repeatable)"),
    exclude_class: List[int] = typer.Option([], "--exclude-class", help="drop this class from the training split, "
                                            "not from validation (repeatable; for `genlab anomaly --target-class`)"),
    init_from: Optional[str] = typer.Option(None, help="start from this run's weights (fine-tuning)"),
    nproc: int = typer.Option(1, help="data-parallel processes (runs itself under torchrun)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 where the hardware has it, else fp32), fp32, bf16, fp16"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the networks (default: where measured to pay)"),
) -> None:
    """Train a model, or resume a run. Ctrl-C saves a checkpoint first."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_relaunch_with_torchrun(nproc))
    from .api import train_with_result

    options = {k: v for k, v in dict(data_dir=data_dir, download=download or None, image_size=image_size,
                                     batch_size=batch_size, lr=lr, seed=seed, device=device, sample_every=sample_every,
                                     checkpoint_every=checkpoint_every, eval_every=eval_every, precision=precision,
                                     on_collapse=on_collapse, exclude_classes=list(exclude_class) or None,
                                     compile=compile_).items() if v is not None}
    evaluator, best_key = None, None
    if eval_every:
        from .eval.training import make_training_evaluator, planned_train_config

        evaluator, best_key = make_training_evaluator(planned_train_config(data, resume, set_, **options))
    result = train_with_result(model, data, out=out, steps=steps, minutes=minutes, resume=resume,
                               overwrite=overwrite, overrides=set_, progress=not quiet, condition=list(condition),
                               init_from=init_from,
                               evaluator=evaluator, best_key=best_key, **options)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    info = result.run.info()
    compiled = f", compiled in {info['compile_seconds']:.0f} s" if info.get("compile_seconds") else ""
    typer.echo(f"{result.status}: {result.run.path} at step {result.step} "
               f"({result.train_seconds / 60:.1f} min training in {info['precision']}{compiled}, "
               f"effective batch {info['effective_batch_size']}; "
               f"{info['overhead_seconds'] / 60:.1f} min previews, evaluations and checkpoints, not counted)")
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


def _sample_and_write(run: str, n: int, out: str, seed: int, checkpoint: str, batch_size: int,
                      device: Optional[str], options: dict, input_role: Optional[str] = None,
                      precision: str = "auto", compile_: Optional[bool] = None, **given) -> None:
    """The one sampling route behind `sample` and the named commands: conditions, sample, write."""
    from .api import load
    from .conditions import build_conditions
    from .outputs import save_samples

    r = load(run)
    model = r.load_model(checkpoint, device=device)
    conditions, n = build_conditions(r, model, n, input_role=input_role, **given)
    start = time.perf_counter()
    report: dict = {}
    x = r.sample(n, conditions, seed=seed, batch_size=batch_size, checkpoint=checkpoint, device=device,
                 progress=True, precision=precision, compile=compile_, report=report, **options)
    seconds = time.perf_counter() - start
    path = save_samples(x, out, model.output_kind, labels=conditions.get("label"), context=r.output_context())
    how = report["precision"] + (f", compiled in {report['compile_seconds']:.1f} s" if "compile_seconds" in report else "")
    typer.echo(f"wrote {n} samples to {path} ({n / seconds:.1f} samples/s, {seconds:.1f} s, {how})")


def _sampler_options(sampler, steps, eta, guidance, strength=None, resample=None) -> dict:
    options = {k: v for k, v in dict(sampler=sampler, steps=steps, strength=strength, resample=resample).items()
               if v is not None}
    if eta:
        options["eta"] = eta
    if guidance != 1.0:
        options["guidance_scale"] = guidance
    return options


@app.command("sample")
def sample_cmd(
    run: str = typer.Argument(..., help="run directory"),
    n: int = typer.Option(64, "-n", help="number of samples"),
    out: str = typer.Option("samples.png", help="output file; its suffix picks the writer (.png, .npz, .txt, .wav, .csv)"),
    seed: int = typer.Option(0, help="random seed"),
    classes: Optional[str] = typer.Option(None, "--class", "--labels", help="class labels: 3, 0,1,2 (cycled), or all"),
    prompt: Optional[str] = typer.Option(None, help="text prompt (runs trained with text)"),
    input: Optional[str] = typer.Option(None, "--input", help="input image(s): file, folder or .npz (source, low-res, context)"),
    mask: Optional[str] = typer.Option(None, help="mask image: white where the input is kept"),
    sampler: Optional[str] = typer.Option(None, help="sampler of the model (diffusion: ddpm, ddim, euler, heun, dpm++)"),
    steps: Optional[int] = typer.Option(None, help="sampler steps"),
    eta: float = typer.Option(0.0, help="DDIM eta (0: deterministic)"),
    guidance: float = typer.Option(1.0, help="guidance scale: classifier-free (conditional diffusion), or with --classifier its scale"),
    classifier: Optional[str] = typer.Option(None, help="noise-classifier run guiding a diffusion run towards --class"),
    strength: Optional[float] = typer.Option(None, help="with --input: share of the noise path redone (img2img; 1 = from noise)"),
    resample: Optional[int] = typer.Option(None, help="with --input and --mask: passes per step (inpainting; RePaint)"),
    truncation: Optional[float] = typer.Option(None, help="truncation psi: latents pulled towards their mean (1: none; "
                                               "0.7 trades variety for fidelity), for models that have it"),
    temperature: Optional[float] = typer.Option(None, help="prior temperature (hierarchical VAE: 0.6-1; 0 gives the "
                                                "prior means), for models that have it"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    batch_size: int = typer.Option(500, help="samples per forward batch"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
    precision: str = typer.Option("auto", help="auto (bf16 where the hardware has it, else fp32), fp32, bf16, fp16"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the networks (default: where measured to pay)"),
) -> None:
    """Sample from a trained run, optionally under conditions, into a file for viewing or evaluation."""
    _sample_and_write(run, n, out, seed, checkpoint, batch_size, device,
                      {**_sampler_options(sampler, steps, eta, guidance, strength, resample),
                       **({"classifier": classifier} if classifier else {}),
                       **({"truncation": truncation} if truncation is not None else {}),
                       **({"temperature": temperature} if temperature is not None else {})}, precision=precision,
                      compile_=compile_, classes=classes, prompt=prompt, input=input, mask=mask, guided=bool(classifier))


@app.command("generate")
def generate_cmd(
    run: str = typer.Argument(..., help="run directory of a language model (gpt)"),
    prompt: Optional[str] = typer.Option(None, help="text to continue (default: the run's start token)"),
    input: List[str] = typer.Option([], "--input", help="source text to translate (seq2seq runs; repeatable)"),
    decoding: Optional[str] = typer.Option(None, help="seq2seq: greedy, beam or sample (default: the run's)"),
    beam: Optional[int] = typer.Option(None, "--beam", help="seq2seq: beam size (implies --decoding beam)"),
    max_tokens: int = typer.Option(500, "--max-tokens", help="tokens to generate at most"),
    temperature: Optional[float] = typer.Option(None, help="softmax temperature; 0 is greedy (default: the run's, 1.0)"),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="sample among the k most likely tokens only"),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="sample among the most likely tokens holding this probability"),
    stop: List[str] = typer.Option([], "--stop", help="stop when the text contains this string (repeatable)"),
    seed: int = typer.Option(0, help="random seed"),
    out: Optional[str] = typer.Option(None, help="also write prompt + text to this file"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
    precision: str = typer.Option("auto", help="auto (bf16 where the hardware has it, else fp32), fp32, bf16, fp16"),
) -> None:
    """Generate text from a language-model run, streamed to the terminal as it comes; with --input, translate
    each source text with a sequence-to-sequence run."""
    from .apps.generate import generate_text, translate_text, write_generation

    if input:
        if prompt:
            fail("give --prompt (a language model continues it) or --input (a seq2seq run translates it), not both")
        outputs = translate_text(run, input, decoding="beam" if beam else decoding, beam_size=beam,
                                 temperature=temperature, seed=seed, checkpoint=checkpoint, device=device,
                                 precision=precision)
        for source, target in zip(input, outputs):
            typer.echo(target if len(input) == 1 else f"{source}\t{target}")
        if out:
            Path(out).write_text("".join(f"{a}\t{b}\n" for a, b in zip(input, outputs)), encoding="utf-8")
            typer.echo(f"wrote {out}", err=True)
        return

    def show(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    if prompt:
        show(prompt)
    result = generate_text(run, prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           stop=stop, seed=seed, stream=show, checkpoint=checkpoint, device=device, precision=precision)
    ended = f", stopped at {result.stopped_by!r}" if result.stopped_by else ""
    typer.echo(f"\n[{result.tokens} tokens in {result.seconds:.2f} s, {result.tokens_per_second:.0f} tokens/s{ended}]", err=True)
    if out:
        typer.echo(f"wrote {write_generation(result, out)}", err=True)


def _named_command(name: str, role: Optional[str], needs_mask: bool, doc: str, directional: bool = False) -> None:
    def command(
        run: str = typer.Argument(..., help="run directory"),
        input: str = typer.Option(..., "--input", help="input image(s): file, folder or .npz"),
        mask: Optional[str] = typer.Option(None, help="mask image: white where the input is kept"),
        out: str = typer.Option(f"{name}.png", help="output file (.png grid or .npz)"),
        seed: int = typer.Option(0, help="random seed"),
        sampler: Optional[str] = typer.Option(None, help="sampler of the model"),
        steps: Optional[int] = typer.Option(None, help="sampler steps"),
        strength: Optional[float] = typer.Option(None, help="share of the noise path redone (img2img; 1 = from noise)"),
        resample: Optional[int] = typer.Option(None, help="passes per step (diffusion inpainting; RePaint)"),
        guidance: float = typer.Option(1.0, help="classifier-free guidance scale"),
        checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
        device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
        precision: str = typer.Option("auto", help="auto (bf16 where the hardware has it, else fp32), fp32, bf16, fp16"),
        direction: Optional[str] = typer.Option(None, hidden=not directional,
                                                help="a2b (the default) or b2a: which way a two-domain run translates"),
    ) -> None:
        if needs_mask and mask is None:
            fail(f"`genlab {name}` needs --mask FILE (white where the input is kept)")
        if direction is not None and not directional:
            fail(f"`genlab {name}` takes no --direction; `genlab translate` does")
        options = _sampler_options(sampler, steps, 0.0, guidance, strength, resample)
        if direction is not None:  # a sampling option like the others: the model checks it
            options["direction"] = direction
        _sample_and_write(run, 1, out, seed, checkpoint, 500, device, options, input_role=role, input=input, mask=mask,
                          precision=precision)

    command.__doc__ = doc
    app.command(name)(command)


# thin shells over `sample`: any run whose model accepts the condition gets the command
_named_command("inpaint", "source", True, "Fill the masked-out part of images (diffusion runs, or runs trained with source + mask).")
_named_command("upscale", "low_res", False, "Super-resolve low-resolution images (runs trained with low_res).")
_named_command("img2img", "source", False, "Turn input images into new ones (diffusion runs: SDEdit with --strength).")
_named_command("translate", "source", False, "Translate images to the other domain (two-domain runs; --direction b2a "
               "for the way back).", directional=True)


@app.command("complete")
def complete_cmd(
    run: str = typer.Argument(..., help="run directory (pixelcnn, or any run that takes an image and a mask)"),
    input: str = typer.Option(..., "--input", help="image(s) to complete: file, folder or .npz"),
    rows: Optional[int] = typer.Option(None, help="keep the top ROWS rows of each image"),
    keep: Optional[str] = typer.Option(None, help="keep this part: top-half"),
    mask: Optional[str] = typer.Option(None, help="or a mask image: white where the input is kept"),
    n: int = typer.Option(4, "-n", help="completions per image"),
    out: str = typer.Option("completed.png", help=".png grid (per image: original, kept part, completions) or .npz"),
    classes: Optional[str] = typer.Option(None, "--class", help="class of each image: 3, or 3,5 (runs trained with labels)"),
    seed: int = typer.Option(0, help="random seed"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
    precision: str = typer.Option("auto", help="auto (bf16 where the hardware has it, else fp32), fp32, bf16, fp16"),
) -> None:
    """Complete images from the part kept (e.g. the top half): the rest generated, -n times each."""
    from .apps.complete import complete
    from .imageio import save_grid
    from .outputs import save_samples

    if rows is None and keep is None and mask is None:
        keep = "top-half"
    start = time.perf_counter()
    result = complete(run, input, rows=rows, keep=keep, mask=mask, n=n, labels=classes, seed=seed,
                      checkpoint=checkpoint, device=device, precision=precision, progress=True)
    count = result.completions.shape[:2].numel()
    if Path(out).suffix.lower() == ".npz":
        path = save_samples(result.completions.flatten(0, 1), out, "image")
    else:
        path = save_grid(result.grid_rows(), out, nrow=2 + n)
    typer.echo(f"wrote {count} completions of {len(result.original)} image(s) to {path} "
               f"({time.perf_counter() - start:.1f} s)")


@app.command("forecast")
def forecast_cmd(
    run: str = typer.Argument(..., help="run directory of a model that forecasts (wavenet, arima) on a series"),
    horizon: int = typer.Option(24, help="steps ahead, scored against the held-out tail"),
    paths: int = typer.Option(100, "--paths", help="sample paths (median and intervals are taken across them)"),
    out: Optional[str] = typer.Option(None, help="plot of history, held-out tail, median and 80%/95% intervals (.png)"),
    seed: int = typer.Option(0, help="random seed"),
    season: Optional[int] = typer.Option(None, help="steps per season for the seasonal-naive forecast (default: the data's)"),
    origins: int = typer.Option(1, help="average the scores over this many forecast origins stepping into the tail"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Forecast past the training part of a series run; print MASE and sMAPE against naive baselines."""
    from .apps.forecast import forecast, plot_forecast

    result = forecast(run, horizon, paths, seed, season=season, origins=origins, checkpoint=checkpoint, device=device)
    typer.echo(result.table())
    if out:
        typer.echo(f"plot: {plot_forecast(result, out)}")


# ---------------------------------------------------------------------------------------------- latent spaces
@app.command("interpolate")
def interpolate_cmd(
    run: str = typer.Argument(..., help="run directory of a model that encodes and decodes (vae, autoencoder...)"),
    a: Optional[str] = typer.Option(None, "--a", help="first image (file, or the first of a folder or .npz)"),
    b: Optional[str] = typer.Option(None, "--b", help="last image; without --a/--b: two random latents"),
    frames: int = typer.Option(10, help="images from a to b inclusive"),
    mode: str = typer.Option("linear", help="linear or slerp (spherical: keeps Gaussian latents on their shell)"),
    out: str = typer.Option("interpolation.png", help="the strip (.png), or an animated .gif"),
    gif: Optional[str] = typer.Option(None, help="also write an animated GIF here"),
    seed: int = typer.Option(0, help="random seed of the two random latents"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Interpolate in a run's latent space between two images or two random latents: a strip and a GIF."""
    from .apps.interpolate import interpolate

    result = interpolate(run, a, b, frames=frames, mode=mode, seed=seed, checkpoint=checkpoint, device=device)
    written = [result.save(out)] + ([result.save_gif(gif)] if gif else [])
    ends = "two images" if result.endpoints is not None else f"two random latents (seed {seed})"
    typer.echo(f"wrote {frames} {mode} frames between {ends} to {', '.join(map(str, written))}")


@app.command("traverse")
def traverse_cmd(
    run: str = typer.Argument(..., help="run directory of a model that encodes and decodes"),
    dim: List[int] = typer.Option([], "--dim", help="latent coordinate to vary (repeatable); default: every one"),
    span: float = typer.Option(3.0, "--range", help="offsets from -RANGE to +RANGE around the base latent"),
    steps: int = typer.Option(9, help="offsets per row"),
    input: Optional[str] = typer.Option(None, "--input", help="image whose latent is the base (default: zeros)"),
    out: str = typer.Option("traverse.png", help="grid: one row per coordinate"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Latent traversals: vary one latent coordinate at a time around a base latent, decoded."""
    from .apps.latents import traverse

    result = traverse(run, list(dim) or None, span=span, steps=steps, input=input, checkpoint=checkpoint, device=device)
    typer.echo(f"wrote {len(result.dims)} row(s) x {steps} offsets in [-{span:g}, {span:g}] to {result.save(out)}")


@app.command("anomaly")
def anomaly_cmd(
    run: str = typer.Argument(..., help="run directory of a model with a likelihood bound or a latent space"),
    data: Optional[str] = typer.Option(None, help="dataset whose held-out split is scored (default: the run's)"),
    data_dir: Optional[str] = typer.Option(None, help="directory holding the dataset's files"),
    target_class: List[int] = typer.Option([], "--target-class", help="report the ROC-AUC of finding this class "
                                           "(repeatable; default: the classes the run was trained without)"),
    score: Optional[str] = typer.Option(None, help="elbo (negative ELBO, bits/dim) or recon (reconstruction MSE); "
                                        "default: elbo where the model has one"),
    n: Optional[int] = typer.Option(None, "-n", help="score the first N held-out items only"),
    top: int = typer.Option(10, help="print the TOP most anomalous items"),
    out: Optional[str] = typer.Option(None, help="write every item's scores to this .csv"),
    grid: Optional[str] = typer.Option(None, help="write the 16 most anomalous images to this .png"),
    seed: int = typer.Option(0, help="seed of the ELBO's posterior draws"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Anomaly scores of held-out items (negative ELBO, reconstruction error); ROC-AUC for a target class."""
    from .apps.anomaly import anomaly_scores

    result = anomaly_scores(run, data, data_dir=data_dir, score=score, target_classes=list(target_class) or None,
                            n=n, seed=seed, checkpoint=checkpoint, device=device)
    typer.echo(result.summary(top))
    if out:
        typer.echo(f"scores: {result.write_csv(out)}")
    if grid:
        typer.echo(f"most anomalous: {result.save_grid(grid)}")


@app.command("denoise")
def denoise_cmd(
    run: str = typer.Argument(..., help="run directory of a model that encodes and decodes"),
    input: str = typer.Option(..., "--input", help="clean image(s): file, folder or .npz"),
    noise: float = typer.Option(0.3, help="standard deviation of the added Gaussian noise on the [-1, 1] scale"),
    seed: int = typer.Option(0, help="seed of the noise"),
    out: str = typer.Option("denoised.png", help=".png grid (rows: clean, noisy, denoised) or .npz of the denoised images"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Add Gaussian noise to images, reconstruct them through the run's model, and report PSNR before and after."""
    from .apps.denoise import denoise
    from .outputs import save_samples

    result = denoise(run, input, noise=noise, seed=seed, checkpoint=checkpoint, device=device)
    psnr = {k: float(v.mean()) for k, v in result.psnr().items()}
    typer.echo(f"PSNR against the clean input over {len(result.clean)} image(s): noisy {psnr['noisy']:.2f} dB -> "
               f"denoised {psnr['denoised']:.2f} dB (the clean input's own reconstruction: {psnr['reconstructed']:.2f} dB)")
    path = save_samples(result.denoised, out, "image") if Path(out).suffix.lower() == ".npz" else result.save_grid(out)
    typer.echo(f"wrote {path}")


@app.command("encode")
def encode_cmd(
    run: str = typer.Argument(..., help="run directory of a model that encodes and decodes"),
    input: str = typer.Option(..., "--input", help="image(s): file, folder or .npz"),
    out: str = typer.Option("latents.npz", help=".npz of the latents"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Encode images into a run's latent space (.npz: `latents`)."""
    from .api import load
    from .apps.latents import encode, save_latents

    z = encode(run, input, checkpoint=checkpoint, device=device)
    typer.echo(f"wrote {len(z)} latents of shape {tuple(z.shape[1:])} to {save_latents(z, out, run=load(run))}")


@app.command("decode")
def decode_cmd(
    run: str = typer.Argument(..., help="run directory of a model that encodes and decodes"),
    input: str = typer.Option(..., "--input", help=".npz of latents (from `genlab encode`)"),
    out: str = typer.Option("decoded.png", help=".png grid or .npz of the images"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Decode latents (.npz) back into images with a run's decoder."""
    from .api import load
    from .apps.latents import decode
    from .outputs import save_samples

    r = load(run)
    x = decode(r, input, checkpoint=checkpoint, device=device)
    typer.echo(f"wrote {len(x)} images to {save_samples(x, out, r.load_model(checkpoint, device=device).output_kind)}")


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
    typer.echo(f"data       {info['data']['name']}  {info['data'].get('kind', 'image')} shape {info['data']['shape']}  "
               f"classes {info['data']['num_classes']}")
    typer.echo(f"conditions {', '.join(info['conditions']) or 'none'}   (run format {info['format_version']})")
    for field_name, ref in (info["references"] or {}).items():
        typer.echo(f"uses       {field_name} = {ref['path']} ({ref['model']}, {ref['checkpoint']}, sha256 {ref['sha256'][:12]})")
    if info["init_from"]:
        typer.echo(f"init from  {info['init_from']['path']} ({info['init_from']['checkpoint']})")
    typer.echo(f"status     {info['status']}  step {info['step']}  {info['train_seconds'] / 60:.1f} min")
    typer.echo(f"batch      {info['effective_batch_size']} effective ({info['world_size']} process(es))")
    if info["precision"]:
        compiled = f", compiled ({info['compile_seconds']:.0f} s)" if info.get("compile_seconds") else ""
        typer.echo(f"precision  {info['precision']}{compiled}  (asked: {info['train']['precision']})")
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


def _key_values(items: List[str], option: str) -> dict:
    """['k=1000', 'chunk=512'] -> {'k': 1000, 'chunk': 512}: values read as YAML scalars (numbers, true, text)."""
    from .config import apply_overrides

    for item in items:
        if not item.partition("=")[0].strip() or "=" not in item:
            fail(f"{option} takes key=value, e.g. {option} k=1000; got '{item}'")
    return apply_overrides({}, items)


@app.command("eval")
def eval_cmd(
    source: str = typer.Argument(..., help="run directory, .npz of samples, or folder of images"),
    data: Optional[str] = typer.Option(None, help="dataset to compare with (default: the run's own)"),
    data_dir: Optional[str] = typer.Option(None, help="directory holding the dataset's files"),
    n: Optional[int] = typer.Option(None, "-n", help="number of samples (default: 10000 for runs, all for files)"),
    sampler: Optional[str] = typer.Option(None, help="diffusion sampler: ddpm, ddim, euler, heun or dpm++"),
    steps: Optional[str] = typer.Option(None, help="sampler steps; several (20,50,250) give one column each"),
    eta: float = typer.Option(0.0, help="DDIM eta"),
    guidance: float = typer.Option(1.0, help="guidance scale: classifier-free, or with --classifier its scale"),
    classifier: Optional[str] = typer.Option(None, help="noise-classifier run guiding a diffusion run towards each class"),
    seed: int = typer.Option(0, help="sampling seed"),
    batch_size: int = typer.Option(500, help="samples per batch (the speed is measured per batch)"),
    checkpoint: str = typer.Option("latest", help="latest, best or step-NNNNNNNN"),
    features: str = typer.Option("auto", help="auto (the pinned network genlab ships for the data, else one trained here), "
                                 "train (always one trained here), or a local Inception-v3 weights file"),
    reference: str = typer.Option("train", help="real split to compare with: train or val"),
    reference_size: int = typer.Option(10_000, help="real items in the reference (a fixed subset if the split is larger)"),
    k: int = typer.Option(5, "-k", help="neighbours for precision/recall/density/coverage"),
    kid_subsets: int = typer.Option(100, help="KID subsets"),
    kid_subset_size: int = typer.Option(1000, help="KID subset size"),
    likelihood: bool = typer.Option(True, help="held-out bits/dim for models that have a likelihood"),
    likelihood_n: int = typer.Option(1000, help="validation items for bits/dim"),
    likelihood_option: List[str] = typer.Option([], "--likelihood-option",
                                                help="the model's likelihood setting, key=value (a VAE's "
                                                     "importance-weighted bound: k=1000)"),
    memorization: bool = typer.Option(True, help="nearest-training-image check"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
    write: bool = typer.Option(True, help="append the result to eval.json"),
    as_json: bool = typer.Option(False, "--json", help="print the eval.json entry"),
    precision: str = typer.Option("auto", help="auto (bf16 where the hardware has it, else fp32), fp32, bf16, fp16"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the sampling networks (default: where measured to pay)"),
) -> None:
    """Measure quality, diversity, coverage, memorisation, likelihood and speed; print a table."""
    from .eval.evaluate import evaluate_steps, summary

    entries = evaluate_steps(source, data, n=n, steps=_steps_list(steps), sampler=sampler, eta=eta, guidance=guidance,
                             seed=seed, batch_size=batch_size, checkpoint=checkpoint, data_dir=data_dir,
                             features=features, reference=reference, reference_size=reference_size, k=k,
                             kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, likelihood=likelihood,
                             likelihood_n=likelihood_n,
                             likelihood_options=_key_values(likelihood_option, "--likelihood-option"),
                             memorization=memorization, device=device, write=write, progress=not as_json,
                             precision=precision, compile=compile_, classifier=classifier)
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
    sampler: Optional[str] = typer.Option(None, help="diffusion sampler: ddpm, ddim, euler, heun or dpm++"),
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


@app.command("distill")
def distill_cmd(
    teacher: str = typer.Argument(..., help="the trained diffusion run to distil"),
    student_steps: int = typer.Option(2, help="DDIM steps of the distilled student"),
    teacher_steps: int = typer.Option(16, help="DDIM steps of the first round's teacher (halved each round)"),
    round_steps: Optional[int] = typer.Option(None, help="training steps per halving round"),
    adversarial_weight: float = typer.Option(0.0, help="adversarial term on the last round's samples (ADD); 0: none"),
    steps: Optional[int] = typer.Option(None, help="stop when the student reaches this many steps in total"),
    minutes: Optional[float] = typer.Option(None, help="train the student for this many minutes"),
    out: Optional[str] = typer.Option(None, help="the student's run directory"),
    overwrite: bool = typer.Option(False, help="replace an existing run at --out"),
    batch_size: Optional[int] = typer.Option(None, help="batch size"),
    lr: Optional[float] = typer.Option(None, help="learning rate"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:1"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Distil a diffusion run into a few-step student (progressive distillation), a run that references it."""
    from .api import distill

    options = {k: v for k, v in dict(batch_size=batch_size, lr=lr, seed=seed, device=device).items() if v is not None}
    run = distill(teacher, student_steps=student_steps, teacher_steps=teacher_steps, round_steps=round_steps,
                  adversarial_weight=adversarial_weight, out=out, steps=steps, minutes=minutes, overwrite=overwrite,
                  progress=not quiet, **options)
    model = run.load_model(device="cpu")
    typer.echo(f"distilled: {run.path} at step {run.info()['step']}, samples in {model.current_steps} DDIM steps "
               f"(genlab sample {run.path})")


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
    retrain: bool = typer.Option(False, help="train one here even if genlab ships pinned weights or one is cached"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
) -> None:
    """Show the feature network evaluation uses for a dataset (pinned, cached or trained now) and its accuracy."""
    from .data import load_dataset
    from .eval.features import feature_extractor
    from .runs import resolve_device

    dataset = load_dataset(data, data_dir=data_dir, image_size=image_size)
    fx = feature_extractor(dataset, "train" if retrain else "auto", device=resolve_device(device or "auto"),
                           retrain=retrain, progress=True)
    accuracy = f"{100 * fx.accuracy:.2f}% " if fx.accuracy is not None else ""
    typer.echo(f"{fx.name}  sha256 {fx.sha256[:12]}  {accuracy}{fx.accuracy_note}")
    typer.echo(fx.origin)


def main() -> None:
    try:
        app()
    except GenlabError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
