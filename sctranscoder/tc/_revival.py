"""Revival of dead features by resampling them towards badly reconstructed rows."""

from __future__ import annotations

import torch


@torch.no_grad()
def resample_dead(transcoder, optimizer, x, y, output, step: int) -> int:
    """Point dead features at the worst-reconstructed rows of the batch; returns how many were resampled."""
    dead = torch.nonzero(transcoder.dead_features()).flatten()
    if dead.numel() == 0:
        return 0
    error = (y - output).pow(2).sum(-1)
    generator = torch.Generator().manual_seed(transcoder.cfg.seed * 1_000_003 + step)
    rows = torch.multinomial(error.cpu() + 1e-12, dead.numel(), replacement=dead.numel() > len(error),
                             generator=generator).to(x.device)
    residual = (y - output)[rows]
    centred = transcoder.normalized_input(x)[rows]
    alive = ~transcoder.dead_features()
    scale = transcoder.W_enc[alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0)
    transcoder.W_dec[dead] = residual / residual.norm(dim=1, keepdim=True).clamp_min(1e-8)
    transcoder.W_enc[dead] = 0.2 * scale * centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-8)
    transcoder.b_enc[dead] = 0.0
    transcoder.tokens_since_fired[dead] = 0
    for parameter in (transcoder.W_dec, transcoder.W_enc, transcoder.b_enc):
        state = optimizer.state.get(parameter, {})
        for name in ("exp_avg", "exp_avg_sq"):
            if name in state:
                state[name][dead] = 0.0
    return int(dead.numel())
