"""Retry timing: capped exponential backoff with jitter, and the periodic resync interval."""

from __future__ import annotations

import random

_rng = random.SystemRandom()


def backoff_delay(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 300.0,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``attempt`` (1-based).

    "Equal jitter": half of the exponential step is fixed, half random, so retries of many
    Landings spread out without ever collapsing to zero delay.
    """
    step = min(cap, base * (2 ** max(0, min(attempt - 1, 30))))
    return float(step / 2 + (rng or _rng).uniform(0, step / 2))


def jittered(interval: float, fraction: float = 0.1, rng: random.Random | None = None) -> float:
    """``interval`` spread by +-``fraction``, so resyncs of many Landings do not align."""
    return float(interval * (1 + (rng or _rng).uniform(-fraction, fraction)))
