"""Complete attribution graphs, built as circuit-tracer builds them.

Nodes, in this order: the active transcoder features whose inputs were
attributed (up to ``max_feature_nodes``, chosen by their influence on the target
as rows come in), one error node per layer and position, one node per input
token, and the output (the target). ``adjacency[t, s]`` is the direct effect of
source ``s`` on target ``t`` in the linearized model: attention patterns and
norm scales frozen, every other feature and error held, so a row plus the
target's biases equals the target's value. Rows of many features are computed
together: their encoder directions are fed as a batch of gradients through one
retained forward pass (``is_grads_batched``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._deprecations import renamed_keywords
from .._progress import progress_bar
from ._influence import graph_scores, normalize_rows, prune_masks
from ._replacement_pass import ReplacementPass


@dataclass
class AttributionGraph:
    """A complete attribution graph on one input. See :func:`attribute`."""

    adjacency: torch.Tensor
    """``(n, n)``: rows are targets, columns sources (features, errors, tokens, output)."""
    features: torch.Tensor
    """``(n_features, 3)``: layer, position and index of each feature node."""
    activations: torch.Tensor
    """``(n_features,)``: each feature node's activation."""
    pre_activations: torch.Tensor
    """``(n_features,)``: each feature node's value as a target (its row sums to it, less the biases)."""
    input_ids: list
    n_layers: int
    target: str
    value: float
    """The target's value (its row sums to it, less the biases)."""
    n_active: int
    """All active features on this input; ``n_features`` of them are nodes."""
    labels: list | None = None
    groups: list | None = None
    sections: list | None = None
    info: dict = field(default_factory=dict)
    active: torch.Tensor | None = None
    """``(n_active, 3)``: layer, position and index of every active feature, nodes or not."""
    active_influence: torch.Tensor | None = None
    """``(n_active,)``: each active feature's influence on the output through the rows computed (features
    over the node budget have no row of their own, but their direct effects on the nodes are known)."""
    _cache: dict = field(default_factory=dict, repr=False)

    # -- node layout -------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_features(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.adjacency.shape[0])

    def error_index(self, layer: int, position: int) -> int:
        return self.n_features + layer * self.n_tokens + position

    def token_index(self, position: int) -> int:
        return self.n_features + self.n_layers * self.n_tokens + position

    @property
    def output_index(self) -> int:
        return self.n_nodes - 1

    def masks(self) -> dict:
        n, f, t = self.n_nodes, self.n_features, self.n_tokens
        kinds = {name: torch.zeros(n, dtype=torch.bool) for name in ("feature", "error", "token", "output")}
        kinds["feature"][:f] = True
        kinds["error"][f : f + self.n_layers * t] = True
        kinds["token"][f + self.n_layers * t : n - 1] = True
        kinds["output"][n - 1] = True
        return kinds

    def output_weights(self) -> torch.Tensor:
        weights = torch.zeros(self.n_nodes)
        weights[-1] = 1.0
        return weights

    # -- influence, pruning, scores --------------------------------------------------------------
    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98, include=None):
        """circuit-tracer's pruning (cached per thresholds): masks of kept nodes and edges. ``include``: a
        boolean mask of feature nodes kept besides (see :func:`sctranscoder.circuits.grow_circuit`)."""
        mask = None
        if include is not None:
            mask = torch.zeros(self.n_nodes, dtype=torch.bool)
            mask[: self.n_features] = torch.as_tensor(include, dtype=torch.bool)
        key = ("prune", node_threshold, edge_threshold, None if mask is None else mask.numpy().tobytes())
        if key not in self._cache:
            kinds = self.masks()
            self._cache[key] = prune_masks(self.adjacency, self.output_weights(), self.n_features,
                                           kinds["token"] | kinds["output"], node_threshold, edge_threshold, mask)
        return self._cache[key]

    def scores(self, node_threshold: float = 0.8, edge_threshold: float = 0.98, include=None) -> dict:
        """circuit-tracer's replacement and completeness scores, of the whole graph and of the pruned one.

        For the pruned graph, every node that pruning removed counts as an error node: what
        the pruned graph does not show is unexplained (as in Ameisen et al. 2025).
        """
        kinds = self.masks()
        weights = self.output_weights()
        replacement, completeness = graph_scores(self.adjacency, weights, kinds["token"], kinds["error"])
        kept = self.prune(node_threshold, edge_threshold, include).nodes
        dropped = ~kept & ~kinds["output"]
        replacement_p, completeness_p = graph_scores(self.adjacency, weights, kinds["token"], kinds["error"] | dropped)
        return {"replacement": replacement, "completeness": completeness, "replacement_pruned": replacement_p,
                "completeness_pruned": completeness_p}

    def node_values(self) -> torch.Tensor:
        """Each target node's value: pre-activation for features, the target's value for the output."""
        values = torch.zeros(self.n_nodes)
        values[: self.n_features] = self.pre_activations
        values[-1] = self.value
        return values

    def signed_attribution(self) -> torch.Tensor:
        """Each node's signed contribution to the target's value, over all paths: a node's value is split
        over its sources in proportion to the direct effects (features pass on shares of their value)."""
        values = self.node_values()
        safe = torch.where(values.abs() > 1e-12, values, torch.ones_like(values))
        scaled = self.adjacency / safe[:, None]
        scaled[values.abs() <= 1e-12] = 0
        current = torch.zeros(self.n_nodes)
        current[-1] = self.value
        total = current.clone()
        for _ in range(self.n_nodes):
            current = current @ scaled
            if not bool(current.any()):
                return total
            total += current
        raise RuntimeError("The attribution graph has a cycle.")

    def node_influence(self) -> torch.Tensor:
        """Each node's influence on the output (circuit-tracer's, before pruning)."""
        return self.prune().influence

    def input_shares(self) -> dict:
        """Influence of input-token sections (genes, template, answer prefix, ...), of errors, and of
        feature nodes left without rows (over the budget), as shares of all influence reaching a leaf."""
        influence = self.node_influence()
        kinds = self.masks()
        leaves = kinds["token"] | kinds["error"]
        unvisited = torch.zeros(self.n_nodes, dtype=torch.bool)
        unvisited[: self.n_features] = self.adjacency[: self.n_features].abs().sum(1) == 0
        leaves |= unvisited
        total = float(influence[leaves].sum()) or 1.0
        sections = self.sections or ["input"] * self.n_tokens
        shares: dict = {}
        for position, section in enumerate(sections):
            key = str(section)
            shares[key] = shares.get(key, 0.0) + float(influence[self.token_index(position)]) / total
        shares["error"] = float(influence[kinds["error"]].sum()) / total
        shares["unexpanded"] = float(influence[unvisited].sum()) / total
        return shares


