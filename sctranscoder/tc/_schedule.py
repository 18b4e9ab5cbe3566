"""The learning-rate schedule: linear warmup, then cosine or linear decay."""

from __future__ import annotations

import math


def learning_rate_factor(step: int, cfg) -> float:
    """Linear warmup to 1, then cosine or linear decay to 0.1 at the last step (of a resolved config)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "none":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(1, cfg.n_steps - cfg.warmup_steps)
    progress = min(1.0, progress)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.decay == "cosine" else 1 - progress
    return 0.1 + 0.9 * shape
