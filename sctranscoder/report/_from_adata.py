"""Fill a report from an AnnData on which :func:`sctranscoder.tl.feature_activity` ran."""

from __future__ import annotations

import pandas as pd

from ._content import CellTypeSection, ReportContent

ENRICHMENT_COLUMNS = ["feature", "Gene_set", "Term", "Overlap", "P-value", "Adjusted P-value", "Odds Ratio",
                      "Genes"]


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
    n_terms: int = 15,
    figures: bool = True,
    circuit_figures: dict | None = None,
    input_genes: dict | None = None,
    validations: dict | None = None,
) -> list[CellTypeSection]:
    """One section per label (largest first): its most specific features (by AUROC of the per-cell activity),
    their genes, the cells they fire in, and their enriched gene sets.

    ``enrichment`` is :func:`sctranscoder.tl.enrich_features`' table (``List`` = feature);
    ``circuit_figures`` / ``input_genes`` map labels to a circuit figure and its ranked input genes,
    ``validations`` to the circuit's knockout check (:func:`sctranscoder.tl.validate_circuit`).
    """
    from .. import tl

    spec = tl.feature_specificity(adata, label_key, key=key, features=tl.alive_features(adata, key=key))
    genes = tl.feature_genes(adata, key=key, n_top=n_genes, min_occurrences=min_occurrences)
    counts = adata.obs[label_key].astype(str).value_counts()
    sections = []
    for label, n_cells in counts.items():
        rows = spec[(spec.label == label) & (spec.fraction_active > 0)].nlargest(n_features, "auroc")
        table = rows.set_index("feature")[["auroc", "cohens_d", "mean_difference", "fraction_active"]].copy()
        table["fraction_active_elsewhere"] = [
            float((adata.obsm[key][adata.obs[label_key].astype(str).to_numpy() != label, f] > 0).mean())
            for f in table.index]
        table["genes"] = [genes.genes.get(f, []) for f in table.index]
        section = CellTypeSection(name=str(label), n_cells=int(n_cells), features=table)
        section.text = (f"The {len(table)} features whose activity best separates {label} cells from the others "
                        "(AUROC of the per-cell activity), with the genes whose tokens activate them most.")
        if enrichment is not None and len(table):
            hits = enrichment[enrichment.List.astype(str).isin([str(f) for f in table.index])
                              & (enrichment["Adjusted P-value"] <= max_fdr)]
            hits = hits.sort_values("P-value").head(n_terms).rename(columns={"List": "feature"})
            section.enrichment = hits[[c for c in ENRICHMENT_COLUMNS if c in hits.columns]]
        if figures and len(table):
            import matplotlib.pyplot as plt

            from .. import pl

            axes = pl.feature_genes(genes, list(table.index[:3]), n_top=n_genes, ncols=3, show=False)
            section.figures[f"Top genes of the three features most specific to {label}"] = axes[0].figure
            plt.close(axes[0].figure)
        if circuit_figures and label in circuit_figures:
            section.circuit_figure = circuit_figures[label]
        if input_genes and label in input_genes:
            section.input_genes = input_genes[label]
        if validations and label in validations:
            section.validation = validations[label]
        sections.append(section)
    return sections


def from_adata(
    adata,
    label_key: str,
    *,
    key: str = "features",
    quality: pd.DataFrame | None = None,
    enrichment: pd.DataFrame | None = None,
    gene_sets=None,
    model: str = "",
    title: str = "Transcoder features of a cell2sentence model",
    parameters: dict | None = None,
    **section_options,
) -> ReportContent:
    """A report on the feature activity in ``adata.uns[key]``: quality table, one section per label, methods.

    ``enrichment`` is :func:`sctranscoder.tl.enrich_features`' table; ``gene_sets`` the
    libraries it used (bundled names, for the citations). ``section_options`` go to
    :func:`cell_type_sections` (``n_features``, ``circuit_figures``, ``input_genes``...).
    """
    from .. import pl, tl

    info = adata.uns[key]
    sections = cell_type_sections(adata, label_key, key=key, enrichment=enrichment, **section_options)
    options = {"n_features": 5, "n_genes": 10, "min_occurrences": 3, "max_fdr": 0.05,
               **{k: v for k, v in section_options.items()
                  if k not in ("circuit_figures", "input_genes", "figures", "validations")}}
    alive = tl.alive_features(adata, key=key)
    background = tl.feature_background(adata, key=key, min_occurrences=options["min_occurrences"])
    settings = {"layer": info["layer"], "transcoder activation": info.get("activation"),
                "features (transcoder width)": info["d_hidden"], "alive features": len(alive),
                "cells": adata.n_obs, "labels": label_key, "genes per prompt": info["n_genes"],
                "per-cell pooling": info["pool"], "tokens pooled per cell": info["tokens"],
                "enrichment background (genes)": len(background), **options, **_enrichment_settings(enrichment),
                **(parameters or {})}
    content = ReportContent(title=title, model=model, quality=quality, cell_types=sections, parameters=settings,
                            gene_set_libraries=_bundled_names(gene_sets))
    from .. import genesets

    used = enrichment.attrs.get("enrich", {}).get("libraries", []) if enrichment is not None else []
    bundled = [n for n in used if n in set(genesets.libraries().index)]
    coverage = genesets.coverage_summary(gene_sets if gene_sets is not None else bundled or "all", background)
    content.tables["How much of each gene-set library the model can see (genes in its cell sentences)"] = \
        coverage.reset_index()
    if enrichment is not None and len(enrichment):
        content.summary = (f"{len(alive):,} of {info['d_hidden']:,} features fire on these {adata.n_obs:,} cells; "
                           f"{tl.enriched_fraction(enrichment, len(alive), options['max_fdr']):.0%} of them have at "
                           f"least one gene set enriched at FDR <= {options['max_fdr']}.")
        top = [f for s in sections for f in (s.features.index[:2] if s.features is not None else [])]
        shown = enrichment[enrichment.List.astype(str).isin([str(f) for f in top])]
        if len(shown):
            import matplotlib.pyplot as plt

            present = set(shown.List.astype(str))
            ax = pl.enrichment(shown, lists=[str(f) for f in dict.fromkeys(top) if str(f) in present], n_terms=2,
                               show=False)
            content.figures["Best gene sets of the two most specific features of each cell type (columns)"] = ax.figure
            plt.close(ax.figure)
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
    ]
    return content


def _enrichment_settings(enrichment) -> dict:
    made = enrichment.attrs.get("enrich", {}) if enrichment is not None else {}
    return {f"enrichment {k}": made[k] for k in ("fdr_over", "min_set_size", "min_overlap") if k in made}


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