def _active(linear: ReplacementPass) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 3)`` layer/position/index of every active feature, and their activations."""
    rows, values = [], []
    for layer in sorted(linear.activations):
        acts = linear.activations[layer]
        position, index = torch.nonzero(acts, as_tuple=True)
        rows.append(torch.stack([torch.full_like(position, layer), position, index], 1))
        values.append(acts[position, index])
    if not rows:
        return torch.zeros(0, 3, dtype=torch.long), torch.zeros(0)
    return torch.cat(rows), torch.cat(values)


class _Rows:
    """Turns gradients at the leaves into rows over every source (active features, errors, tokens).

    A feature's share is its activation times its decoder row dotted with the gradient at its
    layer's output and position; per layer the active features sit in a (position, slot) grid,
    so all of them take one batched matrix product over positions.
    """

    def __init__(self, linear: ReplacementPass, active: torch.Tensor, values: torch.Tensor):
        self.linear = linear
        self.grids = {}
        for layer, tc in linear.transcoders.items():
            where = torch.nonzero(active[:, 0] == layer).flatten()
            if where.numel() == 0:
                continue
            positions = active[where, 1]
            counts = torch.bincount(positions, minlength=linear.n_tokens)
            slots = torch.arange(len(where)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
            width = int(counts.max())
            columns = torch.full((linear.n_tokens, width), -1, dtype=torch.long)
            columns[positions, slots] = where
            with torch.no_grad():
                rows = (tc.W_dec[active[where, 2]] * tc.output_scale).float().cpu() * values[where, None].float()
            decoders = torch.zeros(linear.n_tokens, width, rows.shape[-1])
            decoders[positions, slots] = rows
            self.grids[layer] = (columns, decoders.transpose(1, 2).contiguous())
        n_layers, n_tokens = linear.n_layers, linear.n_tokens
        self.n_active = len(active)
        self.width = len(active) + n_layers * n_tokens + n_tokens

    @torch.no_grad()
    def __call__(self, grads: list) -> torch.Tensor:
        linear = self.linear
        g_emb, g_out = grads[0], grads[1:]
        batch, n_tokens = g_emb.shape[0], linear.n_tokens
        rows = torch.zeros(batch, self.width)
        for layer, (columns, decoders) in self.grids.items():
            shares = torch.bmm(g_out[layer].float().cpu().transpose(0, 1), decoders)  # (tokens, batch, slots)
            valid = columns >= 0
            rows[:, columns[valid]] = shares.permute(1, 0, 2)[:, valid]
        offset = self.n_active
        for layer in range(linear.n_layers):
            error = linear.errors[layer].float()
            rows[:, offset + layer * n_tokens : offset + (layer + 1) * n_tokens] = \
                (g_out[layer].float() * error).sum(-1).cpu()
        offset += linear.n_layers * n_tokens
        rows[:, offset : offset + n_tokens] = (g_emb.float() * linear.embeddings.detach()).sum(-1).cpu()
        return rows


def _partial_influence(rows: torch.Tensor, row_nodes: torch.Tensor, n_columns: int) -> torch.Tensor:
    """Influence of every column on the output over the rows computed so far (row 0: the output)."""
    normalized = normalize_rows(rows)
    current = torch.zeros(n_columns + 1)
    current[-1] = 1.0
    total = torch.zeros(n_columns + 1)
    for _ in range(128):
        current = torch.cat([current[row_nodes] @ normalized, torch.zeros(1)])
        if not bool(current.any()):
            return total[:-1]
        total += current
    raise RuntimeError("Partial influences did not converge.")


@renamed_keywords(model="lm")
def attribute(lm, transcoders: dict, input_ids, target, *, max_feature_nodes: int | None = 2048,
              batch_size: int = 64, update_interval: int = 4, labels=None, groups=None, sections=None,
              progress: bool = True) -> AttributionGraph:
    """The complete attribution graph of ``target`` on one input.

    Parameters
    ----------
    lm, transcoders
        A causal LM and ``{layer: Transcoder}`` (layers without one count their whole MLP as error).
    input_ids
        One tokenized input.
    target
        A :class:`Target` (or any object with ``scalar(linear)`` and ``label``).
    max_feature_nodes
        The node budget: at most this many active features get their inputs attributed, chosen
        best-first by their influence on the target over the rows computed so far (``None``: all).
    batch_size
        Feature rows per backward pass.
    update_interval
        Batches between re-rankings of the features still waiting.
    labels, groups, sections
        Per position: a display label, a group name (tokens of a group share one input node in
        :func:`to_networkx`) and a section (e.g. ``"gene"``, ``"template"``, ``"answer"``).
    """
    linear = ReplacementPass(lm, transcoders, input_ids)
    n_tokens = linear.n_tokens
    for name, per_position in (("groups", groups), ("labels", labels), ("sections", sections)):
        if per_position is not None and len(per_position) != n_tokens:
            raise ValueError(f"{name} has {len(per_position)} entries; the input has {n_tokens} tokens.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    active, values = _active(linear)
    n_active = len(active)
    budget = n_active if max_feature_nodes is None else min(int(max_feature_nodes), n_active)
    make_rows = _Rows(linear, active, values)
    n_columns = make_rows.width

    scalar = target.scalar(linear)
    value = float(scalar.detach())
    output_row = make_rows([g[None] for g in linear.gradients([scalar], None, batched=False)])[0]

    layers = [layer for layer in range(linear.n_layers) if layer in linear.encoder_inputs]
    outputs = [linear.encoder_inputs[layer] for layer in layers]
    encoders = {layer: linear.transcoders[layer].W_enc.detach().float() for layer in layers}
    biases = {layer: linear.transcoders[layer].b_enc.detach().float() for layer in layers}

    feature_rows = torch.zeros(budget, n_columns)
    order = torch.zeros(budget, dtype=torch.long)  # which active feature each row belongs to
    pre = torch.zeros(budget)
    visited = torch.zeros(n_active, dtype=torch.bool)
    done = 0
    bar = progress_bar(total=budget, desc="attribution rows", unit="rows", enabled=progress) if progress else None
    while done < budget:
        if budget == n_active:
            pending = torch.arange(n_active)
        else:
            rows_so_far = torch.cat([output_row[None], feature_rows[:done]])
            nodes_so_far = torch.cat([torch.tensor([n_columns]), order[:done]])
            scores = _partial_influence(rows_so_far, nodes_so_far, n_columns)[:n_active]
            ranked = torch.argsort(scores, descending=True)
            pending = ranked[~visited[ranked]][: min(update_interval * batch_size, budget - done)]
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            grad_outputs = [torch.zeros(len(chunk), *o.shape, dtype=o.dtype) for o in outputs]
            for row, feature in enumerate(chunk.tolist()):
                layer, position, index = active[feature].tolist()
                grad_outputs[layers.index(layer)][row, position] = encoders[layer][index].to(outputs[0].dtype)
                pre[done + row] = float(linear.encoder_inputs[layer][position].detach() @ encoders[layer][index]
                                        + biases[layer][index])
            grads = linear.gradients(outputs, grad_outputs, batched=True)
            feature_rows[done : done + len(chunk)] = make_rows(grads)
            order[done : done + len(chunk)] = chunk
            visited[chunk] = True
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()

    # every active feature's influence through all rows (the ranking the node budget was chosen by)
    active_influence = _partial_influence(torch.cat([output_row[None], feature_rows]),
                                          torch.cat([torch.tensor([n_columns]), order]), n_columns)[:n_active]
    # nodes: the visited features (in active order), errors, tokens, output
    ranked = torch.argsort(order)
    order, feature_rows, pre = order[ranked], feature_rows[ranked], pre[ranked]
    columns = torch.cat([order, torch.arange(n_active, n_columns)])
    n = budget + n_columns - n_active + 1
    adjacency = torch.zeros(n, n)
    adjacency[:budget, : n - 1] = feature_rows[:, columns]
    adjacency[-1, : n - 1] = output_row[columns]
    return AttributionGraph(
        adjacency=adjacency, features=active[order], activations=values[order].float(), pre_activations=pre,
        input_ids=[int(t) for t in linear.input_ids[0].tolist()], n_layers=linear.n_layers,
        target=getattr(target, "label", "target"), value=value, n_active=n_active,
        labels=list(labels) if labels is not None else None, groups=list(groups) if groups is not None else None,
        sections=list(sections) if sections is not None else None, active=active,
        active_influence=active_influence)


def _labels(graph: AttributionGraph) -> list:
    return graph.labels if graph.labels is not None else [str(t) for t in graph.input_ids]


def to_networkx(graph: AttributionGraph, *, pruned: bool = True, node_threshold: float = 0.8,
                edge_threshold: float = 0.98, include=None):
    """The graph as a ``networkx.DiGraph`` with the node names and attributes of :func:`trace` (input tokens
    of a group pooled into one node ``input:{group}``); ``pruned``: only what circuit-tracer's pruning keeps
    (and the feature nodes in the boolean mask ``include``, see :meth:`AttributionGraph.prune`)."""
    import networkx as nx

    kinds = graph.masks()
    result = graph.prune(node_threshold, edge_threshold, include)
    keep_nodes = result.nodes if pruned else torch.ones(graph.n_nodes, dtype=torch.bool)
    keep_edges = result.edges if pruned else graph.adjacency != 0
    influence = result.influence
    signed = graph.signed_attribution()
    labels, groups = _labels(graph), graph.groups
    sections = graph.sections or ["input"] * graph.n_tokens
    names, out = {}, nx.DiGraph()
    for i in torch.nonzero(keep_nodes).flatten().tolist():
        if kinds["feature"][i]:
            layer, position, index = graph.features[i].tolist()
            name = f"feature:{layer}:{index}@{position}"
            out.add_node(name, kind="feature", layer=layer, position=position, feature=index,
                         activation=float(graph.activations[i]), label=f"L{layer}/F{index}")
        elif kinds["error"][i]:
            layer, position = divmod(i - graph.n_features, graph.n_tokens)
            name = f"error:{layer}@{position}"
            out.add_node(name, kind="error", layer=layer, position=position, label=f"L{layer} error")
        elif kinds["token"][i]:
            position = i - graph.n_features - graph.n_layers * graph.n_tokens
            group = groups[position] if groups is not None else None
            if group is None:
                name = f"input:{position}"
                out.add_node(name, kind="input", layer=-1, position=position, label=str(labels[position]),
                             positions=str(position), grouped=False, section=str(sections[position]))
            else:
                name = f"input:{group}"
                if name in out:
                    data = out.nodes[name]
                    data["positions"] += f",{position}"
                else:
                    out.add_node(name, kind="input", layer=-1, position=position, label=str(group),
                                 positions=str(position), grouped=True, section=str(sections[position]))
        else:
            name = "output"
            out.add_node(name, kind="output", layer=graph.n_layers, position=graph.n_tokens - 1, label=graph.target,
                         value=graph.value)
        data = out.nodes[name]
        data["influence"] = data.get("influence", 0.0) + float(influence[i])
        data["attribution"] = data.get("attribution", 0.0) + float(signed[i])
        names[i] = name
    targets, sources = torch.nonzero(keep_edges & keep_nodes[:, None] & keep_nodes[None, :], as_tuple=True)
    weights = graph.adjacency[targets, sources]
    for t, s, w in zip(targets.tolist(), sources.tolist(), weights.tolist()):
        a, b = names[s], names[t]
        if out.has_edge(a, b):
            out.edges[a, b]["weight"] += w
        else:
            out.add_edge(a, b, weight=w)
    for i, name in names.items():
        if kinds["feature"][i]:
            out.nodes[name]["value"] = float(graph.pre_activations[i])
    shares = graph.input_shares()
    out.graph.update(target=graph.target, value=graph.value, n_tokens=graph.n_tokens, n_layers=graph.n_layers,
                     n_active=graph.n_active, n_feature_nodes=graph.n_features, pruned=pruned,
                     share_input=sum(v for k, v in shares.items() if k not in ("error", "unexpanded")),
                     share_error=shares["error"], share_bias=0.0, share_unexpanded=shares["unexpanded"],
                     **{f"share_{k}": v for k, v in shares.items() if k not in ("error", "unexpanded", "input")},
                     **graph.scores(node_threshold, edge_threshold), **graph.info)
    if include is not None:  # the grown circuit's own scores, beside the standard pruning's
        grown = graph.scores(node_threshold, edge_threshold, include)
        out.graph.update(replacement_grown=grown["replacement_pruned"], completeness_grown=grown["completeness_pruned"])
    return out


def token_attributions(graph: AttributionGraph) -> np.ndarray:
    """Each input position's signed contribution to the target (over all paths)."""
    signed = graph.signed_attribution()
    start = graph.token_index(0)
    return signed[start : start + graph.n_tokens].numpy()
