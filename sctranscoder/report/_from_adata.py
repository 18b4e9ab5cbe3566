"""Fill a report from an AnnData on which :func:`sctranscoder.tl.feature_activity` ran."""

from __future__ import annotations

import pandas as pd

from ..tl._cards import SMALL_GROUP  # one threshold for cards and sections
from ._content import CellTypeSection, ReportContent
from ._measured import knockout_cells, measured_genes, no_pass_sentence
from ._steering_matrix import add_steering_matrix, every_pair_matrix

ENRICHMENT_COLUMNS = ["feature", "Gene_set", "Term", "Overlap", "P-value", "Adjusted P-value", "Matched P-value",
                      "Odds Ratio", "Genes"]
MAX_CARDS = 12  # cards per circuit, by influence


# the report's settings under the names a reader knows them by
PLAIN_OPTIONS = {"n_features": "features shown per cell type", "n_genes": "top genes per feature",
                 "min_occurrences": "least occurrences of a gene", "max_fdr": "FDR cut", "n_terms": "gene sets shown",
                 "small_group": "fewest cells for a headline", "figures": "feature figures"}


def _circuit_features(circuit) -> list[tuple[int, int, float]]:
    """(layer, feature, influence) of every feature node of a circuit graph (or a CellTypeCircuit), strongest first."""
    graph = circuit if hasattr(circuit, "nodes") else circuit.graph  # a networkx graph, or a CellTypeCircuit
    found = {}
    for _, data in graph.nodes(data=True):
        if data.get("kind") == "feature":
            pair = (int(data["layer"]), int(data["feature"]))
            found[pair] = max(found.get(pair, 0.0), abs(float(data.get("influence", data.get("attribution", 0.0)))))
    return sorted(((layer, f, v) for (layer, f), v in found.items()), key=lambda t: -t[2])


def _family_list(rows, families) -> str:
    """The name families that the shared genes of enrichment rows mostly belong to (HLA*, CD*)."""
    from .. import genesets

    found = []
    for genes in rows.Genes.astype(str):
        name, count = genesets.largest_family(genes.split(";"), families)
        if count >= 2:
            found.append(name)
    return ", ".join(f"{n}*" for n in list(dict.fromkeys(found))[:4])


def _marker_reason(label, marker_sets, background) -> str:
    """Why a cell type's own markers could not show: how many of its marker set the model can see."""
    if not marker_sets or label not in marker_sets:
        return ""
    from .. import genesets

    term = marker_sets[label]
    markers = genesets.load("immune_markers").get(term, [])
    seen = [g for g in markers if g in set(background)]
    if len(seen) >= 3:
        return ""
    if not seen:
        return (f"none of the {len(markers)} genes of its marker set '{term}' is in the model's gene list, so it "
                "cannot be tested (3 are needed)")
    return (f"only {len(seen)} of the {len(markers)} genes of its marker set '{term}' "
            f"{'is' if len(seen) == 1 else 'are'} in the model's gene list ({', '.join(seen)}), so it cannot be "
            "tested (3 are needed)")


def signable_headlines(heads) -> pd.DataFrame:
    """Headline entries a biologist would sign: not one name family, not two genes, not a disease or pathogen set."""
    if heads is None or not len(heads):
        return pd.DataFrame()
    few = heads["Few genes"].astype(bool) if "Few genes" in heads else False
    return heads[(heads["One family"] == "") & ~few & ~heads["Disease term"].astype(bool)]


def flag_reason(entry) -> str:
    if entry["One family"]:
        return f"the shared genes are one name family ({entry['One family']}*), which spelling alone can explain"
    if entry.get("Few genes", False):
        shared = str(entry["Overlap"]).split("/")[0]
        return (f"only {shared} of its genes are shared ({entry.Genes}): too few to name a cell type or pathway "
                "(3 are needed)")
    return "it is a disease or pathogen set, and those are not headlined"


