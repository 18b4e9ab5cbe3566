"""A cell-type circuit read as a few named supernodes, each checked by intervention and its name by a control.

Steps (:func:`cell_type_supernodes`, run by :func:`sctranscoder.tl.cell_type_circuit` on complete graphs):

1. Feature-level nodes: a (layer, feature) at every position is one node. Features whose activation the token
   they sit on predicts (adjusted R^2 >= ``fold_r2`` over the traced cells and a sample of other cells, see
   :func:`sctranscoder.circuits.token_identity_r2`) are folded into their gene's input node.
2. The remaining features are grouped into at most ``max_supernodes`` modules (``grouping``); the grown
   circuit's features over the attribution's node budget, which have no edges in the graph, then join the module
   whose members they co-activate with most (so the supernodes hold the whole circuit):

   - ``"edges"`` (default): similar signed edge profiles in the feature-level circuit (same inputs, same
     targets). Chosen as default because it uses what the circuit itself says (the paths the call runs
     along), needs no gene-set library and no extra cells, and gives every feature a module. On the default
     model (4 PBMC types, 3 cells each) its supernodes' predicted effects tracked the measured ones at Spearman
     0.95 / 0.69 / 0.83 / 0.83 per type against co-activation's 0.62 / 0.74 / 0.83 / 0.45 (circuits guide).
   - ``"coactivation"``: similar activation over cells (traced and sampled).
   - ``"gene_sets"``: the feature's input genes' best gene set (today's :func:`circuit_supernodes`); features
     that pass no set, and sets beyond the largest ``max_supernodes - 1``, share one module.
3. Each module is named by the best gene set of its input genes (FDR over the sets tested) or, when none passes,
   by its top genes; beside the name, the control p-value of expression-matched random gene lists
   (:func:`sctranscoder.genesets.expression_matched_p`).
4. Each module's effect on the call (log-odds of the label over all candidates) when switched off in the
   traced cells: predicted by the attribution graph, measured with attention frozen (constrained patching, as
   circuit-tracer intervenes) and unfrozen. The supernodes' share: what they carry together with every other
   feature off (folded features stay on: they are part of the inputs), measured as :func:`validate_circuit`
   measures a feature share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COLUMNS = ["supernode", "name", "n_features", "n_over_budget", "genes", "predicted_effect", "measured_effect",
           "measured_effect_unfrozen", "control_p", "best_set_p", "best_set_fdr", "term", "layers", "features"]


@dataclass
class Supernodes:
    """What :func:`cell_type_supernodes` returns."""

    table: pd.DataFrame
    """One row per supernode (see :attr:`CellTypeCircuit.supernodes`)."""
    share: float
    """Median over cells of the share of the call the supernodes carry together, everything else off."""
    shares: list
    """That share per traced cell."""
    graph: object
    """The feature-level circuit (folded, merged; feature nodes carry ``supernode`` and ``positions``)."""
    folded: pd.DataFrame
    """Per circuit feature: ``layer``, ``feature``, ``r2`` (token identity) and ``folded``;
    ``attrs["per_layer"]``: ``{layer: number folded}``."""
    instances: dict = field(default_factory=dict)
    """``{supernode: per traced cell, [(layer, feature, position, activation)]}``."""


def _per_cell_features(circuit) -> list:
    from ._validate import circuit_features

    return [[(int(a), int(b), int(c)) for a, b, c in cell] for cell in circuit_features(circuit)]


def _identity_rows(adata, circuit, n_extra: int, seed: int) -> np.ndarray:
    from ._knockout import cell_positions

    traced = cell_positions(adata, circuit.cells)
    others = np.setdiff1d(np.arange(adata.n_obs), traced)
    rng = np.random.default_rng(seed)
    extra = np.sort(rng.choice(others, size=min(n_extra, others.size), replace=False)) if n_extra else []
    return np.concatenate([traced, np.asarray(extra, dtype=int)])


def _expression(adata, cell_type: str, label_key: str, genes) -> pd.Series:
    """Mean expression of ``genes`` over the cells of ``cell_type`` (the matrix cell sentences read by default)."""
    from ..pp._matrix import select_expression

    source = select_expression(adata)
    rows = np.flatnonzero(adata.obs[label_key].astype(str).to_numpy() == str(cell_type))
    matrix = source.matrix[rows] if rows.size else source.matrix
    means = np.asarray(matrix.mean(axis=0)).ravel()
    by_gene = pd.Series(means, index=pd.Index(source.genes.astype(str))).groupby(level=0).mean()
    return by_gene.reindex([str(g).upper() for g in genes]).fillna(0.0)


def _gene_set_labels(graph, nodes, gene_sets, background, max_groups: int) -> np.ndarray:
    from ._supernodes import circuit_supernodes

    table = circuit_supernodes(graph, gene_sets, background=background)
    term_of = dict(zip(table.node, table.supernode))
    weight = {n: abs(graph.nodes[n].get("attribution", 0.0)) for n in nodes}
    terms = pd.Series({n: term_of.get(n, "") for n in nodes})
    ranked = (terms[terms != ""].groupby(terms[terms != ""]).apply(lambda s: sum(weight[n] for n in s.index))
              .sort_values(ascending=False).index.tolist())
    keep = ranked[: max_groups - 1] if len(ranked) >= max_groups else ranked
    code = {term: i for i, term in enumerate(keep)}
    return np.array([code.get(terms[n], len(keep)) for n in nodes])


def _gene_profiles(graph) -> dict:
    """Per feature node: the genes whose positive influence reaches it, directly or through upstream features
    (an upstream feature passes on its own profile, normalized, in proportion to its positive edge)."""
    profiles: dict = {}
    features = sorted((n for n, d in graph.nodes(data=True) if d["kind"] == "feature"),
                      key=lambda n: graph.nodes[n]["layer"])
    for node in features:
        profile: dict = {}
        for source, _, weight in graph.in_edges(node, data="weight"):
            data = graph.nodes[source]
            if weight <= 0:
                continue
            if data["kind"] == "input" and data.get("section", "gene") == "gene":
                profile[data["label"]] = profile.get(data["label"], 0.0) + weight
            elif data["kind"] == "feature" and profiles.get(source):
                upstream = profiles[source]
                total = sum(upstream.values())
                for gene, value in upstream.items():
                    profile[gene] = profile.get(gene, 0.0) + weight * value / total
        profiles[node] = profile
    return profiles


def _module_genes(profiles: dict, nodes, n_top: int = 10) -> list:
    """The genes whose positive influence reaches the module's features most (folded gene inputs included)."""
    weights: dict = {}
    for node in nodes:
        for gene, value in profiles.get(node, {}).items():
            weights[gene] = weights.get(gene, 0.0) + value
    return [g for g, _ in sorted(weights.items(), key=lambda x: -x[1])[:n_top]]


