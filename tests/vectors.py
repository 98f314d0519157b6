"""The spec's worked vectors, as copied into this repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "vectors"
#: Where the spec lives when this checkout sits beside `shared/`.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "spec" / "vectors"


def load_all() -> list[dict[str, Any]]:
    """Every vector, by name."""
    return [json.loads(p.read_text()) for p in sorted(HERE.glob("*.json"))]


VECTORS = load_all()