def _described(entry, genes: bool = False) -> str:
    """A headline set in words: its name, library, overlap and FDR (and genes)."""
    listed = f"; genes {entry.Genes}" if genes else ""
    return f"{entry.Headline} ({entry.Gene_set}, {entry.Overlap}, FDR {entry['Adjusted P-value']:.2g}{listed})"


def _circuit_control(entry) -> str:
    """The circuit headline's controls in words: expression-matched random lists and the type's DE markers."""
    if "Expression-matched P-value" not in entry:
        return " No expression-matched control was run for this list."
    p = entry["Expression-matched P-value"]
    chance = (f"random gene lists matched in expression in these cells reach a set as strong with p = {p:.2g}"
              if p <= 0.05 else
              f"but random genes expressed as highly in these cells reach a set as strong as often (p = {p:.2g}), "
              "so this says little beyond which genes the cells express")
    markers = (f"the type's top DE genes share {entry['DE marker overlap']} with it and reach the same set at FDR "
               f"{entry['DE markers FDR']:.2g}" if entry["DE markers FDR"] < 1 else
               f"the type's top DE genes share {entry['DE marker overlap']} with it and miss this set")
    return f" Controls: {chance}; {markers}."


def _result(label, section, headlines, all_rows, circuit_heads, circuit_rows, marker_reason, has_circuit,
            max_fdr, families, control: str = "") -> str:
    """The section's finding, or that nothing passed and why."""
    if section.small_group:
        return (f"{label} has only {section.n_cells} cells here: too few for its features' AUROCs or gene-set "
                "overlaps to carry weight, so nothing is headlined.")
    said = []
    validation = getattr(section, "validation", None)
    passing = measured_genes(validation)
    if passing is not None and len(passing):
        subject = (f"The {len(passing)} gene{'s' if len(passing) != 1 else ''} whose knockout lowers P({label}) beyond a random gene at the same rank "
                   f"(in {knockout_cells(validation)} cells)")
    else:
        subject = "Its circuit's input genes"
        if passing is not None:  # knockouts were set against their null and none passed: say so first
            said.append(no_pass_sentence(validation, f"P({label})"))
    circuit_good, feature_good = signable_headlines(circuit_heads), signable_headlines(headlines)
    if len(circuit_good):
        best = circuit_good.iloc[0]
        said.append(f"{subject} are enriched for {_described(best, genes=True)}.{_circuit_control(best)}")
        strongest = circuit_heads.sort_values("Adjusted P-value").iloc[0]
        if strongest["Adjusted P-value"] < best["Adjusted P-value"] and strongest.Headline != best.Headline:
            # a flagged set can still be the strongest signal; say so rather than let a weak set speak alone
            said.append(f"Stronger, but flagged: {_described(strongest)}, where {flag_reason(strongest)}.")
    elif circuit_heads is not None and len(circuit_heads):
        best = circuit_heads.iloc[0]
        said.append(f"{subject} reach {_described(best)}, but {flag_reason(best)}.")
    elif has_circuit:
        said.append(f"Circuit enrichment: no set reached FDR <= {max_fdr} among "
                    f"{subject[0].lower() + subject[1:]}.")
    if len(feature_good):
        best = feature_good.iloc[0]
        said.append(f"Feature {best.List}, specific to {label}, reads {best.Headline} ({best.Gene_set}, "
                    f"{best.Overlap}; genes {best.Genes}), beyond what gene-name spelling explains"
                    + (f" ({control})." if control else
                       " (no randomized control was run, so chance is not ruled out)."))
    elif headlines is not None and len(headlines):
        best = headlines.iloc[0]
        said.append(f"Feature {best.List} reaches {best.Headline} ({best.Gene_set}, {best.Overlap}), but "
                    f"{flag_reason(best)}.")
    else:
        n_fdr = all_rows.List.nunique() if all_rows is not None else 0
        if n_fdr:
            shared = _family_list(all_rows, families)
            reason = (f"{n_fdr} of its most specific features reached a set at FDR <= {max_fdr}, but none beyond "
                      "spelling: random gene lists holding name families of the same sizes reach such sets as "
                      "easily" + (f" (the families shared here: {shared})" if shared else ""))
        else:
            reason = f"none of its most specific features' top genes reached a gene set at FDR <= {max_fdr}"
        said.append("Feature enrichment: nothing passed; " + reason + ".")
    if not len(circuit_good) and not len(feature_good) and marker_reason:
        said.append(f"Its own markers: {marker_reason}.")
    return " ".join(said)


