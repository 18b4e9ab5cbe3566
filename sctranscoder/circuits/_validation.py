"""Measures a circuit is checked by: the share of the call its features carry alone, the attention-mask
gradient of each input group, and which features each input group feeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

ABLATIONS = ("zero", "mean")


def graph_features(graph) -> list:
    """A graph's feature nodes as ``(layer, feature, position)``."""
    return [(d["layer"], d["feature"], d["position"]) for _, d in graph.nodes(data=True) if d["kind"] == "feature"]


def feature_shares(lm, transcoders, prompts, circuits, label_index: int, answer_ids, *,
                   ablation: str = "zero") -> list:
    """Per prompt: the share of the label's log-odds (over all candidates) that its circuit's features carry.

    ``circuits``: per prompt, a graph or a list of ``(layer, feature, position)``. In the replacement model
    (errors held, attention free), ``(only the circuit's features on - no feature on) / (every feature on - no
    feature on)``; features switched off are set to 0 (``"zero"``) or to their mean activation over these
    prompts' tokens (``"mean"``). The measure :func:`grow_circuit` grows circuits by (:class:`FeatureShare`).
    """
    from ._grow import FeatureShare
    from ._intervene import feature_means

    if ablation not in ABLATIONS:
        raise ValueError(f"ablation={ablation!r} must be one of {ABLATIONS}.")
    means = feature_means(lm, transcoders, prompts) if ablation == "mean" else None
    shares = []
    for ids, features in zip(prompts, circuits):
        features = graph_features(features) if hasattr(features, "nodes") else features
        shares.append(FeatureShare(lm, transcoders, ids, answer_ids, label_index, ablation=means)(features))
    return shares


def group_mask_gradients(lm, prompts, groups, answer_ids, label_index: int) -> pd.Series:
    """Per input group (e.g. a gene): :func:`attention_mask_gradients` of log P(label), mean over the prompts
    (0 where a group is not in a prompt). ``groups``: per prompt, per token, a group name or None."""
    from ._masking import attention_mask_gradients

    total: dict = {}
    for ids, names in zip(prompts, groups):
        for group, value in attention_mask_gradients(lm, ids, names, answer_ids, label_index).items():
            total[group] = total.get(group, 0.0) + value
    return pd.Series(total, dtype=float) / max(1, len(prompts))


def input_features(graph) -> dict:
    """Per grouped input of a merged circuit: the features it feeds directly, strongest first."""
    fed = {}
    for node, data in graph.nodes(data=True):
        if data.get("kind") != "input" or not data.get("grouped"):
            continue
        out = [(abs(w), graph.nodes[t]["label"]) for _, t, w in graph.out_edges(node, data="weight")
               if graph.nodes[t].get("kind") == "feature"]
        fed[data["label"]] = [label for _, label in sorted(out, reverse=True)]
    return fed


def spearman(a, b) -> float:
    """Spearman correlation, NaN for fewer than three pairs or a constant side."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b)[0])
