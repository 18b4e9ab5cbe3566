"""Genes near the top of more than one cell type's circuit, each with what the knockouts say about it.

A gene in the top 10 of two types' circuits is either one the model uses for both calls (its knockout lowers
each call more than a random gene knocked out at the same sentence positions) or an artefact of where it sits: attribution
is largest near the start of a sentence whatever the gene, and a rank-matched knockout null is what tells
the two apart. Nothing here re-runs the model; it reads each section's attributed and measured lists.
"""

from __future__ import annotations

import html

import pandas as pd

from ._measured import has_null, measured_genes

TOP = 10


def _top_lists(section, top: int) -> dict[str, list[str]]:
    """The gene lists a reader sees for one cell type: its measured list and its attributed list, top ``top``."""
    lists = {}
    genes = section.input_genes
    if isinstance(genes, pd.DataFrame) and "gene" in genes:
        lists["attributed"] = [str(g) for g in genes.gene.head(top)]
    elif isinstance(genes, pd.Series):
        lists["attributed"] = [str(g) for g in genes.sort_values(ascending=False).index[:top]]
    elif genes is not None:
        lists["attributed"] = [str(g) for g in list(genes)[:top]]
    passing = measured_genes(section.validation)
    if passing is not None:
        lists["measured"] = [str(g) for g in passing.gene.head(top)]
    return lists


def _knockout(section, gene: str) -> dict | None:
    """The gene's knockout against its rank-matched null in this type (None where it was not tested)."""
    if not has_null(section.validation):
        return None
    table = section.validation["genes_by_knockout"]
    rows = table[(table.gene.astype(str) == gene) & (table.n_cells > 0)]
    return None if rows.empty else rows.iloc[0].to_dict()


def _evidence(name: str, where: list[str], knockout: dict | None, top: int) -> str:
    text = f"{name}: top {top} {' and '.join(where)}"
    if knockout is None:
        return text + ", knockout not tested"
    position = f", mean sentence position {knockout['mean_rank']:.0f}" if pd.notna(knockout.get("mean_rank")) else ""
    verdict = "passes" if bool(knockout.get("passes")) else "does not pass"
    return (text + f"; knockout {verdict} its rank-matched null (z {knockout.get('z', float('nan')):.1f}, "
            f"{int(knockout.get('n_cells', 0))} cells{position})")


def _reading(gene: str, knockouts: dict) -> str:
    """What the knockouts say about a gene shared by these types."""
    tested = {name: k for name, k in knockouts.items() if k is not None}
    if not tested:
        return ("no knockout was tested, so the circuits' attributions alone put it in both: not evidence that "
                "either type uses it")
    passed = [name for name, k in tested.items() if bool(k.get("passes"))]
    failed = [name for name in tested if name not in passed]
    untested = [name for name in knockouts if name not in tested]
    if passed and not failed and not untested:
        return (f"its knockout lowers each call beyond a random gene at the same sentence positions, so the model "
                f"uses {gene} for each of these calls (its position does not explain it; whether the types both "
                "express it is a question for differential expression)")
    parts = []
    if passed:
        parts.append(f"measured in {', '.join(passed)}")
    if failed:
        parts.append(f"in {', '.join(failed)}, its knockout is no larger than a random gene's at the same sentence "
                     "positions, so there the circuit credits its position, not the gene (a position artefact)")
    if untested:
        parts.append(f"not tested by knockout in {', '.join(untested)}")
    return "; ".join(parts)


def shared_circuit_genes(sections, *, top: int = TOP) -> pd.DataFrame:
    """Genes in the top ``top`` of two or more cell types' circuit gene lists (attributed or measured).

    Returns one row per gene: ``gene``, ``cell_types``, ``evidence`` (per type: which list, and its knockout
    against the rank-matched null) and ``reading`` (what that means: a gene the model uses for each call, or a position artefact).
    """
    where: dict[str, dict[str, list[str]]] = {}
    by_name = {}
    for section in sections:
        by_name[section.name] = section
        for kind, genes in _top_lists(section, top).items():
            for gene in genes:
                where.setdefault(gene, {}).setdefault(section.name, []).append(kind)
    rows = []
    for gene, types in where.items():
        if len(types) < 2:
            continue
        knockouts = {name: _knockout(by_name[name], gene) for name in types}
        rows.append({"gene": gene, "cell_types": ", ".join(types),
                     "evidence": "; ".join(_evidence(name, kinds, knockouts[name], top) for name, kinds in types.items()),
                     "reading": _reading(gene, knockouts)})
    return pd.DataFrame(rows, columns=["gene", "cell_types", "evidence", "reading"])


def shared_genes_html(sections, *, top: int = TOP) -> str:
    """The report's section on genes shared by the top of several types' circuits (empty where none are)."""
    table = shared_circuit_genes(sections, top=top)
    if table.empty:
        return ""
    items = "".join(f"<li><strong>{html.escape(r.gene)}</strong> ({html.escape(r.cell_types)}): "
                    f"{html.escape(r.reading)}.<br><span class=\"muted\">{html.escape(r.evidence)}.</span></li>"
                    for r in table.itertuples())
    return ('<section id="shared-genes"><h2>Genes at the top of more than one cell type\'s circuit</h2>'
            f"<p>{len(table)} genes rank in the top {top} of two or more cell types' circuit gene lists. Attribution is "
            "largest near the start of a sentence whatever the gene there, so each is checked against its knockout: "
            "removing it is compared with removing random genes at the same sentence positions in the same cells."
            f"</p><ul>{items}</ul></section>")