EVIDENCE = ("circuit_figures", "input_genes", "validations", "circuits", "circuit_enrichment", "c2s_model",
            "transcoders", "feature_keys", "marker_sets", "controls")
"""What :func:`cell_type_sections` takes besides the feature tables, by name (each optional)."""


def cell_type_sections(
    adata,
    label_key: str,
    *,
    key: str = "features",
    enrichment: pd.DataFrame | None = None,
    n_features: int = 5,
    n_genes: int = 10,
    min_occurrences: int = 3,
    max_fdr: float = 0.05,
    n_terms: int = 5,
    figures: bool = True,
    families: pd.Series | None = None,
    small_group: int = SMALL_GROUP,
    **evidence,
) -> list[CellTypeSection]:
    """One section per label (largest first): its result in a sentence, its most specific features (by AUROC of
    the per-cell activity) with automatic labels, their headline gene sets, and, when given, its circuit (figure,
    input genes, circuit enrichment, and a card for every feature in it).

    Parameters
    ----------
    evidence
        What else the sections show, each optional (:data:`EVIDENCE`): ``circuit_figures``, ``input_genes``,
        ``validations``, ``circuits``, ``circuit_enrichment``, ``c2s_model``, ``transcoders``, ``feature_keys``,
        ``marker_sets``, ``controls``, as below.
    enrichment
        :func:`sctranscoder.tl.enrich_beyond_spelling`' table (``List`` = feature; with ``Matched P-value``, sets
        must pass both tests) or :func:`sctranscoder.tl.enrich_features`' (FDR only).
    circuit_figures, input_genes, circuits
        By label: a circuit figure, its ranked input genes, and the :class:`sctranscoder.tl.CellTypeCircuit`
        (or its graph) whose feature nodes get cards.
    validations
        By label: the circuit's knockout check (:func:`sctranscoder.tl.validate_circuit`).
    circuit_enrichment
        :func:`sctranscoder.tl.enrich_circuit`' table (``List`` = label).
    c2s_model, transcoders
        The model and ``{layer: Transcoder}``: name families from its tokenizer, de-embedding genes on cards.
    feature_keys
        ``{layer: obsm key}`` of feature activity per layer, for the cards of circuit features (default: this
        key's layer only).
    marker_sets
        ``{label: immune_markers term}``: when nothing passes, the section says how much of the type's own
        marker set the model can see.
    controls
        :func:`sctranscoder.tl.feature_controls`' table: every feature headline and card then carries its
        layer's enriched share beside random directions'.
    small_group
        Labels with fewer cells are marked and never headlined.
    """
    from .. import tl

    unknown = sorted(set(evidence) - set(EVIDENCE))
    if unknown:
        raise TypeError(f"cell_type_sections() got unknown options {unknown}; it takes {list(EVIDENCE)}.")
    circuit_figures, input_genes, validations, circuits, circuit_enrichment, c2s_model, transcoders, \
        feature_keys, marker_sets, controls = (evidence.get(name) for name in EVIDENCE)
    info = adata.uns[key]
    spec = tl.feature_specificity(adata, label_key, key=key, features=tl.alive_features(adata, key=key))
    background = tl.feature_background(adata, key=key, min_occurrences=min_occurrences)
    if families is None:
        families = tl.gene_families(adata, c2s_model, key=key)
    counts = adata.obs[label_key].astype(str).value_counts()
    top = {label: spec[(spec.label == label) & (spec.fraction_active > 0)].nlargest(n_features, "auroc")
           for label in counts.index}
    chosen = sorted({int(f) for rows in top.values() for f in rows.feature})
    cards = tl.feature_cards(adata, chosen, label_key=label_key, key=key, model=c2s_model, transcoders=transcoders,
                             enrichment=enrichment, gene_sets=None, n_genes=n_genes, families=families,
                             min_occurrences=min_occurrences, controls=controls) if chosen else None
    control = tl.control_clause(controls, int(info["layer"])) if controls is not None else ""
    feature_keys = {int(info["layer"]): key, **(feature_keys or {})}
    labels = adata.obs[label_key].astype(str).to_numpy()
    sections = []
    for label, n_cells in counts.items():
        rows = top[label]
        section = CellTypeSection(name=str(label), n_cells=int(n_cells), small_group=int(n_cells) < small_group)
        table = rows.set_index("feature")[["auroc"]].copy()
        table.insert(0, "label", [cards.loc[f, "label"] for f in table.index])
        # mean per-cell activity, not the share of cells where it fires: pooled over a cell's tokens, nearly
        # every feature fires somewhere in every cell
        activity = adata.obsm[key]
        table[f"mean activity in {label}"] = [float(activity[labels == label, f].mean()) for f in table.index]
        table["mean activity elsewhere"] = [float(activity[labels != label, f].mean()) for f in table.index]
        table["spelling score"] = [cards.loc[f, "spelling_score"] for f in table.index]
        table["genes"] = [", ".join(cards.loc[f, "top_genes"]) for f in table.index]
        section.features = table.rename(columns={"auroc": "AUROC"})
        section.text = (f"Feature analysis (layer {info['layer']}): the {len(table)} features whose activity best "
                        f"separates {label} cells from the others (AUROC of the per-cell activity), each with its "
                        "automatic label, the genes whose tokens activate it most, and its spelling score (how much "
                        "of its gene list is one name family, or predicted by token identity alone).")
        all_rows = headlines = None
        if enrichment is not None and len(table):
            mine = enrichment[enrichment.List.astype(str).isin([str(f) for f in table.index])]
            all_rows = mine[mine["Adjusted P-value"] <= max_fdr]
            section.enrichment = all_rows.sort_values("P-value").head(15).rename(columns={"List": "feature"})[
                [c for c in ENRICHMENT_COLUMNS if c in all_rows.columns or c == "feature"]]
            # flagged entries (one name family, disease sets) are shown last and never make the result sentence
            headlines = tl.headline_sets(mine, families=families, max_fdr=max_fdr, n=None).head(n_terms)
            section.headlines = headlines.iloc[0:0] if section.small_group else headlines
        circuit_heads = circuit_rows = None
        if circuit_enrichment is not None:
            circuit_rows = circuit_enrichment[(circuit_enrichment.List.astype(str) == str(label))
                                              & (circuit_enrichment["Adjusted P-value"] <= max_fdr)]
            heads = tl.headline_sets(circuit_rows, families=families, max_fdr=max_fdr, n=None)
            circuit_heads = heads.iloc[0:0] if section.small_group else heads.head(n_terms)
            if circuits is not None and label in circuits or input_genes and label in input_genes:
                section.circuit_enrichment = circuit_heads
        if circuits is not None and label in circuits:
            section.supernodes = getattr(circuits[label], "supernodes", None)
            section.supernode_share = getattr(circuits[label], "supernode_share", None)
            section.steering = getattr(circuits[label], "steering", None)
            section.cards = _circuit_cards(adata, circuits[label], label_key, feature_keys, c2s_model, transcoders,
                                           families, enrichment, key, n_genes, min_occurrences)
        if validations and label in validations:
            section.validation = validations[label]
        has_circuit = bool(circuits and label in circuits) or bool(input_genes and label in input_genes)
        section.result = _result(label, section, section.headlines, all_rows, circuit_heads, circuit_rows,
                                 _marker_reason(label, marker_sets, background), has_circuit, max_fdr, families,
                                 control)
        if figures and len(table):
            import matplotlib.pyplot as plt

            from .. import pl

            genes = tl.feature_genes(adata, list(table.index[:3]), key=key, n_top=n_genes,
                                     min_occurrences=min_occurrences)
            axes = pl.feature_genes(genes, list(table.index[:3]), n_top=n_genes, ncols=3, show=False)
            section.figures[f"Top genes of the three features most specific to {label} (bar length: the feature's "
                            "mean activity on the gene's tokens, over every occurrence of the gene)"] = axes[0].figure
            plt.close(axes[0].figure)
        if circuit_figures and label in circuit_figures:
            section.circuit_figure = circuit_figures[label]
        if input_genes and label in input_genes:
            section.input_genes = input_genes[label]
        sections.append(section)
    return sections


