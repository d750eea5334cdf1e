"""File fingerprints."""

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
