"""The circuit behind a C2S model's cell-type call, traced cell by cell and merged, with its input genes ranked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._obs import require_obs_column
from .._progress import progress_bar


@dataclass
class CellTypeCircuit:
    """What :func:`cell_type_circuit` returns."""

    cell_type: str
    graph: object
    """The merged ``networkx.DiGraph``: nodes without positions, attributions averaged over the cells."""
    genes: pd.DataFrame
    """Input genes ranked by their mean signed attribution to the target (positive: for this cell type), over
    everything traced (before pruning); a gene absent from a cell's graph counts as zero there."""
    graphs: list
    """One traced graph per cell (pruned)."""
    cells: list
    """The cells traced."""
    target: dict
    """The answer token explained, the tokens it is contrasted with, and the answer prefix fed to the model."""
    faithfulness: pd.DataFrame | None = None
    """Per cell: ablation correlation and circuit fraction (when requested)."""
    settings: dict = field(default_factory=dict)
    scores: pd.DataFrame | None = None
    """Per cell (complete graphs): the target's value and probability, the call's probability as
    :func:`predict_cell_types` scores it, circuit-tracer's replacement and completeness scores of the
    unpruned and the pruned graph, and each input group's share of the target (genes, prompt template,
    fed answer prefix, errors)."""
    message: str = ""
    """A sentence for readers, e.g. that the circuit reaches no gene."""
    exports: list = field(default_factory=list)
    """Per cell (complete graphs): the graph pruned as circuit-tracer prunes it (node 0.8 / edge 0.98 by
    default, not grown), as circuit-tracer graph JSON (dicts)."""
    circuit_features: list = field(default_factory=list)
    """Per cell (complete graphs with ``min_feature_share``): the grown circuit's features as
    ``(layer, feature, position)``, nodes of the graph first, then any active features over the node budget
    (those carry the call too but have no row, so they are not drawn)."""

    def summary(self) -> dict:
        """Mean per-cell scores and shares (complete graphs), for tables and the CLI."""
        if self.scores is None or not len(self.scores):
            return {}
        return self.scores.drop(columns=["cell"]).mean(numeric_only=True).to_dict()
    validation: dict | None = None
    """Attribution against gene knockouts and the circuit's feature share (``validate=True``, see
    :func:`sctranscoder.tl.validate_circuit`)."""
    genes_by_knockout: pd.DataFrame | None = None
    """Genes ranked by knockout effect on log P(cell type) (``rank_genes_by="knockout"``), with their
    rank-matched null (``effect``, ``ci_low``, ``ci_high``, ``null_mean``, ``null_sd``, ``z``, ``p_value``,
    ``fdr``); only rows with ``passes`` count as measured."""
    supernodes: pd.DataFrame | None = None
    """The readable circuit (complete graphs): one row per supernode (at most ``max_supernodes``), strongest
    measured effect first, with ``name`` (best gene set at FDR <= 0.05 of its input genes, else its top genes),
    ``n_features`` (of which ``n_over_budget`` are grown-circuit features over the attribution's node budget:
    they have no edges in the graph and join the module they co-activate with most), ``genes``,
    ``predicted_effect`` (the attribution graph's prediction of the drop in the label's log-odds over all
    candidates when the supernode's features are switched off, mean over the traced cells; features over the
    node budget have no node and add nothing to it), ``measured_effect`` (that drop measured by intervention in
    the replacement model with attention frozen, as circuit-tracer patches), ``measured_effect_unfrozen``
    (attention free), ``control_p`` (the name's best-set p-value against expression-matched random gene lists),
    ``best_set_p``, ``best_set_fdr``, ``term``, ``layers`` and ``features``. See :func:`sctranscoder.tl.cell_type_supernodes`."""
    supernode_share: float | None = None
    """Median over the traced cells of the share of the label's log-odds the supernodes carry together with every
    other feature switched off (token-identity features, folded into their genes' inputs, stay on)."""
    feature_circuit: object = None
    """The feature-level circuit: a ``networkx.DiGraph`` with one node per (layer, feature) (positions under
    ``positions``), token-identity features folded into their genes' input nodes, ``supernode`` on features."""
    folded: pd.DataFrame | None = None
    """Per circuit feature: its token-identity R^2 and whether it was folded (``attrs["per_layer"]``: how many
    were folded in each layer)."""
    supernode_instances: dict = field(default_factory=dict)
    """``{supernode: per traced cell, [(layer, feature, position, activation)]}`` (for steering)."""
    steering: pd.DataFrame | None = None
    """Its supernodes raised (at one scale or several) in another type's cells, beside as many random features
    (:func:`sctranscoder.tl.steer_supernode`'s table), where a run steered it (the CLI does: in the next traced
    type's cells)."""
    steering_into: dict = field(default_factory=dict)
    """``{type B: steer_supernode's table}`` for every type whose cells a run raised these supernodes in (the
    CLI's ``--steer-into all``: every other traced type); see :func:`sctranscoder.tl.steering_matrix`."""

    def input_genes(self, n: int | None = None) -> dict:
        """``{cell_type: genes}``: the genes that push the call towards this cell type, strongest first
        (what :func:`sctranscoder.tl.enrich_circuit` tests): measured (knocking them out lowers P(cell type))
        where the circuit was validated with ``Knockouts(rank=...)`` and some gene passes its rank-matched null,
        else attributed."""
        from ._validate import passing_genes

        measured = passing_genes(self.genes_by_knockout)
        if measured is not None and len(measured):
            supporting = measured.gene.tolist()
            return {self.cell_type: supporting[:n] if n is not None else supporting}
        supporting = self.genes[self.genes.attribution > 0].gene.tolist()
        return {self.cell_type: supporting[:n] if n is not None else supporting}


