"""genlab's DDPM against a diffusers UNet2DModel + DDPMScheduler of about the same size, on the same data,
for the same wall-clock minutes, one after the other; both sampled with DDIM 50 and scored by `genlab eval`.

    pip install -c constraints.txt -e ".[bench]"        # diffusers: for this benchmark only
    python benchmarks/diffusion_vs_diffusers.py --data-dir ../shared/data/mnist --minutes 10 -n 2000

Both train on genlab's batches of the same data (batch 64, AdamW, lr 1e-3 with 200 warm-up steps, EMA
0.999, gradient clipping at 1) under the same autocast (`--precision`, bf16 where the CPU has it), so
the difference is the model and its training objective, not the data pipeline or the arithmetic.
The diffusers side follows its unconditional training example: epsilon prediction, MSE, the cosine
("squaredcos_cap_v2") schedule, DDIMScheduler with clipping for sampling.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
import torch.nn.functional as F

import genlab
from genlab.data import load_dataset
from genlab.precision import autocast, resolve_precision


def diffusers_unet(channels: int = 32):
    from diffusers import UNet2DModel

    # 28 -> 14 -> 7 like genlab's UNet, attention at the two lower resolutions
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(channels, 2 * channels, 2 * channels), norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


def train_diffusers(data, minutes: float, precision: str, seed: int = 0):
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    unet = diffusers_unet()
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
    device, g = torch.device("cpu"), torch.Generator().manual_seed(seed)
    step, start = 0, time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        x = data.train_batch(step, 64, seed=seed)["x"]
        noise = torch.randn(x.shape, generator=g)
        t = torch.randint(0, 1000, (x.shape[0],), generator=g)
        with autocast(device, precision):
            pred = unet(scheduler.add_noise(x, noise, t), t).sample
        loss = F.mse_loss(pred.float(), noise)
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 200)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        step += 1
    return ema.eval(), scheduler, step


@torch.inference_mode()
def sample_diffusers(unet, train_scheduler, n: int, steps: int, precision: str, batch: int = 500, seed: int = 0):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(train_scheduler.config)
    scheduler.set_timesteps(steps)
    g, out, device = torch.Generator().manual_seed(seed), [], torch.device("cpu")
    start = time.perf_counter()
    for i in range(math.ceil(n / batch)):
        x = torch.randn((min(batch, n - i * batch), 1, 28, 28), generator=g)
        for t in scheduler.timesteps:
            with autocast(device, precision):
                eps = unet(x, t).sample
            x = scheduler.step(eps.float(), t, x).prev_sample
        out.append(x.clamp(-1, 1))
    return torch.cat(out), n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", default="bench-diffusers")
    args = parser.parse_args()
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise SystemExit('this benchmark needs diffusers: pip install -c constraints.txt -e ".[bench]"') from None
    precision = resolve_precision(args.precision, torch.device("cpu"))
    data = load_dataset(args.data, data_dir=args.data_dir)
    rows = []

    run = genlab.train("ddpm", args.data, out=f"{args.out}/genlab-ddpm", minutes=args.minutes, data_dir=args.data_dir,
                       precision=args.precision, overwrite=True, progress=False)
    entry = genlab.evaluate(run, n=args.n, sampler="ddim", steps=50, likelihood=False, memorization=False,
                            precision=args.precision, write=False)
    info = run.info()
    rows.append(("genlab ddpm", info["parameters"], info["step"], entry["scores"], entry["speed"]["samples_per_sec"]))

    unet, scheduler, steps = train_diffusers(data, args.minutes, precision)
    x, rate = sample_diffusers(unet, scheduler, args.n, 50, precision)
    scores = genlab.evaluate(x, data=args.data, data_dir=args.data_dir, write=False)["scores"]
    rows.append(("diffusers UNet2DModel", sum(p.numel() for p in unet.parameters()), steps, scores, rate))

    print(f"\n{args.data}, {args.minutes:g} minutes of training each, precision {precision}, DDIM 50, {args.n} samples")
    print(f"{'model':<24} {'params':>9} {'steps':>7} {'FID':>7} {'precision':>9} {'recall':>7} {'samples/s':>10}")
    for name, params, steps, s, rate in rows:
        print(f"{name:<24} {params:>9,} {steps:>7} {s['fid']:>7.2f} {s['precision']:>9.3f} {s['recall']:>7.3f} {rate:>10.1f}")


if __name__ == "__main__":
    main()
