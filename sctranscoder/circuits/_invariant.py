"""Input-invariant connections: what features read and write in the residual stream, whatever the input.

Along the residual stream alone (no attention, no MLP in between, norm scales
left out), feature ``i`` of an earlier layer moves feature ``j`` of a later layer
by ``read_j . write_i`` per unit of activation: the virtual weight. On a given
input the same path contributes ``activation_i * virtual_weight * norm_scale``;
:func:`sctranscoder.circuits.trace` computes that (and every other path) exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from .._deprecations import renamed_keywords
from ..harvest import mlp_sites
from ._frozen import is_centring, norm_gain


@renamed_keywords(model="lm")
def read_directions(lm, transcoder, layer: int) -> torch.Tensor:
    """``(d_hidden, d_model)``: the residual-stream direction each feature's pre-activation reads,
    through the layer's pre-MLP norm (its gain, and its centring for LayerNorm)."""
    (site,) = mlp_sites(lm, [layer]).values()
    read = transcoder.W_enc.detach().float() * transcoder.input_scale.float() * norm_gain(site.norm)
    if is_centring(site.norm):
        read = read - read.mean(-1, keepdim=True)
    return read


def write_directions(transcoder) -> torch.Tensor:
    """``(d_hidden, d_model)``: what one unit of each feature adds to the residual stream."""
    return transcoder.W_dec.detach().float() * transcoder.output_scale.float()


@renamed_keywords(model="lm")
def virtual_weights(lm, transcoders: dict, upstream: int, downstream: int) -> torch.Tensor:
    """``(d_hidden_downstream, d_hidden_upstream)`` residual-path weights from one layer's features to a later one's."""
    if not upstream < downstream:
        raise ValueError(f"upstream ({upstream}) must be an earlier layer than downstream ({downstream}).")
    return read_directions(lm, transcoders[downstream], downstream) @ write_directions(transcoders[upstream]).T


@renamed_keywords(model="lm")
@torch.no_grad()
def de_embedding(lm, transcoder, layer: int, groups: dict | None = None, *, aggregate: str = "max"):
    """How strongly each token (or group of tokens, e.g. a gene's) drives each feature directly.

    The score of token ``t`` for feature ``j`` is the pre-activation that ``t``'s
    embedding alone, normalized by the layer's pre-MLP norm, gives ``j`` (biases
    left out): the direct path, ignoring attention and earlier MLPs.

    Parameters
    ----------
    groups
        ``{name: [token ids]}``; a group's score aggregates its tokens' scores
        (``"max"``, ``"mean"`` or ``"sum"``). Without groups, every vocabulary token.

    Returns
    -------
    ``(scores, names)``: ``(d_hidden, n_groups)`` array and the column names.
    """
    if aggregate not in ("max", "mean", "sum"):
        raise ValueError(f"aggregate={aggregate!r} must be 'max', 'mean' or 'sum'.")
    (site,) = mlp_sites(lm, [layer]).values()
    embeddings = lm.get_input_embeddings().weight.detach()
    normalized = site.norm(embeddings.to(next(site.norm.parameters()).dtype)).float()
    if getattr(site.norm, "bias", None) is not None:
        normalized = normalized - site.norm.bias.detach().float()
    scores = (transcoder.W_enc.detach().float() * transcoder.input_scale.float()) @ normalized.T.to(transcoder.device)
    if groups is None:
        return scores.cpu().numpy(), list(range(embeddings.shape[0]))
    names, columns = list(groups), []
    reduce = {"max": lambda s: s.max(-1).values, "mean": lambda s: s.mean(-1), "sum": lambda s: s.sum(-1)}[aggregate]
    for name in names:
        ids = torch.as_tensor(list(groups[name]), dtype=torch.long)
        if ids.numel() == 0:
            raise ValueError(f"Group {name!r} has no tokens.")
        columns.append(reduce(scores[:, ids]))
    return torch.stack(columns, 1).cpu().numpy(), names


def top_groups(scores: np.ndarray, names, feature: int, n: int = 10) -> list[tuple[str, float]]:
    """The ``n`` groups (genes) with the highest de-embedding score for one feature."""
    order = np.argsort(-scores[feature])[:n]
    return [(names[i], float(scores[feature, i])) for i in order]
