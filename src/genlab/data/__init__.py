"""Datasets behind one interface: float32 tensors, images in [-1, 1] as (N, C, H, W), 2-D points as (N, 2).

Every loader returns a `Dataset` with a train part and a validation part split with a fixed seed,
optional integer labels, and notes that tell the user what was found (e.g. "only the test split").
"""

from __future__ import annotations

from .base import Dataset, DatasetInfo, dataset_infos, load_dataset

__all__ = ["Dataset", "DatasetInfo", "dataset_infos", "load_dataset"]