def _circuit_cards(adata, circuit, label_key, feature_keys, c2s_model, transcoders, families, enrichment, key,
                   n_genes, min_occurrences):
    """Cards of a circuit's features (the strongest MAX_CARDS), at every layer whose activity was computed."""
    from .. import tl

    nodes = _circuit_features(circuit)[:MAX_CARDS]
    parts = []
    for layer in sorted({layer for layer, _, _ in nodes}):
        if layer not in feature_keys:
            continue
        wanted = [f for lay, f, _ in nodes if lay == layer]
        layer_key = feature_keys[layer]
        layer_families = families if layer_key == key else None
        cards = tl.feature_cards(adata, wanted, label_key=label_key, key=layer_key, model=c2s_model,
                                 transcoders=transcoders, enrichment=enrichment if layer_key == key else None,
                                 gene_sets="all", n_genes=n_genes, families=layer_families,
                                 min_occurrences=min_occurrences, n_null=100)
        cards.insert(0, "layer", layer)
        parts.append(cards)
    if not parts:
        return None
    order = {(lay, f): i for i, (lay, f, _) in enumerate(nodes)}
    cards = pd.concat(parts)
    return cards.iloc[sorted(range(len(cards)), key=lambda i: order[(int(cards.layer.iloc[i]), int(cards.index[i]))])]


