"""Deterministic seeds for the replay generators: the same inputs give the same rows on every
machine and Python version (``hash()`` is salted per process, so it cannot serve)."""

from __future__ import annotations

MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finaliser: a fixed, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def seed_for(salt: int, *parts) -> int:
    """A 64-bit seed from ``parts``; each generator has its own ``salt`` so datasets never share streams."""
    h = salt
    for part in parts:
        for ch in str(part).encode():
            h = mix64(h ^ ch)
        h = mix64(h ^ 0xFF)
    return h