def _names(gene_lists: dict, gene_sets, background, expression, *, max_fdr: float, n_null: int,
           seed: int) -> pd.DataFrame:
    from .. import genesets

    rows = {name: {"term": "", "best_set_fdr": float("nan")} for name in gene_lists}
    testable = {k: v for k, v in gene_lists.items() if len(v) >= 2}
    if testable:
        table = genesets.enrich(testable, gene_sets, background, min_set_size=3, min_overlap=2)
        for name in testable:
            hits = table[table.List.astype(str) == str(name)].sort_values("P-value")
            if len(hits):
                rows[name].update(term=str(hits.iloc[0].Term), best_set_fdr=float(hits.iloc[0]["Adjusted P-value"]))
    frame = pd.DataFrame.from_dict(rows, orient="index")
    controls = genesets.expression_matched_p(gene_lists, gene_sets, background, expression, n_null=n_null,
                                             seed=seed)
    frame["best_set_p"] = controls.best_p.reindex(frame.index).to_numpy()
    frame["control_p"] = controls.control_p.reindex(frame.index).to_numpy()
    named = []
    for name, row in frame.iterrows():
        genes = gene_lists[name]
        if row.term and row.best_set_fdr <= max_fdr:
            named.append(genesets.short_term(row.term))
        else:
            named.append("top genes: " + ", ".join(genes[:3]) if genes else "no gene input")
    frame["name"] = _told_apart(named, [gene_lists[name] for name in frame.index])
    return frame


