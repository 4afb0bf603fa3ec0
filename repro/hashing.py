"""One stable hash of JSON-able values: the spec hash, the seed derivation, study identities."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any, n: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]
