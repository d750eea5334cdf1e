"""The latest drift severity per model, as a small JSON file written atomically by the drift asset.

Sensors read this file instead of the warehouse: it is tiny, never locked, and never half-written (the new
content is written to a temporary file and renamed over the old one, RELIABILITY #2 and #9).
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def read_status(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def update_status(path: str | Path, model: str, entry: dict[str, Any]) -> None:
    """Replace one model's entry; other models' entries are kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    status = read_status(path)
    status[model] = entry
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".drift_status.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(status, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)
