"""Gene sets: bundled pathway and cell-type libraries, GMT files, and enrichment statistics (model-agnostic).

Needs no torch and no AnnData: gene lists in, tables out.
"""

from ._enrich import COLUMNS, enrich
from ._expression_null import expression_matched_lists, expression_matched_p, expression_null_p
from ._gene_lists import gene_names
from ._gmt import normalize_genes, read_gmt, write_gmt
from ._headlines import LIBRARY_PREFERENCE, headline_sets, is_disease_term, short_term
from ._library import (
    bundled_folder,
    coverage,
    coverage_summary,
    libraries,
    load,
    provenance,
    resolve,
)
from ._prerank import prerank
from ._spelling import (
    best_p_per_library,
    enrich_matched,
    family_share,
    largest_family,
    matched_lists,
    matched_null_p,
    name_families,
    name_stem,
)

__all__ = [
    "COLUMNS",
    "expression_matched_lists",
    "expression_matched_p",
    "expression_null_p",
    "LIBRARY_PREFERENCE",
    "headline_sets",
    "is_disease_term",
    "short_term",
    "best_p_per_library",
    "enrich_matched",
    "family_share",
    "largest_family",
    "matched_lists",
    "matched_null_p",
    "name_families",
    "name_stem",
    "bundled_folder",
    "coverage",
    "coverage_summary",
    "enrich",
    "gene_names",
    "libraries",
    "load",
    "normalize_genes",
    "prerank",
    "provenance",
    "read_gmt",
    "resolve",
    "write_gmt",
]