def _told_apart(named: list[str], gene_lists: list[list[str]]) -> list[str]:
    """Modules named by the same set get their own leading genes beside it, two that no other module of that
    name leads with (its top 3), so a reader sees how they differ; a number where even those agree."""
    named = list(named)
    for name in {n for n in named if named.count(n) > 1}:
        members = [i for i, n in enumerate(named) if n == name]
        for i in members:
            others = {g for j in members if j != i for g in gene_lists[j][:3]}
            own = [g for g in gene_lists[i] if g not in others][:2]
            named[i] = f"{name} ({', '.join(own)})" if own else name
    seen: dict = {}
    for i, name in enumerate(named):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            named[i] = f"{name} ({seen[name]})"
    return named


def _join_by_coactivation(values, prompt_lengths, pairs, members_of: dict, extra) -> dict:
    """``{pair: module}``: each of ``extra`` (``(layer, feature)`` pairs, columns of ``values`` in the order of
    ``pairs``) in the module whose members' mean co-activation profile over the prompts is closest (cosine);
    all in ``"S1"`` when there is no module."""
    from .. import circuits as cc

    if not extra:
        return {}
    if not members_of:
        return {pair: "S1" for pair in extra}
    column = {p: i for i, p in enumerate(pairs)}
    profiles = cc.coactivation_profiles(values, prompt_lengths)  # (n_pairs, n_prompts)
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    unit = np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)
    names = list(members_of)
    centroids = np.stack([unit[[column[p] for p in members_of[n]]].mean(0) for n in names])
    scores = unit[[column[p] for p in extra]] @ centroids.T
    return {pair: names[int(k)] for pair, k in zip(extra, scores.argmax(1))}


def _clean_activations(lm, transcoders: dict, attributions: list, pairs):
    """``(cell, layer, feature, position) -> activation`` on the model's own pass over traced cell ``cell``'s
    traced sequence (its prompt and any fed answer tokens, as its attribution graph holds them); NaN without
    one."""
    from .. import circuits as cc

    traced = [list(map(int, a.input_ids)) for a in attributions if a is not None]
    values, _ = cc.feature_activations(lm, transcoders, traced, pairs)
    column = {p: i for i, p in enumerate(pairs)}
    starts, at = {}, 0
    for cell, attribution in enumerate(attributions):
        if attribution is not None:
            starts[cell], at = at, at + len(attribution.input_ids)

    def clean(cell: int, layer: int, feature: int, position: int) -> float:
        if cell not in starts or position >= len(attributions[cell].input_ids):
            return float("nan")
        return float(values[starts[cell] + position, column[(layer, feature)]])
    return clean


@dataclass(frozen=True)
class SupernodeSettings:
    """How :func:`cell_type_supernodes` folds, groups and names a circuit's features (see the module):
    at most ``max_supernodes`` modules by ``grouping`` (``"edges"``, ``"coactivation"`` or ``"gene_sets"``);
    features whose activation token identity predicts at R^2 >= ``fold_r2`` (None: none) are folded into their
    genes' inputs, measured over the traced cells and ``n_identity_cells`` others; names from ``gene_sets`` at
    FDR <= ``max_fdr``, each against ``n_null`` expression-matched random lists; ``seed`` for the samples."""

    max_supernodes: int = 8
    grouping: str = "edges"
    fold_r2: float | None = 0.9
    gene_sets: object = "all"
    max_fdr: float = 0.05
    n_null: int = 1000
    n_identity_cells: int = 16
    seed: int = 0


