"""Data sources behind one interface: batches of named tensors (`genlab.batch`), a function of their arguments.

`load_data(name)` resolves a registered name (`digits`, `mnist`, `moons`, `sunspots`...) or a scheme
`SCHEME:ARGUMENT`: `imagefolder:PATH`, `text:PATH`, `pairs:PATH`, `csv:PATH[:COLUMN]`, `wav:PATH`,
`domains:A+B`. In-memory image and point sets are `Dataset`s (`load_dataset`, for evaluation); token
streams, sequence pairs, series and two-domain sets are other `DataSource`s. Each module registers
what it provides: images.py, imagecache.py, toy.py, text.py, sequences.py, series.py, domains.py.
A run keeps `DataSource.assets()` (tokenizer, statistics): `text.tokenizer_from_assets` and
`series.series_stats_from_assets` read them back without the data.
"""

from __future__ import annotations

from .base import (DataSource, DataSpec, Dataset, DatasetInfo, LoadOptions, dataset_infos, epoch_indices,
                   load_data, load_dataset)

__all__ = ["DataSource", "DataSpec", "Dataset", "DatasetInfo", "LoadOptions", "dataset_infos", "epoch_indices",
           "load_data", "load_dataset"]
