"""File helpers shared by downloads, checkpoints and cached feature networks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    """Where genlab caches what it can rebuild (features, converted data, compiled kernels): $GENLAB_CACHE or ~/.cache/genlab."""
    return Path(os.environ.get("GENLAB_CACHE") or Path.home() / ".cache" / "genlab").expanduser()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks (datasets publish MD5s; our own files use SHA-256)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
