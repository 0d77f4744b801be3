"""Fetch dataset files from their official source and check their published checksums."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..files import file_digest


def download(url: str, dest: Path, md5: str) -> Path:
    """Download `url` to `dest` atomically and verify its MD5 (the checksum the dataset authors publish)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        got = file_digest(tmp, "md5")
        if got != md5:
            raise DataError(f"checksum mismatch for {url}: expected md5 {md5}, got {got}. Try again later.")
        os.replace(tmp, dest)
    except OSError as e:
        raise DataError(
            f"could not download {url} ({e}). Download it by hand into {dest.parent} and pass --data-dir."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest
