"""One prompt's call traced: its attribution graph (complete or greedy), grown or pruned, with its input tokens
pooled into named groups (genes, the template, the fed answer) and its scores; then many such traces merged.

Model-agnostic: a causal LM, transcoders, token ids, and per position a group name and a section."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import pandas as pd

SECTIONS = {"gene": "genes", "template": "prompt template", "answer": "answer prefix"}
"""Input groups: the genes of the sentence, the prompt's template tokens, the answer tokens fed to the model."""
METHODS = ("complete", "greedy")
TARGETS = ("logodds", "logprob", "contrast")
RANKINGS = ("attribution", "knockout")
SUPERNODE_GROUPINGS = ("edges", "coactivation", "gene_sets")


@dataclass
class CircuitConfig:
    """How a cell-type circuit is traced (:func:`sctranscoder.tl.cell_type_circuit`)."""

    method: str = "complete"
    """``"complete"``: circuit-tracer's complete attribution graph; ``"greedy"``: the older best-first search."""
    target: str = "logodds"
    """``"logodds"`` of the label against all candidates, ``"logprob"``, or ``"contrast"`` (first differing
    answer token against its rivals')."""
    max_feature_nodes: int | None = 1024
    """Complete graphs: the node budget (features whose inputs are attributed)."""
    batch_size: int = 64
    """Complete graphs: rows per backward pass."""
    node_threshold: float | None = None
    """Pruning: complete graphs keep the nodes carrying this share of the cumulative influence (default 0.8);
    greedy graphs keep nodes with at least this influence (default 0.02)."""
    edge_threshold: float = 0.98
    """Complete graphs: keep edges carrying this share of the cumulative influence."""
    max_nodes: int = 60
    """Greedy search: features and heads expanded."""
    threshold: float = 0.01
    """Greedy search: edges below this fraction of their node's attribution are not recorded."""
    n_paths: int | None = None
    """Greedy search: keep only the union of the strongest paths."""
    min_feature_share: float | None = 0.8
    """Complete graphs: grow each cell's circuit until its features alone carry this share of the label's
    log-odds (``None``: the standard pruned circuit)."""
    check_faithfulness: bool = False
    """Also ablate each cell's top features in the replacement model."""
    validate: bool = False
    """Knock the top genes out of the traced cells and compare (:func:`sctranscoder.tl.validate_circuit`)."""
    rank_genes_by: str = "attribution"
    """``"knockout"``: also rank every sentence gene by its measured knockout effect."""
    max_supernodes: int | None = 8
    """Complete graphs: group the circuit's features into at most this many supernodes, name them and check them
    by intervention (``result.supernodes``; ``None``: no supernodes)."""
    grouping: str = "edges"
    """How supernodes are grouped: ``"edges"`` (similar edge profiles), ``"coactivation"`` (over cells) or
    ``"gene_sets"`` (each feature's best gene set, :func:`sctranscoder.tl.circuit_supernodes`)."""
    n_null: int = 1000
    """Expression-matched random gene lists behind each supernode name's control p-value (floor 1/(1+n_null))."""
    n_identity_cells: int = 16
    """Cells besides the traced ones (a seeded sample of all cells) on which token identity is measured."""
    fold_r2: float | None = 0.9
    """Fold features whose activation the token they sit on predicts at this adjusted R^2 into that token's
    input node (``None``: fold nothing)."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} must be 'complete' or 'greedy'.")
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r} must be 'logodds', 'logprob' or 'contrast'.")
        if self.node_threshold is None:
            self.node_threshold = 0.8 if self.method == "complete" else 0.02
        if self.min_feature_share is not None and not 0.0 < self.min_feature_share <= 1.0:
            raise ValueError(f"min_feature_share={self.min_feature_share} must lie in (0, 1], or be None.")
        if self.rank_genes_by not in RANKINGS:
            raise ValueError(f"rank_genes_by={self.rank_genes_by!r} must be 'attribution' or 'knockout'.")
        if self.grouping not in SUPERNODE_GROUPINGS:
            raise ValueError(f"grouping={self.grouping!r} must be one of {SUPERNODE_GROUPINGS}.")
        if self.max_supernodes is not None and self.max_supernodes < 1:
            raise ValueError(f"max_supernodes={self.max_supernodes} must be at least 1, or None.")

    def to_dict(self) -> dict:
        return asdict(self)


def input_groups(token_gene, span_ids, genes, n_prompt: int, n_fed: int) -> tuple[list, list, list]:
    """Per position of ``n_fed`` traced ids (a prompt of ``n_prompt`` tokens, then fed answer tokens): its gene
    (or None), its group name and its section."""
    token_gene = list(token_gene[:n_prompt]) + [-1] * (n_fed - n_prompt)
    gene_of = [str(genes[span_ids[g]]) if g >= 0 else None for g in token_gene]
    sections = ["gene" if g is not None else ("answer" if p >= n_prompt else "template") for p, g in enumerate(gene_of)]
    groups = [g if g is not None else SECTIONS[s] for g, s in zip(gene_of, sections)]
    return gene_of, groups, sections


def pooled_gene_attributions(attribution_graph, genes_of_positions) -> list:
    """Per gene of one prompt: ``(gene, signed contribution to the target over all paths, influence)``, its
    tokens' summed."""
    from ._attribution_graph import token_attributions

    signed = token_attributions(attribution_graph)
    influence = attribution_graph.node_influence()
    start = attribution_graph.token_index(0)
    pooled: dict = {}
    for position, gene in enumerate(genes_of_positions):
        if gene is None:
            continue
        a, i = pooled.get(gene, (0.0, 0.0))
        pooled[gene] = (a + float(signed[position]), i + float(influence[start + position]))
    return [(gene, a, i) for gene, (a, i) in pooled.items()]


