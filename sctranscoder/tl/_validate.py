"""Does a cell-type circuit survive the experiment? Its gene ranking against knockouts, its features alone.

Attributions are read off a linearization of the model (attention and norms
frozen, one token contrast); knockouts are measured on the real model (the gene's
expression set to 0, the sentence re-ranked, every candidate re-scored). Where
the two disagree, the knockout is the fact and the attribution the hypothesis,
so the measured ranking (``genes_by_knockout``) is the one to read genes from,
and the circuit is the mechanism offered for it.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ._knockout_settings import Knockouts


def circuit_features(circuit) -> list:
    """Per traced cell: the circuit's features as ``(layer, feature, position)``: the grown circuit's (features
    over the node budget included) when :func:`cell_type_circuit` grew it, else each graph's feature nodes."""
    from ..circuits import graph_features

    if getattr(circuit, "circuit_features", None):
        return circuit.circuit_features
    return [graph_features(graph) for graph in circuit.graphs]


def feature_share(model, transcoders, prompts, circuits, label_index: int, answers, *, ablation: str = "zero") -> list:
    """:func:`sctranscoder.circuits.feature_shares` with a :class:`sctranscoder.models.C2SModel`."""
    from ..circuits import feature_shares

    return feature_shares(model.model, transcoders, prompts, circuits, label_index, answers, ablation=ablation)


def mask_gradients(model, documents, label_index: int, answers) -> pd.Series:
    """Per gene: :func:`sctranscoder.circuits.group_mask_gradients` of log P(label) over encoded cells (0 where
    a gene is not in a cell's sentence, as for attributions and knockouts)."""
    from ..circuits import group_mask_gradients

    names = np.asarray(documents.genes, dtype=object)
    prompts = documents.prompt_ids()
    groups = [[str(names[spans[g]]) if g >= 0 else None for g in token_gene[: len(ids)]]
              for ids, token_gene, spans in zip(prompts, documents.token_gene, documents.span_ids)]
    return group_mask_gradients(model.model, prompts, groups, answers, label_index)


def _agreement(scores: pd.Series, effect: pd.Series, top: int) -> tuple[pd.DataFrame, float, float]:
    """A method's ``top`` genes by absolute score against their knockout effects: table, Spearman, top-5 signs."""
    from ..circuits import spearman as rank_correlation

    ranked = scores.reindex(scores.abs().sort_values(ascending=False).index)[:top]
    table = pd.DataFrame({"gene": list(ranked.index), "attribution": ranked.to_numpy(),
                          "knockout_effect": [float(effect.get(g, 0.0)) for g in ranked.index]})
    table["signs_agree"] = np.sign(table.attribution) == np.sign(table.knockout_effect)
    head = table.head(5)
    return (table, rank_correlation(table.attribution, table.knockout_effect),
            float(head.signs_agree.mean()) if len(head) else float("nan"))


def knockout_cell_names(adata, circuit, traced: list, n: int | None, seed: int) -> list:
    """The cells knocked out: the ``traced`` ones, then (``n`` above their number) a seeded sample of the other
    cells of ``adata`` with the circuit's label, up to ``n`` in all."""
    if n is None or n <= len(traced):
        return list(traced)[: n if n is not None else None]
    label_key = circuit.settings.get("label_key")
    if label_key is None or label_key not in adata.obs:
        return list(traced)
    same = adata.obs_names[(adata.obs[label_key].astype(str) == str(circuit.cell_type)).to_numpy()]
    taken = set(traced)
    others = [c for c in same if c not in taken]
    rng = np.random.default_rng(seed)
    extra = sorted(rng.choice(len(others), size=min(n - len(traced), len(others)), replace=False).tolist())
    return list(traced) + [others[i] for i in extra]