def _cells_of(adata, cell_type, label_key, n_cells, seed):
    labels = adata.obs[label_key].astype(str)
    names = np.flatnonzero(labels.to_numpy() == str(cell_type))
    if names.size == 0:
        known = ", ".join(sorted(labels.unique())[:12])
        raise ValueError(f"No cells have {label_key} == {cell_type!r}; labels present: {known}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(names, size=min(n_cells, names.size), replace=False))


def no_gene_message(cell_type: str, table: pd.DataFrame, scores: pd.DataFrame | None) -> str:
    """A sentence saying so when the circuit of ``cell_type`` reaches no gene (nothing pushes towards it)."""
    supporting = table[table.attribution > 0] if len(table) else table
    if len(supporting):
        return ""
    where = ""
    if scores is not None and len(scores) and "share_template" in scores:
        where = (f" The target rests on the prompt template ({scores.share_template.mean():.0%} of the influence), "
                 f"the fed answer prefix ({scores.share_answer.mean():.0%}) and errors "
                 f"({scores.share_error.mean():.0%}).")
    return f"The circuit of {cell_type!r} reaches no gene that pushes the call towards it.{where}"


def short_of_share_message(scores: pd.DataFrame | None, min_share: float | None) -> str:
    """A sentence naming the cells whose circuit cannot carry ``min_share`` of the call even with every feature
    of the traced sequence on (they keep the standard pruned circuit)."""
    if min_share is None or scores is None or "feature_share_reached" not in scores:
        return ""
    short = scores[~scores.feature_share_reached.astype(bool)]
    if not len(short):
        return ""
    best = short.feature_share_all[np.isfinite(short.feature_share_all)]
    if not len(best):  # the label's log-odds is the same with every feature off: there is no share to carry
        return (f"In {len(short)} of {len(scores)} cells switching every feature off does not move the label's "
                "log-odds, so no share of it can be measured; those cells keep the standard pruned circuit.")
    return (f"In {len(short)} of {len(scores)} cells the features cannot carry {min_share:.0%} of the label's "
            f"log-odds even with every feature of the traced sequence on (they carry {best.max():.0%} at most); "
            f"those cells keep the standard pruned circuit, which carries "
            f"{short.feature_share_pruned.median():.0%} (median).")


def cell_type_circuit(adata, model, transcoders: dict, cell_type: str, cfg=None, *, label_key: str | None = None,
                      candidates=None, n_cells: int = 8, n_genes: int | None = None, organism: str | None = None,
                      seed: int = 0, key_added: str = "circuits", encoded=None, progress: bool = True,
                      **settings) -> CellTypeCircuit:
    """Trace why a C2S model calls cells ``cell_type``, over a sample of that type's cells.

    The default target is the call as :func:`predict_cell_types` scores it: the log-odds of
    ``cell_type`` against all other candidate labels, ``log q / (1 - q)`` with ``q`` the softmax over
    candidates of each answer's summed token log-probabilities (``target="logprob"``: ``log q``),
    linearized at the model's final hidden states (:func:`sctranscoder.circuits.answer_logprob`); the
    model is fed the prompt and the label's answer. ``target="contrast"``: the older target, the cell type's answer token against
    its rivals' tokens where the answers part (:func:`answer_contrast`), after the shared prefix.

    ``method="complete"`` builds circuit-tracer's complete attribution graph per cell
    (:func:`sctranscoder.circuits.attribute`, pruned by cumulative influence), with its replacement
    and completeness scores; ``method="greedy"`` the older best-first search
    (:func:`sctranscoder.circuits.trace`). Input tokens are pooled per gene; the template's tokens
    and the fed answer tokens each form one named input. The per-cell graphs are merged (a feature is
    the same node at every position, attributions averaged over cells). Gene rankings (signed
    contribution to the target over all paths of the unpruned graph, averaged over cells) go to
    ``adata.uns[key_added][cell_type]``.

    With ``min_feature_share`` (complete graphs), each cell's circuit is then grown until its features alone
    carry that share of the label's log-odds over all candidates, measured in the replacement model with
    every other feature zero-ablated and the transcoders' errors held
    (:func:`sctranscoder.circuits.grow_circuit`, the measure :func:`validate_circuit` reports as
    ``feature_share``). Per cell, ``result.scores`` records the share reached and the features it took,
    beside the standard pruned circuit's; ``result.message`` says in words where a cell cannot reach it.

    Parameters
    ----------
    adata
        Cells with labels in ``adata.obs[label_key]`` (default: the model's training label key).
    model
        A :class:`sctranscoder.models.C2SModel`.
    transcoders
        ``{layer: Transcoder}`` (from :func:`sctranscoder.tl.train_transcoders`).
    cell_type
        The label to explain.
    cfg
        A :class:`sctranscoder.circuits.CircuitConfig`: the method (``"complete"`` or ``"greedy"``), the
        target (``"logodds"``, ``"logprob"`` or ``"contrast"``), node budget and pruning thresholds, the
        feature share to grow to (``min_feature_share``, default 0.8), ``check_faithfulness``, ``validate``
        (knock the top genes out, ``result.validation``) and ``rank_genes_by`` (``"knockout"``: also rank
        every sentence gene by its measured knockout effect, ``result.genes_by_knockout``). ``settings``
        (``method="greedy"``, ``max_nodes=6``, ...) change single fields of it.
    candidates
        The labels it competes with (default: the model's training labels).
    n_cells
        How many cells of that type to trace (a seeded sample).
    n_genes, organism
        Change single prompt settings; default: the model's (with ``encoded``: its own, or an error).
    seed
        Seed of the sample of cells.
    key_added
        ``adata.uns[key_added][cell_type]`` gets the gene ranking and the settings.
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`; with or without answers:
        the prompts are traced); default: the sampled cells are tokenized here.
    """
    from dataclasses import replace

    from .. import circuits as cc
    from ..models import answer_tokens
    from ..prompt import resolve_cells, resolve_settings

    cfg = replace(cfg, **settings) if cfg is not None else cc.CircuitConfig(**settings)
    label_key = label_key or model.metadata.get("label_key")
    require_obs_column(adata, label_key)
    candidates = list(candidates) if candidates is not None else model.labels
    if cell_type not in candidates:
        raise ValueError(f"{cell_type!r} is not among the candidate labels ({', '.join(candidates)}).")
    settings = resolve_settings(adata, model, encoded, label_key=label_key, progress=False, n_genes=n_genes,
                                organism=organism)
    tokenizer = model.tokenizer
    answer_ids = answer_tokens(tokenizer, candidates)
    answers = dict(zip(candidates, answer_ids))
    index = candidates.index(cell_type)
    prefix, token, rivals = cc.answer_contrast(answers, cell_type)

    cells = _cells_of(adata, cell_type, label_key, n_cells, seed)
    documents = resolve_cells(adata, model, encoded, rows=cells, settings=settings, progress=False)
    prompts = documents.prompt_ids()  # an encoding made with label_key carries answers: the target feeds its own
    graphs, gene_rows, checks, score_rows, exports, grown_features, attributions = [], [], [], [], [], [], []
    for i in progress_bar(range(len(cells)), desc=f"circuit {cell_type}", unit="cells", enabled=progress):
        cell = str(adata.obs_names[cells[i]])
        traced = cc.trace_call(model.model, transcoders, [int(t) for t in prompts[i]], answer_ids, index, cfg,
                               token_gene=documents.token_gene[i], span_ids=documents.span_ids[i],
                               genes=documents.genes, decode=tokenizer.decode, label=cell_type,
                               slug=f"{cell_type} {cell}")
        traced.graph.graph["cell"] = cell
        graphs.append(traced.graph)
        score_rows.append({"cell": cell, **traced.row})
        gene_rows += traced.gene_rows
        if traced.export is not None:
            exports.append(traced.export)
        if traced.features is not None:
            grown_features.append(traced.features)
        if traced.check is not None:
            checks.append({"cell": cell, **traced.check})
        attributions.append(getattr(traced, "attribution", None))
    merged = cc.merge(graphs)
    merged.graph.update(cell_type=cell_type, n_layers=graphs[0].graph["n_layers"], method=cfg.method,
                        target_kind=cfg.target)
    scores = pd.DataFrame(score_rows)
    for column in ("replacement", "completeness", "replacement_pruned", "completeness_pruned"):
        if column in scores:
            merged.graph[column] = float(scores[column].mean())
    table = cc.gene_table(gene_rows, len(graphs))
    if cfg.target != "contrast":
        what = "log-odds" if cfg.target == "logodds" else "log-probability"
        target_info = {"kind": cfg.target, "token": cell_type, "rivals": [c for c in candidates if c != cell_type],
                       "prefix": tokenizer.decode(answers[cell_type][:-1]),
                       "description": f"the {what} of {cell_type!r} against all {len(candidates)} candidate labels, "
                                      "as predict_cell_types scores them"}
    else:
        target_info = {"kind": "contrast", "token": tokenizer.decode([token]),
                       "rivals": [tokenizer.decode([t]) for t in rivals], "prefix": tokenizer.decode(prefix),
                       "description": f"logit of {tokenizer.decode([token])!r} minus the mean of its rivals' after "
                                      f"{tokenizer.decode(prefix)!r}"}
    recorded = {"n_cells": int(len(cells)), "method": cfg.method, "target": cfg.target,
                "max_feature_nodes": cfg.max_feature_nodes if cfg.max_feature_nodes is not None else -1,
                "max_nodes": cfg.max_nodes, "threshold": cfg.threshold, "node_threshold": cfg.node_threshold,
                "edge_threshold": cfg.edge_threshold, "n_paths": cfg.n_paths if cfg.n_paths is not None else -1,
                "seed": seed, "label_key": label_key,
                "min_feature_share": cfg.min_feature_share if cfg.min_feature_share is not None
                and cfg.method == "complete" else -1}
    message = " ".join(m for m in (no_gene_message(cell_type, table, scores),
                                   short_of_share_message(scores, cfg.min_feature_share)) if m)
    adata.uns.setdefault(key_added, {})[cell_type] = {
        "genes": table.gene.tolist(), "attribution": table.attribution.to_numpy(), "n_cells": table.n_cells.to_numpy(),
        "target": target_info["token"], "settings": recorded, "message": message}
    result = CellTypeCircuit(cell_type, merged, table, graphs, [str(adata.obs_names[c]) for c in cells], target_info,
                             pd.DataFrame(checks) if checks else None, recorded, scores, message, exports,
                             grown_features)
    if cfg.method == "complete" and cfg.max_supernodes is not None:
        from ._circuit_supernodes import SupernodeSettings, cell_type_supernodes

        grouping = SupernodeSettings(max_supernodes=cfg.max_supernodes, grouping=cfg.grouping, fold_r2=cfg.fold_r2,
                                     n_null=cfg.n_null, n_identity_cells=cfg.n_identity_cells, seed=seed)
        found = cell_type_supernodes(adata, model, transcoders, result, attributions, documents=documents,
                                     encoded=encoded, settings=settings, label_key=label_key, candidates=candidates,
                                     config=grouping)
        result.supernodes, result.supernode_share, result.feature_circuit = found.table, found.share, found.graph
        result.folded, result.supernode_instances = found.folded, found.instances
        recorded.update(max_supernodes=cfg.max_supernodes, grouping=cfg.grouping,
                        fold_r2=cfg.fold_r2 if cfg.fold_r2 is not None else -1)
    del attributions  # the complete graphs are large; the results keep what they predicted
    if cfg.validate or cfg.rank_genes_by == "knockout":
        from ._knockout_settings import Knockouts
        from ._validate import validate_circuit

        ranked = Knockouts(rank="sentence") if cfg.rank_genes_by == "knockout" else None
        validate_circuit(adata, model, transcoders, result, knockouts=ranked,
                         candidates=candidates, encoded=encoded, n_genes=n_genes, organism=organism, progress=progress)
    return result