def cell_type_supernodes(adata, model, transcoders: dict, circuit, attributions: list, *, documents=None,
                         encoded=None, settings=None, label_key: str | None = None, candidates=None,
                         config: SupernodeSettings | None = None) -> Supernodes:
    """Fold, group, name and check a :class:`CellTypeCircuit`'s features (see the module).

    ``attributions``: per traced cell, its complete :class:`sctranscoder.circuits.AttributionGraph` (for the
    predicted effects). ``config``: :class:`SupernodeSettings` (the names' p-value floor is ``1/(1+n_null)``).
    """
    from .. import circuits as cc
    from ..models import answer_tokens
    from ..prompt import resolve_cells

    config = config or SupernodeSettings()
    max_supernodes, grouping, fold_r2, gene_sets = (config.max_supernodes, config.grouping, config.fold_r2,
                                                    config.gene_sets)
    max_fdr, n_null, n_identity_cells, seed = config.max_fdr, config.n_null, config.n_identity_cells, config.seed
    label_key = label_key or model.metadata.get("label_key")
    candidates = list(candidates) if candidates is not None else list(model.labels)
    answer_ids = answer_tokens(model.tokenizer, candidates)
    index = candidates.index(circuit.cell_type)
    per_cell = _per_cell_features(circuit)
    pairs = sorted({(layer, feature) for cell in per_cell for layer, feature, _ in cell})

    # 1. token identity, over the traced cells and a sample of others
    rows = _identity_rows(adata, circuit, n_identity_cells, seed)
    every = resolve_cells(adata, model, encoded, rows=rows, settings=settings, progress=False)
    prompts = every.prompt_ids()
    values, tokens = cc.feature_activations(model.model, transcoders, prompts, pairs)
    r2 = cc.token_identity_r2(values, tokens)
    folded_mask = np.nan_to_num(r2, nan=-np.inf) >= fold_r2 if fold_r2 is not None else np.zeros(len(pairs), bool)
    folded = pd.DataFrame({"layer": [p[0] for p in pairs], "feature": [p[1] for p in pairs], "r2": r2,
                           "folded": folded_mask})
    folded.attrs["per_layer"] = {int(k): int(v) for k, v in folded.groupby("layer").folded.sum().items()}
    folded_pairs = {p for p, f in zip(pairs, folded_mask) if f}

    documents = documents if documents is not None else resolve_cells(adata, model, encoded, rows=rows[: len(per_cell)],
                                                                      settings=settings, progress=False)
    groups, sections = [], []
    for i, graph in enumerate(circuit.graphs):
        n_prompt = len(documents.prompt_ids()[i])
        _, g, s = cc.input_groups(documents.token_gene[i], documents.span_ids[i], documents.genes, n_prompt,
                                  int(graph.graph["n_tokens"]))
        groups.append(g)
        sections.append(s)
    graph = cc.feature_circuit(circuit.graphs, folded_pairs, groups, sections, circuit.cells)

    # 2. modules
    nodes = [n for n, d in graph.nodes(data=True) if d["kind"] == "feature"]
    background = circuit.genes.gene.astype(str).tolist()
    if not nodes:
        labels = np.zeros(0, int)
    elif grouping == "gene_sets":
        labels = _gene_set_labels(graph, nodes, gene_sets, background, max_supernodes)
    elif grouping == "coactivation":
        column = {p: i for i, p in enumerate(pairs)}
        picked = values[:, [column[(graph.nodes[n]["layer"], graph.nodes[n]["feature"])] for n in nodes]]
        labels = cc.group_features("coactivation", values=picked, prompt_lengths=[len(p) for p in prompts],
                                   max_groups=max_supernodes)
    else:
        labels = cc.group_features(grouping, graph=graph, nodes=nodes, max_groups=max_supernodes)
    n_groups = int(labels.max()) + 1 if len(labels) else 0
    modules = {f"S{k + 1}": [n for n, lab in zip(nodes, labels) if lab == k] for k in range(n_groups)}
    modules = {k: v for k, v in modules.items() if v}
    for name, members in modules.items():
        for node in members:
            graph.nodes[node]["supernode"] = name
    members_of = {name: {(graph.nodes[n]["layer"], graph.nodes[n]["feature"]) for n in members}
                  for name, members in modules.items()}
    # the grown circuit's features over the node budget have no edges in the graph: each joins the module it
    # co-activates with most, so the supernodes hold the whole circuit (their share is the circuit's)
    in_modules = set().union(*members_of.values()) if members_of else set()
    over_budget = [p for p in pairs if p not in in_modules and p not in folded_pairs]
    lengths = [len(p) for p in prompts]
    joined = _join_by_coactivation(values, lengths, pairs, members_of, over_budget)
    for pair, name in joined.items():
        if name not in members_of:  # a circuit whose every graph feature was folded: one module for the rest
            modules[name], members_of[name] = [], set()
        members_of[name].add(pair)

    # 3. names and their controls
    profiles = _gene_profiles(graph)
    gene_lists = {name: _module_genes(profiles, members) for name, members in modules.items()}
    expression = _expression(adata, circuit.cell_type, label_key, background)
    names = _names(gene_lists, gene_sets, background, expression, max_fdr=max_fdr, n_null=n_null, seed=seed) \
        if modules else pd.DataFrame(columns=["term", "best_set_fdr", "best_set_p", "control_p", "name"])

    # 4. effects: predicted by each cell's graph, measured by intervention; the share carried together
    traced_prompts = documents.prompt_ids()
    clean = _clean_activations(model.model, transcoders, attributions, pairs)
    predicted = {name: [] for name in modules}
    frozen = {name: [] for name in modules}
    free = {name: [] for name in modules}
    instances = {name: [] for name in modules}
    shares = []
    for i, cell in enumerate(per_cell):
        sets = {name: [t for t in cell if (t[0], t[1]) in pairs_] for name, pairs_ in members_of.items()}
        activation = {}
        if i < len(attributions) and attributions[i] is not None:
            attribution = attributions[i]
            activation = {(int(a), int(c), int(b)): float(v)
                          for (a, b, c), v in zip(attribution.features.tolist(), attribution.activations.tolist())}
            for name, triples in sets.items():
                predicted[name].append(cc.predicted_drop(attribution, triples))
        for name, triples in sets.items():
            instances[name].append([(a, b, c, activation.get((a, b, c), clean(i, a, b, c))) for a, b, c in triples])
        ids = [int(t) for t in traced_prompts[i]]
        # one clean pass (attention patterns recorded) for frozen and free patching and the share
        replacement = cc.ReplacementModel(model.model, transcoders, ids, answer_ids=answer_ids, freeze_attention=True)
        for target, freeze in ((frozen, True), (free, False)):
            for name, drop in cc.measured_drops(model.model, transcoders, ids, answer_ids, index, sets,
                                                freeze_attention=freeze, replacement=replacement).items():
                target[name].append(drop)
        kept = [t for triples in sets.values() for t in triples] + [t for t in cell if (t[0], t[1]) in folded_pairs]
        shares.append(cc.FeatureShare(model.model, transcoders, ids, answer_ids, index,
                                      replacement=replacement)(kept))

    def mean(values_):
        return float(np.mean(values_)) if len(values_) else float("nan")

    def listed(name):  # the graph's nodes, then the features over the node budget that joined
        drawn = [graph.nodes[n]["label"] for n in modules[name]]
        return drawn + [f"L{layer}/F{feature}" for layer, feature in sorted(members_of[name])
                        if f"L{layer}/F{feature}" not in drawn]

    table = pd.DataFrame([{
        "supernode": name, "name": names.loc[name, "name"], "n_features": len(members_of[name]),
        "n_over_budget": sum(1 for pair, joined_to in joined.items() if joined_to == name),
        "genes": gene_lists[name], "predicted_effect": mean(predicted[name]), "measured_effect": mean(frozen[name]),
        "measured_effect_unfrozen": mean(free[name]), "control_p": float(names.loc[name, "control_p"]),
        "best_set_p": float(names.loc[name, "best_set_p"]), "best_set_fdr": float(names.loc[name, "best_set_fdr"]),
        "term": names.loc[name, "term"],
        "layers": " ".join(f"L{layer}:{count}" for layer, count in
                           sorted(pd.Series([layer for layer, _ in members_of[name]]).value_counts().items())),
        "features": listed(name)} for name in modules],
        columns=COLUMNS)
    table = table.sort_values("measured_effect", ascending=False, ignore_index=True)
    # as circuit_supernodes' attrs: what circuit_view and supernode_ids (circuit-tracer's qParams) read
    table.attrs["supernodes"] = {row.name: [f"feature:{label[1:].replace('/F', ':')}" for label in row.features]
                                 for row in table.itertuples()}
    table.attrs.update(grouping=grouping, n_null=n_null, control="expression-matched random gene lists",
                       effect="drop in the label's log-odds over all candidates when the supernode's features are "
                              "switched off in the traced cells (mean over cells)")
    shares_ = np.asarray(shares, dtype=float)
    share = float(np.nanmedian(shares_)) if np.isfinite(shares_).any() else float("nan")
    return Supernodes(table, share, [float(s) for s in shares], graph, folded, instances)
