"""A transcoder config sized to a model's MLPs, and the seconds one training step takes."""

from __future__ import annotations

import time
from dataclasses import replace

from ._config import TranscoderConfig


def config_for_width(width: int, cfg: TranscoderConfig | None = None, **overrides) -> TranscoderConfig:
    """A :class:`TranscoderConfig` for MLPs mapping ``width`` to ``width``: ``cfg`` with ``overrides`` applied
    (default: the defaults), refused when its widths are not ``width``."""
    if cfg is None:
        cfg = TranscoderConfig(d_in=width, d_out=width, **overrides)
    elif overrides:
        cfg = replace(cfg, **overrides)
    if cfg.d_in != width or cfg.d_out != width:
        raise ValueError(f"The transcoder config has d_in={cfg.d_in}, d_out={cfg.d_out}; this model's MLPs map "
                         f"{width} to {width}.")
    return cfg


def step_seconds(cfg: TranscoderConfig, device, n_steps: int = 3) -> float:
    """Seconds of one training step of a transcoder with ``cfg`` on ``device`` (the fastest of ``n_steps``)."""
    import torch

    from ._model import Transcoder

    transcoder = Transcoder(cfg, device=device).train()
    optimizer = torch.optim.Adam(transcoder.parameters(), lr=1e-4)
    x = torch.randn(cfg.batch_size, cfg.d_in, device=device)
    steps = []
    for _ in range(n_steps):
        start = time.perf_counter()
        out = transcoder(x, x)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        steps.append(time.perf_counter() - start)
    return min(steps)