def greedy_gene_attributions(graph) -> list:
    """``(gene, attribution, influence)`` of a greedy graph's gene inputs."""
    return [(d["label"], d["attribution"], d["influence"]) for _, d in graph.nodes(data=True)
            if d["kind"] == "input" and d.get("section", "gene" if d["grouped"] else "") == "gene"]


def section_attributions(attribution_graph) -> dict:
    """Signed contributions to the target's value of each input section, of errors, and the rest (biases,
    features over the budget)."""
    from ._attribution_graph import token_attributions

    signed = token_attributions(attribution_graph)
    sums: dict = {}
    for position, section in enumerate(attribution_graph.sections):
        sums[section] = sums.get(section, 0.0) + float(signed[position])
    kinds = attribution_graph.masks()
    sums["error"] = float(attribution_graph.signed_attribution()[kinds["error"]].sum())
    sums["rest"] = attribution_graph.value - sum(sums.values())
    return sums


def gene_table(rows, n_graphs: int) -> pd.DataFrame:
    """Genes with their attribution (and influence) averaged over the traces; absent from one counts as zero."""
    if not rows:
        return pd.DataFrame(columns=["gene", "attribution", "influence", "n_cells", "fraction_of_cells"])
    per_cell = pd.DataFrame(rows, columns=["gene", "attribution", "influence"])
    table = per_cell.groupby("gene").agg(attribution=("attribution", "sum"), influence=("influence", "sum"),
                                         n_cells=("attribution", "size"))
    table[["attribution", "influence"]] /= n_graphs
    table["fraction_of_cells"] = table.n_cells / n_graphs
    return table.reset_index().sort_values("attribution", ascending=False, ignore_index=True)


class TracedCall(NamedTuple):
    """What :func:`trace_call` returns for one prompt."""

    graph: object
    """The pruned (or grown) ``networkx.DiGraph``."""
    row: dict
    """Its scores (value, probability, replacement / completeness, shares, feature share, seconds)."""
    gene_rows: list
    """``(gene, attribution, influence)`` over the unpruned graph."""
    export: dict | None
    """circuit-tracer graph JSON (complete graphs)."""
    features: list | None
    """The grown circuit's ``(layer, feature, position)`` (complete graphs with ``min_feature_share``)."""
    check: dict | None
    """Faithfulness against ablations (``cfg.check_faithfulness``)."""
    attribution: object = None
    """The complete :class:`AttributionGraph` (complete graphs), for predictions on feature sets."""