def from_adata(
    adata,
    label_key: str,
    *,
    key: str = "features",
    quality: pd.DataFrame | None = None,
    enrichment: pd.DataFrame | None = None,
    controls: pd.DataFrame | None = None,
    gene_sets=None,
    model: str = "",
    title: str = "Transcoder features of a cell2sentence model",
    parameters: dict | None = None,
    **section_options,
) -> ReportContent:
    """A report on the feature activity in ``adata.uns[key]``: quality table, one section per label, methods.

    ``enrichment`` is :func:`sctranscoder.tl.enrich_beyond_spelling`' table (or :func:`enrich_features`');
    ``gene_sets`` the libraries it used (bundled names, for the citations). ``controls`` is
    :func:`sctranscoder.tl.feature_controls`' table: the summary then says how the trained features' enriched
    share compares with random directions (and an untrained model), and a table shows every layer's. ``section_options`` go to
    :func:`cell_type_sections` (``n_features``, ``circuit_figures``, ``input_genes``, ``circuits``,
    ``circuit_enrichment``, ``c2s_model``, ``transcoders``, ``marker_sets``...).
    """
    from .. import pl, tl

    info = adata.uns[key]
    if "families" not in section_options:
        section_options["families"] = tl.gene_families(adata, section_options.get("c2s_model"), key=key)
    sections = cell_type_sections(adata, label_key, key=key, enrichment=enrichment, controls=controls,
                                  **section_options)
    hidden = ("circuit_figures", "input_genes", "figures", "validations", "circuits", "circuit_enrichment", "c2s_model",
              "transcoders", "feature_keys", "marker_sets", "families", "controls")
    options = {"n_features": 5, "n_genes": 10, "min_occurrences": 3, "max_fdr": 0.05,
               **{k: v for k, v in section_options.items() if k not in hidden}}
    shown_options = {PLAIN_OPTIONS.get(k, k): v for k, v in options.items()}
    alive = tl.alive_features(adata, key=key)
    background = tl.feature_background(adata, key=key, min_occurrences=options["min_occurrences"])
    settings = {"layer": info["layer"], "transcoder activation": info.get("activation"),
                "features (transcoder width)": info["d_hidden"], "alive features": len(alive),
                "cells": adata.n_obs, "labels": label_key, "genes per prompt": info["n_genes"],
                "per-cell pooling": info["pool"], "tokens pooled per cell": info["tokens"],
                "enrichment background (genes)": len(background), **shown_options, **_enrichment_settings(enrichment),
                **(parameters or {})}
    content = ReportContent(title=title, model=model, quality=quality, cell_types=sections, parameters=settings,
                            gene_set_libraries=_bundled_names(gene_sets))
    from .. import genesets

    used = enrichment.attrs.get("enrich", {}).get("libraries", []) if enrichment is not None else []
    bundled = [n for n in used if n in set(genesets.libraries().index)]
    content.tables["How much of each gene-set library the model can see"] = _coverage_table(
        gene_sets if gene_sets is not None else bundled or "all", background)
    content.notes["Gene-set coverage."] = (
        f"The enrichment background is the {len(background):,} genes that occur in these cells' sentences often "
        "enough for a feature to be read on them (the model's own gene vocabulary is larger), so a set can be tested "
        "only through its genes among them (at least 3). GO Biological Process has many small, specific sets, and most have fewer than 3 of their "
        "genes here: that, not a fault, is why so few of its sets are testable.")
    layer = info["layer"]
    summary = (f"Layer {layer}: {len(alive):,} of its {info['d_hidden']:,} transcoder features fire on these "
               f"{adata.n_obs:,} cells.")
    if enrichment is not None and len(enrichment):
        max_fdr = options["max_fdr"]
        tested, of_them = _testable(controls, layer, len(alive))
        summary += (f" {of_them}{tl.enriched_fraction(enrichment, tested, max_fdr):.0%} have a gene set at FDR "
                    f"<= {max_fdr}")
        if "Beyond spelling" in enrichment:
            summary += (f"; {tl.beyond_spelling_fraction(enrichment, tested):.0%} have one that also beats "
                        "random gene lists with the same gene-name families (enriched beyond spelling).")
        else:
            summary += " (hypergeometric test only: no spelling-matched null was run)."
        summary += " " + _controls_summary(controls, layer)
        _overview_dotplot(content, sections, enrichment, pl, max_fdr)
    if controls is not None and len(controls):
        content.tables[CONTROLS_CAPTION] = _controls_table(controls)
    add_steering_matrix(content, every_pair_matrix(section_options.get("circuits") or {}))
    content.summary = summary
    content.methods = [
        f"The C2S model read each cell's prompt (its top {info['n_genes']} genes by expression, as cell2sentence "
        f"writes them); the MLP input of layer {info['layer']} at every token was encoded by a transcoder "
        f"({info.get('activation')}, {info['d_hidden']} features). A feature's activity in a cell is the "
        f"{info['pool']} over the cell's {'gene ' if info['tokens'] == 'genes' else ''}tokens. Its activity for a gene "
        "is the mean, over every occurrence of the gene in a sentence, of the maximum over the gene's tokens, so "
        "frequent genes are not favoured; genes seen fewer than "
        f"{options['min_occurrences']} times are left out.",
        "Cell-type specificity: for every feature and label, the AUROC of the per-cell activity for telling the "
        "label's cells from all others (Mann-Whitney, ties counted half), Cohen's d (pooled standard deviation), the "
        "difference of means, and the fraction of cells where the feature fires.",
        _enrichment_method(enrichment, options, len(background)),
        "Spelling: genes form name families when they share a name stem (HLA-D*, S100A*, RPL*) or the leading "
        "subword token the model's tokenizer spells them with. A feature's spelling score is the larger of the "
        "share of its top genes that share a family with another of them, and the Spearman correlation between its "
        "activity on each gene and what the gene's tokens alone give it through the residual stream "
        "(de-embedding). The matched null draws random gene lists with the feature list's family structure (same "
        "size, same number of genes sharing a family); a set's matched p-value is the share of those lists whose "
        "best p-value in the set's library is as small, so picking the best set is paid for. A set is enriched "
        "beyond spelling when its FDR and its matched p-value both pass.",
        "Headlines: sets reached by nearly the same genes (Jaccard >= 0.5, or one inside the other) are one entry "
        "named after its preferred member (cell-type markers, then Hallmark, Reactome, GO, WikiPathways; "
        "disease, pathogen and drug sets last), the others listed under Also; entries are ranked by specificity "
        "(share of the set's visible genes hit) times effect (log2 odds ratio), and entries whose shared genes are "
        "one name family, that share fewer than 3 genes with the list, or that name a disease, are not headlined. "
        f"Cell types with fewer than {SMALL_GROUP} cells are marked "
        "and not headlined.",
    ]
    return content


