"""Randomized controls for what a transcoder's features seem to mean.

A feature's gene list can look enriched through the geometry of the model's activations alone (every position
after attention carries its cell's context). Random encoder directions that fire as often as the trained
features, pushed through the same feature-to-gene method, show how often that happens by chance.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ._model import Transcoder

NEVER = 1e30  # the threshold shift of a direction standing in for a feature that never fires


def firing_rates(transcoder: Transcoder, inputs: torch.Tensor, *, rows_per_encode: int = 8192) -> torch.Tensor:
    """Share of ``inputs`` rows (MLP inputs) on which each feature of ``transcoder`` is active."""
    active = torch.zeros(transcoder.cfg.d_hidden, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(inputs), rows_per_encode):
            rows = inputs[start:start + rows_per_encode].to(transcoder.device, transcoder.W_enc.dtype)
            active += (transcoder.encode(rows) > 0).sum(0).double().cpu()
    return active / max(len(inputs), 1)


def random_directions(transcoder: Transcoder, inputs: torch.Tensor, *, seed: int = 0) -> Transcoder:
    """A copy of ``transcoder`` whose encoder is random directions, each firing as often as the feature it
    replaces.

    Each encoder row is a Gaussian random direction with the trained row's norm; its threshold is the
    quantile of its projections on ``inputs`` (a sample of the MLP inputs the transcoder reads) that makes it
    fire on the same share of rows as the trained feature (JumpReLU: a feature's activity is how far its
    projection passes that threshold). Input normalisation and decoder are kept, so everything downstream
    (pooling per gene and cell, gene lists, enrichment) runs unchanged.

    Parameters
    ----------
    transcoder
        The trained transcoder.
    inputs
        ``(rows, d_in)`` MLP inputs of the data the features are read on (e.g. a harvest of the same cells).
    seed
        Seed of the directions.
    """
    if inputs.ndim != 2 or inputs.shape[1] != transcoder.cfg.d_in or len(inputs) < 2:
        raise ValueError(f"inputs must be (rows >= 2, d_in={transcoder.cfg.d_in}) MLP inputs; got "
                         f"{tuple(inputs.shape)}.")
    rates = firing_rates(transcoder, inputs)
    cfg = replace(transcoder.cfg, activation="jumprelu")
    control = Transcoder(cfg, device=transcoder.device, dtype=transcoder.W_enc.dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        state = {k: v for k, v in transcoder.state_dict().items() if k in control.state_dict()
                 and k not in ("W_enc", "b_enc", "log_threshold", "bandwidth")}
        control.load_state_dict(state, strict=False)
        directions = torch.randn(cfg.d_hidden, cfg.d_in, generator=generator, dtype=torch.float64)
        directions *= (transcoder.W_enc.detach().double().norm(dim=1) / directions.norm(dim=1)).cpu()[:, None]
        control.W_enc.copy_(directions.to(control.W_enc))
        control.b_enc.zero_()
        projections = control.pre_activations(inputs.to(control.device, control.W_enc.dtype)).double().cpu()
        cut = _cut_points(projections, rates)
        shift = torch.where(rates > 0, cut, torch.full_like(cut, NEVER))
        # fire where the projection passes the quantile: b_enc moves it to just above JumpReLU's threshold
        threshold = float(projections.abs().mean()) * 1e-6 + 1e-12
        control.b_enc.copy_((threshold - shift).to(control.b_enc))
        control.log_threshold.fill_(torch.log(torch.tensor(threshold)).item())
        control.bandwidth.fill_(threshold)
    return control.eval()


def _cut_points(values: torch.Tensor, rates: torch.Tensor) -> torch.Tensor:
    """Per column ``j``: the value that ``rates[j]`` of the column's entries lie strictly above."""
    n = len(values)
    index = ((1 - rates.clamp(0, 1)) * n).ceil().long().sub(1).clamp(0, n - 1).tolist()
    # one order statistic per column: a partial sort of each (contiguous) column, not a full sort of them all
    columns = values.T.contiguous().numpy()
    cut = [np.partition(column, k)[k] for column, k in zip(columns, index)]
    return torch.as_tensor(np.asarray(cut, dtype=columns.dtype))
