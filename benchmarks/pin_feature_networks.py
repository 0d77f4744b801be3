"""Train the feature networks genlab ships for its built-in image data, and write them into the package.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pin_feature_networks.py [--mnist-dir DIR] [--only NAME]

For each data set this trains the default recipe (`train_feature_net` with `FeatureNetConfig()`) on one
CPU thread, as `load_or_train` would, and writes `src/genlab/eval/pinned/NAME.safetensors` beside
`NAME.json`: the usual record (accuracy, data, task, input shape, classes, config, version, weights
sha256) plus the data it was trained on (source, split, sizes, a fingerprint of the exact tensors), the
torch version and the machine. It prints each network's held-out accuracy, file size, sha256 and
training seconds, and the `PINNED_SHA256` lines to paste into `genlab/eval/features.py`.

Running it again on another CPU or torch build gives other bytes: that is why the files are shipped.
Re-pin only when FEATURES_VERSION or the recipe changes, and say so in the release notes: every score
measured with the old weights stops being comparable.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts its thread pool

import argparse
import json
import platform
from pathlib import Path

import torch

from genlab.data import Dataset, load_dataset
from genlab.eval.features import (FEATURES_VERSION, FeatureNetConfig, fingerprint, save_tensors,
                                  train_feature_net)

REPO = Path(__file__).resolve().parents[1]
SIZE_LIMIT = 1 << 20  # "a few hundred kB": warn above 1 MiB rather than change the recipe silently


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_data(dataset: Dataset, split_note: str) -> dict:
    return {"name": dataset.name, "source": dataset.source, "notes": dataset.notes, "split": split_note,
            "train_size": len(dataset.x_train), "val_size": len(dataset.x_val),
            "fingerprint": fingerprint(dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val)}


def pin(dataset: Dataset, split_note: str, out: Path) -> dict:
    torch.set_num_threads(1)  # see load_or_train: one thread trains the same bytes on the same kind of CPU
    net, meta = train_feature_net(dataset, FeatureNetConfig(), device="cpu")
    weights = out / f"{dataset.name}.safetensors"
    meta["weights_sha256"] = save_tensors(net.state_dict(), weights)
    meta.update(pinned=True, trained_on=describe_data(dataset, split_note), torch=torch.__version__,
                machine=f"{cpu_name()} ({platform.machine()}), {torch.get_num_threads()} thread",
                file_bytes=weights.stat().st_size)
    assert meta["version"] == FEATURES_VERSION
    record = out / f"{dataset.name}.json"
    record.write_text(json.dumps(meta, indent=1) + "\n")
    for path in (weights, record):
        path.chmod(0o644)  # package data: safetensors writes 0600
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist-dir", help="directory with the MNIST IDX .gz files",
                        default=os.environ.get("GENLAB_MNIST_DIR") or REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--out", default=REPO / "src" / "genlab" / "eval" / "pinned", type=Path)
    parser.add_argument("--only", choices=["digits", "mnist"], action="append", help="pin only this data set")
    args = parser.parse_args()
    names = args.only or ["digits", "mnist"]
    args.out.mkdir(parents=True, exist_ok=True)

    records = {}
    for name in names:
        if name == "digits":
            dataset = load_dataset("digits")
            split = ("scikit-learn's embedded UCI optical digits (1,797 8x8 images), split 90/10 by genlab "
                     "with seed 0")
        else:
            dataset = load_dataset("mnist", data_dir=args.mnist_dir)
            official = "official training split" if any(Path(args.mnist_dir).glob("train-*")) else None
            split = ("the official MNIST train split for training, the official test split for validation"
                     if official else
                     "the official MNIST test split (t10k, 10,000 images) only, the one split in the directory "
                     "it was pinned from; genlab split it 90/10 with seed 0 (the official training split was "
                     "not used)")
        print(f"pinning {dataset.describe()} ...", flush=True)
        records[name] = pin(dataset, split, args.out)

    print()
    print(f"{'data':8} {'accuracy':>9} {'size':>10} {'seconds':>8}  sha256")
    for name, m in records.items():
        print(f"{name:8} {100 * m['accuracy']:8.2f}% {m['file_bytes'] / 1024:7.0f} kB {m['train_seconds']:8.1f}  "
              f"{m['weights_sha256']}")
        if m["file_bytes"] > SIZE_LIMIT:
            print(f"  note: {name}.safetensors is {m['file_bytes'] / 2**20:.2f} MiB, more than a few hundred kB")
    print("\nPINNED_SHA256 in src/genlab/eval/features.py:")
    for name, m in records.items():
        print(f'    "{name}": "{m["weights_sha256"]}",')


if __name__ == "__main__":
    main()
