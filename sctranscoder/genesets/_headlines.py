"""Headline gene sets a biologist would sign: redundant sets collapsed, name-family overlaps flagged, curated
cell-type and pathway libraries preferred over disease and virus pathways reached by the same genes, ranked by
specificity and effect rather than by FDR alone."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# which library names a set best when several are reached by the same genes (lower first); unknown ones last
LIBRARY_PREFERENCE = {"immune_markers": 0, "hallmark": 1, "reactome": 2, "go_bp": 3, "wikipathways": 4}
# disease, pathogen and drug terms: true statements about gene overlap, rarely what a cell type's genes are for
DISEASE = re.compile(
    r"VIRUS|VIRAL|INFECTION|DISEASE|CANCER|CARCINOMA|LEUKEMIA|LEUKAEMIA|LYMPHOMA|MYELOMA|TUMOR|TUMOUR|SARCOMA|"
    r"GLIOMA|MELANOMA|ASTHMA|DIABET|ARTHRITIS|LUPUS|COVID|SARS|CORONAVIRUS|HIV|HEPATITIS|INFLUENZA|EBOLA|HERPES|"
    r"TUBERCULOSIS|MALARIA|LEISHMANI|TOXOPLASM|STAPHYLOCOCC|SALMONELLA|BACTERI|PATHOGEN|SYNDROME|DEFICIENCY|"
    r"ALZHEIMER|PARKINSON|HUNTINGTON|SCLEROSIS|ATHEROSCLEROSIS|DRUG|TOXICITY", re.IGNORECASE)


def is_disease_term(term: str) -> bool:
    """Whether a term names a disease, pathogen or drug response (WP_EBOLA_VIRUS_INFECTION_IN_HOST: yes)."""
    return bool(DISEASE.search(str(term)))


def short_term(term: str) -> str:
    """A set's name without its library prefix and GO id, in plain case (REACTOME_MHC_CLASS_II_ANTIGEN_PRESENTATION
    -> MHC class II antigen presentation)."""
    text = re.sub(r"\s*\(GO:\d+\)$", "", str(term))
    text = re.sub(r"^(REACTOME|HALLMARK|WP|GOBP|GO|KEGG|BIOCARTA|PID)_", "", text)
    if text.isupper() or "_" in text:
        words = text.replace("_", " ").split()
        keep = {w for w in words if any(c.isdigit() for c in w) or len(w) <= 3 and w not in {"AND", "OF", "IN", "THE",
                                                                                              "BY", "TO", "FOR", "ON"}}
        text = " ".join(w if w in keep else w.lower() for w in words)
        text = text[:1].upper() + text[1:]
    return text


CONTROL_COLUMNS = ("Expression-matched P-value", "DE markers FDR", "DE marker overlap")
"""A circuit's controls (:func:`sctranscoder.tl.enrich_circuit` with ``label_key``), carried onto its headlines."""


def headline_sets(table: pd.DataFrame, *, families: pd.Series | None = None, max_fdr: float = 0.05,
                  max_matched_p: float = 0.05, min_jaccard: float = 0.5, min_genes: int = 3,
                  n: int | None = 5) -> pd.DataFrame:
    """One entry per group of sets reached by (nearly) the same genes, per list, best first.

    Rows pass when ``Adjusted P-value <= max_fdr`` and, when the table has it (from
    :func:`enrich_beyond_spelling`), ``Matched P-value <= max_matched_p``. Within a list, rows are visited in
    order of preference (curated cell-type and pathway libraries first, disease/virus/drug terms last, then
    P-value); a row whose shared genes overlap an entry's by Jaccard index >= ``min_jaccard`` (or are a subset
    either way) joins that entry and is named under ``Also``. Entries are ranked by ``Score`` = specificity x
    effect: the share of the set's visible genes hit (``x/m``) times log2 of the odds ratio; entries whose genes
    are all one name family (``One family``, with ``families``), that share fewer than ``min_genes`` genes with
    the list (``Few genes``: two genes do not make a pathway or a cell type, however small the set) or that name a
    disease come after the others.

    Returns
    -------
    Columns ``List``, ``Headline`` (short name), ``Term``, ``Gene_set``, ``Overlap``, ``Adjusted P-value``,
    [``Matched P-value``], ``Odds Ratio``, ``Score``, ``Also`` (the collapsed sets' short names), ``Genes``
    (comma-separated), ``One family``, ``Few genes``, ``Disease term``.
    """
    from ._spelling import largest_family

    columns = ["List", "Headline", "Term", "Gene_set", "Overlap", "Adjusted P-value", "Matched P-value",
               "Odds Ratio", "Score", "Also", "Genes", "One family", "Few genes", "Disease term", *CONTROL_COLUMNS]
    if table is None or not len(table):
        return pd.DataFrame(columns=columns)
    matched = "Matched P-value" in table
    passing = table["Adjusted P-value"] <= max_fdr
    if matched:
        passing &= table["Matched P-value"] <= max_matched_p
    rows = table[passing].copy()
    if not len(rows):
        return pd.DataFrame(columns=columns if matched else [c for c in columns if c != "Matched P-value"])
    rows["_disease"] = rows.Term.astype(str).map(is_disease_term)
    rows["_library"] = rows.Gene_set.astype(str).map(lambda n: LIBRARY_PREFERENCE.get(n, 9))
    entries = []
    for name, group in rows.groupby(rows.List.astype(str), sort=False):
        group = group.sort_values(["_disease", "_library", "P-value"])
        chosen: list[dict] = []
        for row in group.to_dict("records"):
            genes = set(str(row["Genes"]).split(";")) if str(row["Genes"]) else set()
            for entry in chosen:
                union = genes | entry["_genes"]
                if genes <= entry["_genes"] or entry["_genes"] <= genes or \
                        (union and len(genes & entry["_genes"]) / len(union) >= min_jaccard):
                    entry["Also"].append(short_term(row["Term"]))
                    break
            else:
                x, m = (int(v) for v in str(row["Overlap"]).split("/"))
                family = ""
                if families is not None and len(genes) >= 2:
                    label, count = largest_family(genes, families)
                    family = label if count == len(genes) else ""
                odds = float(row["Odds Ratio"])
                chosen.append({"List": name, "Headline": short_term(row["Term"]), "Term": str(row["Term"]),
                               "Gene_set": str(row["Gene_set"]), "Overlap": str(row["Overlap"]),
                               "Adjusted P-value": float(row["Adjusted P-value"]), "Odds Ratio": odds,
                               "Score": (x / m) * float(np.log2(max(odds, 1.0))), "Also": [],
                               "Genes": ", ".join(str(row["Genes"]).split(";")), "One family": family,
                               "Few genes": x < min_genes, "Disease term": bool(row["_disease"]), "_genes": genes,
                               **({"Matched P-value": float(row["Matched P-value"])} if matched else {}),
                               **{c: row[c] for c in CONTROL_COLUMNS if c in row}})
        chosen.sort(key=lambda e: (e["Disease term"] or bool(e["One family"]) or e["Few genes"], -e["Score"]))
        entries.extend(chosen[:n] if n is not None else chosen)
    out = pd.DataFrame(entries)
    out["Also"] = out.Also.map(lambda names: "; ".join(dict.fromkeys(names)))
    return out[[c for c in columns if c in out.columns]]
