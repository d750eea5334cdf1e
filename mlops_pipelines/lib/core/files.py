"""Small file helpers shared by the modules that fingerprint or embed files."""

import base64
import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def png_markdown(png: bytes, alt: str) -> str:
    """A PNG inline in markdown (how Dagster metadata shows plots in the UI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