def _testable(controls, layer: int, n_alive: int) -> tuple[int, str]:
    """The overview's denominator and its words: the testable features (as the controls count them) where the
    controls read the same firing features, so the overview and the controls' headline share one denominator."""
    from ..tl._controls import MIN_LISTABLE_GENES

    if controls is not None and "n_listable" in controls:
        row = controls[(controls.layer == layer) & (controls.side == "trained")]
        if len(row) and int(row.n_features.iloc[0]) == n_alive and int(row.n_listable.iloc[0]) > 0:
            tested = int(row.n_listable.iloc[0])
            return tested, (f"{tested:,} of them list at least {MIN_LISTABLE_GENES} genes and can be tested; of "
                            "those, ")
    return n_alive, "Of them, "


def _controls_summary(controls, layer: int) -> str:
    """The control sentence for the report's layer, or that no control was run and what that leaves open."""
    from .. import tl

    if controls is None or not len(controls) or layer not in set(controls.layer):
        return ("No randomized control was run for these features, so this share cannot be told apart from what "
                "random directions in the same activations would give (sctranscoder.tl.feature_controls runs it).")
    return tl.control_headline(controls, layer)


CONTROLS_CAPTION = "Trained features beside randomized controls"
CONTROL_SIDES = {"trained": "trained features", "random_directions": "random directions (firing as often)",
                 "untrained_model": "transcoders on a re-initialised model"}