def trace_call(lm, transcoders: dict, prompt: list, answer_ids: list, index: int, cfg: CircuitConfig, *,
               token_gene, span_ids, genes, decode, label: str, slug: str) -> TracedCall:
    """Trace why ``lm`` answers ``answer_ids[index]`` after ``prompt`` (token ids), as ``cfg`` says.

    ``token_gene`` / ``span_ids`` / ``genes`` say which gene each prompt token spells (:func:`input_groups`);
    ``decode(ids)`` gives a token's text; ``label`` names the answer, ``slug`` the exported graph.
    """
    import torch

    from ._answer_target import answer_logprob
    from ._attribution_graph import attribute, to_networkx
    from ._candidates import answer_contrast
    from ._circuit_tracer_json import to_circuit_tracer
    from ._faithfulness import faithfulness
    from ._grow import FeatureShare, grow_circuit
    from ._targets import Target
    from ._trace import prune, trace

    start = time.perf_counter()
    kind = cfg.target if cfg.target != "contrast" else "logodds"
    readout, fed, info = answer_logprob(lm, prompt, answer_ids, index, kind=kind,
                                        label=f"{'log-odds' if kind == 'logodds' else 'log P'}({label})")
    if cfg.target != "contrast":
        goal = readout
    else:
        prefix, token, rivals = answer_contrast(dict(enumerate(answer_ids)), index)
        goal, fed = Target.logit_difference(token, rivals, label=f"{label} vs rivals"), prompt + list(prefix)
    gene_of, groups, sections = input_groups(token_gene, span_ids, genes, len(prompt), len(fed))
    labels = [decode([t]) for t in fed]
    input_ids = torch.as_tensor(fed)
    row = {"probability": float(info["probabilities"][index]), "logprob": info["logprob"], "logodds": info["logodds"]}
    export = features = check = None
    if cfg.method == "complete":
        full = attribute(lm, transcoders, input_ids, goal, max_feature_nodes=cfg.max_feature_nodes,
                         batch_size=cfg.batch_size, labels=labels, groups=groups, sections=sections, progress=False)
        include = None
        if cfg.min_feature_share is not None:
            clock = time.perf_counter()
            grown = grow_circuit(full, FeatureShare(lm, transcoders, prompt, answer_ids, index),
                                 cfg.min_feature_share, node_threshold=cfg.node_threshold,
                                 edge_threshold=cfg.edge_threshold)
            include, features = grown.include, grown.features
            row.update(feature_share=grown.share, feature_share_reached=grown.reached,
                       n_circuit_features=len(grown.features), n_features_over_budget=grown.n_over_budget,
                       feature_share_pruned=grown.share_pruned, n_features_pruned=grown.n_pruned,
                       feature_share_all=grown.share_all, feature_share_checks=grown.n_checks,
                       grow_seconds=time.perf_counter() - clock)
        graph = to_networkx(full, node_threshold=cfg.node_threshold, edge_threshold=cfg.edge_threshold,
                            include=include)
        if include is not None:
            row.update(replacement_grown=graph.graph["replacement_grown"],
                       completeness_grown=graph.graph["completeness_grown"])
        gene_rows = pooled_gene_attributions(full, gene_of)
        shares = full.input_shares()
        signed = section_attributions(full)
        row.update(value=full.value, **full.scores(cfg.node_threshold, cfg.edge_threshold),
                   **{f"share_{k}": shares.get(k, 0.0) for k in ("gene", "template", "answer", "error", "unexpanded")},
                   **{f"attribution_{k}": signed.get(k, 0.0) for k in ("gene", "template", "answer", "error", "rest")},
                   n_active=full.n_active, n_feature_nodes=full.n_features,
                   n_features_kept=sum(1 for _, d in graph.nodes(data=True) if d["kind"] == "feature"))
        export = to_circuit_tracer(full, slug=slug, node_threshold=cfg.node_threshold,
                                   edge_threshold=cfg.edge_threshold, probability=row["probability"])
    else:
        full = trace(lm, transcoders, input_ids, goal, max_nodes=cfg.max_nodes, threshold=cfg.threshold,
                     groups=groups, labels=labels, prune=False)
        for _, data in full.nodes(data=True):
            if data["kind"] == "input":
                data["section"] = sections[data["position"]]
        gene_rows = greedy_gene_attributions(full)
        graph = prune(full, cfg.node_threshold, cfg.n_paths)
        row.update(value=full.graph["value"])
    row["seconds"] = time.perf_counter() - start
    if cfg.check_faithfulness:
        result = faithfulness(graph, lm, transcoders, input_ids, goal)
        check = {k: result[k] for k in ("correlation", "spearman", "circuit_fraction", "graph_input_share",
                                        "target_value")}
    return TracedCall(graph, row, gene_rows, export, features, check, full if cfg.method == "complete" else None)