def validate_circuit(adata, model, transcoders: dict, circuit, *, top_genes: int = 10, ablation: str = "zero",
                     knockouts: Knockouts | None = None, gradients: bool = True, candidates=None, encoded=None,
                     n_genes: int | None = None, organism: str | None = None, n_cells: int | None = None,
                     progress: bool = True) -> dict:
    """Check a :class:`CellTypeCircuit`'s gene ranking against gene knockouts in the traced cells.

    Knocks out (``mode="zero"``) the circuit's ``top_genes`` genes with the largest absolute
    attribution, its ``top_genes`` strongest towards the call (the top of its gene table) and the
    ``top_genes`` largest attention-mask gradients (or, with ``knockouts.rank="sentence"``, every gene of the traced cells'
    sentences) in each knocked-out cell and re-scores every candidate with the real
    model. The knockout effect of a gene is the drop in log P(cell type) over all
    candidates, averaged over the cells (0 where the gene is not in a cell's
    sentence, as for attributions).

    Each tested gene is also set against its own null (``knockouts.draws`` > 0,
    :func:`sctranscoder.tl.knockout_test`): random genes at the same sentence
    positions of the same cells, not among the tested genes, knocked out in the
    same scoring passes. Removing any gene moves every gene below it up one place,
    so only a gene whose effect passes that null is *measured* (``passes``).

    Sets ``circuit.validation`` (and ``circuit.genes_by_knockout`` when
    ``knockouts.rank`` is set) and returns the validation: ``spearman`` (attribution vs
    knockout effect over the validated genes), ``sign_agreement_top5`` (share of the
    5 genes with the largest absolute attribution whose knockout moves the
    probability the way the attribution's sign says), ``feature_share`` (median over
    cells of :func:`feature_share` on each cell's circuit features, the grown circuit's
    where :func:`cell_type_circuit` grew it, with ``ablation`` stated; with zero
    ablation it is the share the circuit was grown to), and the per-gene table.
    With ``gradients``, the same for a second attribution, measured on the real model
    against the same target as the knockouts: the attention-mask gradient of log
    P(cell type) (:func:`sctranscoder.circuits.attention_mask_gradients`), under
    ``validation["gradient"]``; its top genes are knocked out too.
    ``n_genes`` / ``organism`` change single prompt settings, as in :func:`cell_type_circuit`;
    ``n_cells``: validate only the first ``n_cells`` traced cells (default: all; knockouts of every
    sentence gene cost one scoring pass per 64 genes and cell).

    ``knockouts``: which genes, in how many cells, against which null (:class:`Knockouts`; default: the
    checked genes in the validated cells, 4 random knockouts per gene and cell, FDR 0.05 in at least 3 cells).
    ``validation["knockout_null"]`` holds the per-gene test, ``validation["message"]`` a sentence when
    no gene passes.
    """
    from ..circuits import ABLATIONS, input_features
    from ..models import answer_tokens
    from ..prompt import resolve_cells
    from ._knockout import cell_positions, gene_indices, score_knockouts
    from ._knockout_null import warn_few_cells
    from ._knockout_vs_null import no_pass_message, score_with_null

    if ablation not in ABLATIONS:
        raise ValueError(f"ablation={ablation!r} must be one of {ABLATIONS}.")
    knockouts = knockouts or Knockouts()
    n_draws, max_fdr, min_cells = knockouts.draws, knockouts.max_fdr, knockouts.min_cells
    candidates = list(candidates) if candidates is not None else list(model.labels or [])
    cell_type = circuit.cell_type
    if cell_type not in candidates:
        raise ValueError(f"{cell_type!r} is not among the candidate labels ({', '.join(candidates)}).")
    if n_cells is not None and n_cells < 1:
        raise ValueError(f"n_cells={n_cells} must be at least 1 (or None: every traced cell).")
    cells = list(circuit.cells)[: n_cells if n_cells is not None else None]
    knocked_cells = knockout_cell_names(adata, circuit, cells, knockouts.cells, knockouts.seed)
    rows = cell_positions(adata, knocked_cells)
    every = resolve_cells(adata, model, encoded, rows=rows, progress=False, n_genes=n_genes, organism=organism)
    documents = every.subset(np.arange(len(cells)))  # the traced cells: gradients and feature shares
    attribution = circuit.genes.set_index("gene").attribution if len(circuit.genes) else pd.Series(dtype=float)
    answers = answer_tokens(model.tokenizer, candidates)
    label_index = candidates.index(cell_type)
    clock = time.perf_counter()
    gradient = mask_gradients(model, documents, label_index, answers) if gradients else pd.Series(dtype=float)
    seconds = {"gradients": time.perf_counter() - clock}
    chosen = [list(s.reindex(s.abs().sort_values(ascending=False).index).index[:top_genes])
              for s in (attribution, gradient)]
    # the circuit's own top genes, as its gene table lists them (strongest push towards the call first), are
    # always tested: the largest |attribution| can all be genes that push away
    towards = list(attribution[attribution > 0].sort_values(ascending=False).index[:top_genes])
    checked = list(dict.fromkeys(chosen[0] + towards + chosen[1]))
    names = np.asarray(every.genes, dtype=object)
    every_gene = knockouts.rank == "sentence"
    genes = None if every_gene else (gene_indices(names, checked) if checked else np.zeros(0, np.int64))
    clock = time.perf_counter()
    table = tested = None
    if genes is None or len(genes):
        if n_draws:
            warn_few_cells(len(rows), min_cells, f"validate_circuit({cell_type!r})")
            table, tested, _ = score_with_null(adata, model, rows, every, genes, cell_type, candidates,
                                               n_draws=n_draws, seed=knockouts.seed, max_fdr=max_fdr,
                                               min_cells=min_cells,
                                               progress=progress)
        else:
            table = score_knockouts(adata, model, rows, every, every.settings, genes, "zero", cell_type,
                                    candidates, progress=progress)
    seconds["knockouts"] = time.perf_counter() - clock
    n_knocked = len(rows)
    if table is not None and len(table):
        effect = (-table.groupby("gene").delta_logp.sum() / n_knocked)
        effect_odds = (-table.groupby("gene").delta_logodds.sum() / n_knocked)
        present = table[table.in_sentence].groupby("gene").size()
    else:
        effect = effect_odds = present = pd.Series(dtype=float)
    per_gene, spearman, signs = _agreement(attribution, effect, top_genes)
    clock = time.perf_counter()
    features = circuit_features(circuit)[: len(cells)]
    shares = feature_share(model, transcoders, documents.prompt_ids(), features, label_index, answers,
                           ablation=ablation)
    seconds["feature_share"] = time.perf_counter() - clock
    validation = {
        "effect": "drop in log P(cell type) over all candidates when the gene's expression is set to 0 and the "
                  "sentence re-ranked (measured); attribution: the circuit's linearized share of the target (attributed)",
        "n_genes": len(per_gene), "n_cells": len(cells), "n_cells_knockout": n_knocked,
        "spearman": spearman,
        "sign_agreement_top5": signs,
        "feature_share": float(np.nanmedian(shares)) if np.isfinite(shares).any() else float("nan"),
        "feature_share_cells": [float(s) for s in shares],
        "ablation": ablation,
        "circuit_features_cells": [len(f) for f in features],
        "min_feature_share": circuit.settings.get("min_feature_share", -1),
        "genes": per_gene,
        "n_prompts": table.attrs.get("n_prompts", 0) if table is not None else 0,
        "n_passes": table.attrs.get("n_passes", 0) if table is not None else 0,
        "seconds": seconds,
    }
    if tested is not None:
        validation.update(knockout_null=tested, n_draws=n_draws, max_fdr=max_fdr, min_cells=min_cells,
                          n_passing=int(tested.passes.sum()),
                          message=no_pass_message(tested, n_knocked, f"P({cell_type})"))
        per_gene["passes"] = per_gene.gene.isin(set(tested.gene[tested.passes]))
    if gradients:
        table_g, spearman_g, signs_g = _agreement(gradient, effect, top_genes)
        validation["gradient"] = {"spearman": spearman_g, "sign_agreement_top5": signs_g, "genes": table_g}
    circuit.validation = validation
    if knockouts.rank is not None:
        fed = input_features(circuit.graph)
        measured = pd.DataFrame({"gene": effect.index, "knockout_effect": effect.to_numpy(),
                                 "knockout_effect_logodds": effect_odds.reindex(effect.index).to_numpy()})
        measured["attribution"] = [float(attribution.get(g, 0.0)) for g in measured.gene]
        if gradients:
            measured["gradient"] = [float(gradient.get(g, 0.0)) for g in measured.gene]
        measured["n_cells"] = [int(present.get(g, 0)) for g in measured.gene]
        measured["features"] = [", ".join(fed.get(g, [])[:5]) for g in measured.gene]
        if tested is not None:  # the null's columns; n_cells is the same count (cells whose sentence holds it)
            measured = measured.merge(tested.drop(columns=["n_cells"]), on="gene", how="left")
            measured["passes"] = measured.gene.isin(set(tested.gene[tested.passes]))
        circuit.genes_by_knockout = measured.sort_values("knockout_effect", ascending=False, ignore_index=True)
        validation["genes_by_knockout"] = circuit.genes_by_knockout
    return validation


def passing_genes(measured: pd.DataFrame | None) -> pd.DataFrame | None:
    """The rows of a measured knockout table (``genes_by_knockout``) that count as measured: those that pass
    their rank-matched null, strongest effect first (a table without the null: positive effects); ``None``
    when there is no table."""
    if measured is None:
        return None
    if "passes" in measured:
        return measured[measured.passes.astype(bool)].sort_values("effect", ascending=False, ignore_index=True)
    return measured[measured.knockout_effect > 0].reset_index(drop=True)