def _controls_table(controls) -> pd.DataFrame:
    """feature_controls' table with words for its columns and sides."""
    from ..tl._controls import MIN_LISTABLE_GENES

    table = controls.assign(side=controls.side.map(CONTROL_SIDES).fillna(controls.side))
    table["fraction_enriched"] = table.fraction_enriched.map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    table["p_value"] = table.p_value.map(lambda v: "" if pd.isna(v) else f"{v:.2g}")
    skipped = table.note.astype(str).str.startswith("skipped")  # a control not run has no counts, not zero
    counts = ["n_features", "n_listable", "n_enriched"]
    table[counts] = table[counts].astype(object)
    table.loc[skipped, counts] = "not run"
    # the reader's words for the API's note (which names the argument that skipped it)
    table.loc[skipped, "note"] = "not run in this report (sct.tl.feature_controls(untrained=True) runs it)"
    return table.rename(columns={"layer": "Layer", "side": "Features", "n_features": "Firing",
                                 "n_listable": f"Testable (>= {MIN_LISTABLE_GENES} genes listed)",
                                 "n_enriched": "Enriched beyond spelling",
                                 "fraction_enriched": "Share of testable enriched",
                                 "p_value": "p (trained enriched more often; Fisher)", "note": "Note"})


def _coverage_table(gene_sets, background) -> pd.DataFrame:
    """Per library, in plain words: sets, sets testable (>= 3 genes the model sees), median genes seen per
    testable set, and genes of the library the model sees."""
    from .. import genesets

    per_set = genesets.coverage(gene_sets, background)
    visible = set(background)
    rows = []
    for library, sets in per_set.groupby("Gene_set", sort=False):
        testable = sets[sets.n_visible >= 3]
        members = {g for genes in genesets.resolve(library).get(library, {}).values() for g in genes}
        rows.append({"library": library, "sets": len(sets), "sets testable (>= 3 genes seen)": len(testable),
                     "median genes seen per testable set": float(testable.n_visible.median()) if len(testable)
                     else 0.0, "library genes the model sees": f"{len(members & visible):,} of {len(members):,}"})
    return pd.DataFrame(rows)


