"""Stable hashing: every random draw and every bucket assignment derives from it.

Python's built-in `hash()` is salted per process, so it would give different
placements on different workers and reruns. SHA-256 of a canonical string does
not.
"""
import hashlib

import numpy as np


def stable_hash(*parts: object) -> int:
    """A 64-bit integer that depends only on the parts' string forms."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def stable_unit_interval(*parts: object) -> float:
    """A number in [0, 1) that depends only on the parts."""
    return stable_hash(*parts) / 2.0**64


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy generator seeded from the parts, e.g. (run seed, bg, fg, number)."""
    return np.random.default_rng(stable_hash(*parts))
