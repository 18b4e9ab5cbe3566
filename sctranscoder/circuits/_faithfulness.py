"""Does a traced circuit behave as its attributions say? Ablations in the real replacement model.

The replacement model runs the real network with each MLP replaced by its
transcoder plus that MLP's error on this input (held fixed), so with nothing
ablated it reproduces the model exactly. Unlike the linearized model used for
tracing, attention patterns, norm scales and later features all respond to an
ablation here, so agreement is a real test of the attributions.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from .._deprecations import renamed_keywords
from ..harvest import final_hidden, replace_mlp
from ._linear import LinearizedModel
from ._targets import Target


def _run(linear: LinearizedModel, target: Target, masks: list[dict], fill: dict | None = None) -> np.ndarray:
    """The target in the replacement model, once per mask (``{layer: bool (tokens, d_hidden)}`` of features kept);
    ``fill``: ``{layer: (d_hidden,)}`` values switched-off features take (default zero)."""
    model, batch = linear.model, len(masks)
    ids = linear.input_ids.expand(batch, -1)
    stacked = {layer: torch.stack([m.get(layer, torch.ones_like(f, dtype=torch.bool)) for m in masks])
               for layer, f in linear.activations.items()}

    def replacement(layer):
        tc = linear.transcoders.get(layer)
        error = linear.errors[layer]

        def run(x):
            if tc is None:
                return (error[None] + 0 * x[..., :1]).to(x.dtype).expand(x.shape[0], -1, -1)
            keep = stacked[layer]
            features = tc.encode(x.float()) * keep
            if fill is not None and layer in fill:
                features = features + fill[layer].to(features) * ~keep
            return (tc.decode(features, x.float()) + error).to(x.dtype)
        return run

    with torch.no_grad(), replace_mlp(model, {layer: replacement(layer) for layer in range(linear.n_layers)}):
        hidden = final_hidden(model, ids)
    return target.read(hidden, *linear.unembedding()).cpu().numpy()


def _feature_nodes(graph):
    return [(n, d) for n, d in graph.nodes(data=True) if d["kind"] == "feature"]


def ablation_effects(linear: LinearizedModel, target: Target, features, *, batch_size: int = 16) -> np.ndarray:
    """Change of the target when each ``(layer, position, index)`` feature is switched off on its own."""
    effects, clean = [], _run(linear, target, [{}])[0]
    for start in range(0, len(features), batch_size):
        masks = []
        for layer, position, index in features[start : start + batch_size]:
            mask = torch.ones_like(linear.activations[layer], dtype=torch.bool)
            mask[position, index] = False
            masks.append({layer: mask})
        effects.append(_run(linear, target, masks) - clean)
    return np.concatenate(effects) if effects else np.zeros(0)


def mean_activations(linear: LinearizedModel) -> dict:
    """``{layer: (d_hidden,)}``: each feature's mean activation over this input's tokens (for mean-ablation)."""
    return {layer: f.float().mean(0) for layer, f in linear.activations.items()}


def keep_only(linear: LinearizedModel, target: Target, features, *, ablation: str = "zero",
              means: dict | None = None) -> float:
    """The target with every feature switched off except ``features`` (errors kept).

    ``ablation="zero"`` sets the others to zero; ``"mean"`` to their mean activation (``means``,
    default :func:`mean_activations` of this input), so the rest of the model sees typical inputs.
    """
    if ablation not in ("zero", "mean"):
        raise ValueError(f"ablation={ablation!r} must be 'zero' or 'mean'.")
    masks = {layer: torch.zeros_like(f, dtype=torch.bool) for layer, f in linear.activations.items()}
    for layer, position, index in features:
        masks[layer][position, index] = True
    fill = None if ablation == "zero" else (means if means is not None else mean_activations(linear))
    return float(_run(linear, target, [masks], fill)[0])


@renamed_keywords(model="lm")
def faithfulness(graph, lm, transcoders: dict, input_ids, target: Target, *, top: int = 20) -> dict:
    """Check a traced graph against ablations in the replacement model.

    Returns a dict with:

    - ``correlation`` / ``spearman``: between each of the ``top`` features' predicted
      effect of switching it off (minus its signed attribution in the graph) and the
      effect measured in the replacement model;
    - ``circuit_fraction``: (target with only the graph's features on - target with
      no features) / (target with all features - target with none): how much of
      what the features do to the target the circuit's features do;
    - ``graph_input_share``: the share of the target's absolute attribution that the
      graph traces to input tokens (the rest goes to errors, biases, or unexpanded nodes);
    - ``predicted``, ``measured``, ``features``: the paired values.
    """
    linear = LinearizedModel(lm, transcoders, input_ids)
    nodes = sorted(_feature_nodes(graph), key=lambda nd: -abs(nd[1]["attribution"]))[:top]
    features = [(d["layer"], d["position"], d["feature"]) for _, d in nodes]
    predicted = np.array([-d["attribution"] for _, d in nodes])
    measured = ablation_effects(linear, target, features)
    all_on = float(_run(linear, target, [{}])[0])
    none_on = keep_only(linear, target, [])
    circuit_on = keep_only(linear, target, [(d["layer"], d["position"], d["feature"]) for _, d in _feature_nodes(graph)])
    spread = all_on - none_on
    enough = len(features) >= 3 and np.std(predicted) > 0 and np.std(measured) > 0
    return {
        "correlation": float(np.corrcoef(predicted, measured)[0, 1]) if enough else float("nan"),
        "spearman": float(stats.spearmanr(predicted, measured)[0]) if enough else float("nan"),
        "circuit_fraction": (circuit_on - none_on) / spread if abs(spread) > 1e-9 else float("nan"),
        "graph_input_share": float(graph.graph.get("share_input", float("nan"))),
        "target_value": all_on,
        "predicted": predicted,
        "measured": measured,
        "features": features,
    }