def _overview_dotplot(content, sections, enrichment, pl, max_fdr) -> None:
    """The best sets of the two most specific features of each (not small) cell type, columns named by both."""
    import matplotlib.pyplot as plt

    from ..tl import short_term

    passing = enrichment["Adjusted P-value"] <= max_fdr
    if "Beyond spelling" in enrichment:
        passing = enrichment["Beyond spelling"].astype(bool)
    owner = {}
    for section in sections:
        if section.small_group or section.features is None:
            continue
        for f in section.features.index[:2]:
            owner.setdefault(str(f), section.name)
    shown = enrichment[passing & enrichment.List.astype(str).isin(owner)]
    if not len(shown):
        return
    present = set(shown.List.astype(str))
    lists = [f for f in owner if f in present]
    ax = pl.enrichment(shown, lists=lists, n_terms=2, show=False,
                       list_labels={f: f"{f} ({owner[f]})" for f in lists}, term_names=short_term,
                       xlabel="feature (the cell type it is "
                       "most specific to)", title="Best gene sets of each cell type's most specific features")
    kind = "beyond spelling (both tests)" if "Beyond spelling" in enrichment else f"at FDR <= {max_fdr}"
    content.figures[f"Gene sets {kind} of the two most specific features of each cell type: columns are features, "
                    "named with their cell type; dot size is the share of the set's visible genes among the "
                    "feature's top genes, colour the FDR."] = ax.figure
    plt.close(ax.figure)


def _enrichment_settings(enrichment) -> dict:
    made = enrichment.attrs.get("enrich", {}) if enrichment is not None else {}
    names = {"fdr_over": "FDR corrected over the sets", "min_set_size": "smallest testable set (genes)",
             "min_overlap": "least overlap (genes)"}
    return {f"enrichment: {plain}": made[k] for k, plain in names.items() if k in made}


def _enrichment_method(enrichment, options, n_background: int) -> str:
    made = enrichment.attrs.get("enrich", {}) if enrichment is not None else {}
    if made.get("fdr_over") == "tested":
        fdr = ("Benjamini-Hochberg FDR within each gene list and library over every tested set (sets with at "
               f"least {made.get('min_set_size')} genes in the background; untouched sets count with p = 1)")
    else:
        fdr = ("Benjamini-Hochberg FDR within each gene list and library over the sets sharing at least one gene "
               "with the list, as gseapy's enrich computes it (p-values identical to gseapy 1.3.1's)")
    return (f"Enrichment: each feature's top {options['n_genes']} genes against the gene-set libraries below; "
            "one-sided hypergeometric test P(X >= overlap), the background being the genes the model saw in these "
            f"cells' sentences ({made.get('background_genes', n_background):,} genes; sets and lists are cut to "
            f"it); {fdr}. Odds ratio with the Haldane-Anscombe correction; combined score -ln(p) x odds ratio.")


def _bundled_names(gene_sets):
    from .. import genesets

    if gene_sets is None or gene_sets == "all":
        return None
    names = [gene_sets] if isinstance(gene_sets, str) else list(gene_sets) if isinstance(gene_sets, (list, tuple)) else []
    bundled = set(genesets.libraries().index)
    return [n for n in names if isinstance(n, str) and n in bundled]


def add_controls_section(content, controls: pd.DataFrame) -> None:
    """The quickstart report's controls section, on a report re-read from a run's files: the last layer's
    headline in the summary and every layer's table."""
    content.summary = f"{content.summary} {_controls_summary(controls, int(controls.layer.max()))}".strip()
    content.tables[CONTROLS_CAPTION] = _controls_table(controls)
