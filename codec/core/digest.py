"""SHA-256 of a file, read in blocks. Standard library only and no relative import: ``scripts/get_kodak.py``
loads this file by its path, before any environment (or the package's own imports) exists."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256 as hex, read 1 MiB at a time (weights files are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
