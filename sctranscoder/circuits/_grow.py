"""A circuit grown until its features alone carry the call, measured by experiment.

circuit-tracer prunes a graph to the nodes holding 0.8 of the cumulative
influence; that says nothing about whether the kept features can make the call
on their own. The measure here is an experiment in the replacement model (MLPs
replaced by transcoders, their errors held, attention free): every feature
outside the set is switched off (0, or its mean) at every position of the
traced sequence (see below), and a
candidate's log-odds over all candidate answers is read as the model's
candidate scoring reads it::

    share = (log-odds, only the set on - log-odds, no feature on)
            / (log-odds, every feature on - log-odds, no feature on)

Growing adds features in the order of their influence on the target: the
graph's standard circuit first, then the graph's other feature nodes by
circuit-tracer's node influence, then the active features over the node budget
by their influence through the rows computed. The count is found by doubling
and bisection (one replacement-model pass per check); the share returned is the
one measured on the set returned.

The features switched off are those of the traced sequence (the prompt and the
label's answer): a rival answer's row shares them up to where the answers part;
its own later tokens are not traced, so their features are recomputed freely, as
attention is. With zero ablation, every active feature of the traced sequence
on is then the model itself (a share of 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .._deprecations import renamed_keywords
from ._candidates import log_odds, shared_prefix_length
from ._intervene import ReplacementModel


def _log_odds(log_probs, index: int) -> float:
    return float(log_odds(float(log_probs[index])))  # exact near p = 1, where log p saturates


class FeatureShare:
    """The share of candidate ``index``'s log-odds that a set of features carries alone (see the module).

    ``ablation``: ``{layer: (d_hidden,)}`` values for switched-off features (default 0: zero ablation).
    ``replacement``: the prompt's :class:`ReplacementModel` already built (its runs here let attention move).
    Calling it with ``(layer, feature, position)`` triples runs the replacement model once.
    """

    @renamed_keywords(model="lm", candidates="answer_ids")
    def __init__(self, lm, transcoders: dict, prompt_ids, answer_ids, index: int, *, ablation=None,
                 replacement: ReplacementModel | None = None):
        if not 0 <= index < len(answer_ids):
            raise IndexError(f"index {index} is not one of the {len(answer_ids)} candidates.")
        self.replacement = replacement or ReplacementModel(lm, transcoders, prompt_ids, answer_ids=answer_ids)
        self.index, self.ablation = index, ablation
        # the traced sequence is the prompt and the label's answer but its last token; a rival's row shares it up to
        # where the answers part, and its own later tokens (not traced) keep their features
        n_prompt, mine = len(list(prompt_ids)), list(answer_ids[index])
        self.scope = [n_prompt + min(shared_prefix_length(list(answer), mine), len(mine) - 1) for answer in answer_ids]
        self.everything = _log_odds(self.replacement.run(free_attention=True)[1], index)
        self.nothing = self._log_odds_with([])
        self.runs = 2

    def _log_odds_with(self, features) -> float:
        run = self.replacement.run(keep_only=list(features), ablation=self.ablation, scope=self.scope,
                                   free_attention=True)
        return _log_odds(run[1], self.index)

    def __call__(self, features) -> float:
        spread = self.everything - self.nothing
        if abs(spread) <= 1e-9:  # features change nothing: no share to carry
            return float("nan")
        self.runs += 1
        alone = self._log_odds_with(features)
        return (alone - self.nothing) / spread


class Grown(NamedTuple):
    """What :func:`grow_circuit` returns."""

    include: torch.Tensor
    """Boolean mask over the graph's feature nodes: the circuit's nodes (pass to ``to_networkx(include=)``)."""
    features: list
    """The circuit's features as ``(layer, feature, position)``: nodes, then features over the node budget."""
    n_over_budget: int
    """How many of them are active features over the node budget (no row, so not drawn)."""
    share: float
    """The share the circuit's features carry alone."""
    reached: bool
    share_pruned: float
    """The share the standard pruned circuit's features carry alone."""
    n_pruned: int
    share_all: float
    """The share every active feature carries (nan where a smaller set reached the goal first)."""
    n_checks: int


def _triples(rows) -> list:
    return [(int(layer), int(index), int(position)) for layer, position, index in rows.tolist()]


def grow_circuit(graph, share, min_share: float = 0.8, *, node_threshold: float = 0.8,
                 edge_threshold: float = 0.98, tolerance: float = 0.02) -> Grown:
    """Grow ``graph``'s pruned circuit until its features alone carry ``min_share`` (``share``: a
    :class:`FeatureShare` or any callable of feature triples). The size is found to within ``tolerance`` of
    itself (as if the share never fell as features are added; the share returned is measured on the set
    returned). When even every active feature falls short, the standard circuit is returned with
    ``reached=False``."""
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share={min_share} must lie in (0, 1].")
    n_nodes = graph.n_features
    standard = graph.prune(node_threshold, edge_threshold).nodes[:n_nodes].clone()
    base = _triples(graph.features[standard])
    checks = 1
    share_pruned = share(base)
    if np.isfinite(share_pruned) and share_pruned >= min_share:
        return Grown(standard, base, 0, share_pruned, True, share_pruned, len(base), float("nan"), checks)
    influence = graph.node_influence()[:n_nodes]
    rest = torch.nonzero(~standard).flatten()
    rest = rest[torch.argsort(influence[rest], descending=True, stable=True)]
    order = _triples(graph.features[rest])
    if graph.active is not None and graph.active_influence is not None:
        nodes = set(map(tuple, graph.features.tolist()))
        over = torch.tensor([tuple(row) not in nodes for row in graph.active.tolist()], dtype=torch.bool)
        over = torch.nonzero(over).flatten()
        over = over[torch.argsort(graph.active_influence[over], descending=True, stable=True)]
        order += _triples(graph.active[over])

    def carries(count):
        nonlocal checks
        checks += 1
        value = share(base + order[:count])
        return value, bool(np.isfinite(value) and value >= min_share)

    # doubling from the standard circuit's size, then bisection: about 2 log2(size) passes, not log2(n_active)
    low, high, share_all = 0, max(1, len(base)), float("nan")
    while True:
        high = min(high, len(order))
        best, ok = carries(high)
        if ok or high == len(order):
            break
        low, high = high, 2 * high
    if high == len(order):
        share_all = best
    if not ok:
        return Grown(standard, base, 0, share_pruned, False, share_pruned, len(base), share_all, checks)
    while high - low > max(1, int(tolerance * (len(base) + high))):  # low fails, high carries min_share
        middle = (low + high) // 2
        value, ok = carries(middle)
        if ok:
            high, best = middle, value
        else:
            low = middle
    include = standard.clone()
    in_graph = min(high, len(rest))
    include[rest[:in_graph]] = True
    return Grown(include, base + order[:high], high - in_graph, best, True, share_pruned, len(base), share_all, checks)
