"""Super-resolution against bicubic upsampling on held-out images: PSNR and SSIM.

    python benchmarks/upscale.py runs/sr-mnist --data-dir ../shared/data/mnist [-n 500] [--samples 4]

Each validation image is shrunk the way the run was trained (area average by its factor), upscaled
by the run and by bicubic interpolation, and compared with the original. A diffusion upscaler draws a
sample, not the mean: `--samples K` also scores the mean of K draws (which raises PSNR, as averaging
plausible answers does, and blurs). A deterministic upscaler (SRGAN's generator) gives the same output
for every seed, which two draws show: it is scored once and `--samples` is moot. A grid of original /
low-res / bicubic / upscaled rows is written beside the run as upscale-grid.png.

    python benchmarks/upscale.py runs/srgan-mnist --data-dir ../shared/data/mnist -n 200
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from genlab.batch import LOW_RES
from genlab.data import load_dataset
from genlab.eval.fidelity import psnr, ssim
from genlab.imageio import save_grid
from genlab.runs import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    run = Run(args.run)
    model = run.load_model()
    if not model.low_res_size:
        raise SystemExit(f"{args.run} does not upscale: train an upscaler (srgan, or ddpm with --condition low_res)")
    ds = load_dataset(run.data_info["name"], data_dir=args.data_dir)
    x = ds.x_val[: args.n].float()
    size = x.shape[-1]
    low = F.interpolate(x, size=(model.low_res_size,) * 2, mode="area")
    bicubic = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    draws = [run.sample(len(x), {LOW_RES: low}, seed=seed) for seed in range(min(args.samples, 2))]
    rows = {"bicubic": bicubic}
    if len(draws) == 2 and torch.equal(draws[0], draws[1]):  # deterministic: one output per input
        rows["upscaled (deterministic)"] = draws[0]
    else:
        draws += [run.sample(len(x), {LOW_RES: low}, seed=seed) for seed in range(len(draws), args.samples)]
        rows["upscaled (one draw)"] = draws[0]
        if len(draws) > 1:
            rows[f"mean of {len(draws)} draws"] = torch.stack(draws).mean(0)
    print(f"{args.run}: {len(x)} held-out images, {model.low_res_size}x{model.low_res_size} -> {size}x{size}")
    print(f"{'method':<26} {'PSNR dB':>8} {'SSIM':>6}")
    for name, y in rows.items():
        print(f"{name:<26} {psnr(y, x).mean():>8.2f} {ssim(y, x).mean():>6.3f}")
    low_up = F.interpolate(low, size=(size, size), mode="nearest")
    grid = torch.cat([x[:16], low_up[:16], bicubic[:16], draws[0][:16]])
    path = run.path / "upscale-grid.png"
    save_grid(grid, path, nrow=16)
    print(f"grid: {path} (rows: original, low-res, bicubic, upscaled)")


if __name__ == "__main__":
    main()
