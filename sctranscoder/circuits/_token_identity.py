"""Features that only read which token they sit on: measured, then folded into their token's input node.

A layer-0 transcoder feature often fires on one gene's token wherever that gene
is, whatever the cell: it says which gene is there, not what the cell is. In a
circuit such a feature is part of the gene's input, not evidence of its own.
The measure is how much of a feature's activation the identity of the token it
sits on predicts: over every position of some prompts, the adjusted R^2 of a
one-way ANOVA of the activation on the token id (each token a group), counted
only at tokens seen at least twice (a token seen once is fitted exactly and says
nothing). A feature that reads its context gets a low R^2: the same token gives
it different values in different prompts.
"""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def feature_activations(lm, transcoders: dict, prompts, features) -> tuple[np.ndarray, np.ndarray]:
    """Activations of ``features`` (``(layer, feature)`` pairs) at every position of every prompt.

    Returns ``(values, token_ids)``: ``(n_positions, n_features)`` activations and ``(n_positions,)`` the
    token id at each position, prompts concatenated (one forward pass per prompt).
    """
    from ..harvest import MLPCapture

    features = [(int(layer), int(index)) for layer, index in features]
    layers = sorted({layer for layer, _ in features})
    device = next(lm.parameters()).device
    values, tokens = [], []
    for ids in prompts:
        ids = torch.as_tensor(list(map(int, ids)), device=device).reshape(1, -1)
        with MLPCapture(lm, layers) as capture:
            lm(ids, use_cache=False, logits_to_keep=1)  # only the MLP inputs are read
            encoded = {layer: transcoders[layer].encode(capture.inputs[layer][0].float()).cpu() for layer in layers}
        values.append(torch.stack([encoded[layer][:, index] for layer, index in features], 1).numpy()
                      if features else np.zeros((ids.shape[1], 0), np.float32))
        tokens.append(ids[0].cpu().numpy())
    if not values:
        return np.zeros((0, len(features)), np.float32), np.zeros(0, np.int64)
    return np.concatenate(values), np.concatenate(tokens)


def token_identity_r2(values, token_ids, *, min_count: int = 2) -> np.ndarray:
    """Per column of ``values`` (``(n_positions, n_features)``): the adjusted R^2 of its activation on the token id
    at each position, over positions whose token occurs at least ``min_count`` times. NaN where the activation does
    not vary there (nothing to explain) or too few positions remain."""
    values = np.asarray(values, dtype=np.float64)
    token_ids = np.asarray(token_ids)
    _, codes, counts = np.unique(token_ids, return_inverse=True, return_counts=True)
    keep = counts[codes] >= min_count
    values, codes = values[keep], codes[keep]
    _, codes = np.unique(codes, return_inverse=True)
    n, groups = len(codes), int(codes.max()) + 1 if len(codes) else 0
    out = np.full(values.shape[1], np.nan)
    if n - groups < 1 or groups < 2:
        return out
    sizes = np.bincount(codes, minlength=groups).astype(np.float64)
    means = np.zeros((groups, values.shape[1]))
    np.add.at(means, codes, values)
    means /= sizes[:, None]
    within = ((values - means[codes]) ** 2).sum(0)
    total = ((values - values.mean(0)) ** 2).sum(0)
    varies = total > 1e-12 * max(1.0, float(np.abs(values).max(initial=0.0)) ** 2)
    out[varies] = 1.0 - (within[varies] / (n - groups)) / (total[varies] / (n - 1))
    return out
