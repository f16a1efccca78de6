"""Small helpers shared by every layer: seeded generators and stable ids.

Randomness in evalx comes only from `generator(seed, stream, *key)`: a numpy Generator
derived with SeedSequence from stable integer ids (never Python's `hash()`), so a draw
is tied to what it is for, not to the order in which code happens to ask for it.
"""

from __future__ import annotations

import zlib

import numpy as np

BLOCK = 1 << 15
"""Requests per sampling block: draws for request i never depend on how many follow it."""


def stable_id(name: str) -> int:
    """A process-independent 32-bit id for a name (CRC-32), for seeding streams by name."""
    return zlib.crc32(name.encode("utf-8"))


def generator(seed: int, stream: int, *key: int) -> np.random.Generator:
    """The generator for one stream of draws under a root seed, keyed by integers."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, *key)))
    )


def blocks(n: int) -> list[tuple[int, int, int]]:
    """(block index, start, stop) covering range(n) in BLOCK-sized pieces."""
    return [(b, lo, min(lo + BLOCK, n)) for b, lo in enumerate(range(0, n, BLOCK))]
