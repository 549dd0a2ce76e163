"""Stable hashes: every random draw, bucket assignment and content key
derives from SHA-256 here.

Python's built-in `hash()` is salted per process, so it would give different
placements on different workers and reruns. SHA-256 of a canonical string does
not.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

DIGEST_CHARS = 32  # hex characters kept of a content or key digest


def stable_hash(*parts: object) -> int:
    """A 64-bit integer that depends only on the parts' string forms."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy generator seeded from the parts, e.g. (run seed, bg, fg, number)."""
    return np.random.default_rng(stable_hash(*parts))


def text_digest(text: str) -> str:
    """Short hex digest of a string (option fingerprints, pair keys)."""
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def content_digest(*blobs: Optional[bytes]) -> str:
    """Short hex digest of one or more files' bytes (None for an absent one)."""
    hasher = hashlib.sha256()
    for blob in blobs:
        hasher.update(b"-" if blob is None else hashlib.sha256(blob).digest())
    return hasher.hexdigest()[:DIGEST_CHARS]
