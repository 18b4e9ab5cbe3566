"""Over-representation analysis of many gene lists against many gene sets at once.

Statistics follow gseapy 1.3.1's ``enrich`` with a gene-list background (``Enrichr.enrich_local``
and ``gseapy.stats.calc_pvalues``), so tables can be compared row by row:

- genes of lists, sets and background are uppercased; the background ``N`` is its number of
  distinct genes; a list is cut to its genes in the background (``k`` of them) and a set to its
  genes in the background (``m``); ``x`` is the size of their overlap;
- P-value: one-sided hypergeometric ``scipy.stats.hypergeom.sf(x - 1, N, m, k)``, P(X >= x);
- only terms with ``x >= 1`` are tested and reported (gseapy skips the others);
- Adjusted P-value: Benjamini-Hochberg within one gene list and one library, over the terms
  with ``x >= 1`` (gseapy runs one BH per library given, over the terms it reports);
  ``fdr_over="tested"`` instead counts every set with at least ``min_set_size`` background genes
  as a test (the sets a list does not touch have p = 1). gseapy's choice leaves out the tests that
  came out empty, which makes its FDR anti-conservative when lists touch few sets (small
  backgrounds, small libraries): random lists then look enriched far more often than 5% of the time;
- Odds Ratio: ``(x + .5)(N - m - k + x + .5) / ((m - x + .5)(k - x + .5))`` (Haldane-Anscombe,
  gseapy's formula); Combined Score: ``-ln(P-value) * Odds Ratio``;
- Overlap: ``"x/m"``.

Differences: rows are sorted by list, library, then P-value (gseapy: by term name); ``Genes`` lists
the shared genes in the order of the gene list (gseapy: set order); ``Gene_set`` is the library's
name (gseapy: ``gs_ind_0`` for a dict, the file name for a GMT path); gseapy's guess whether to
uppercase is replaced by always uppercasing, as cell2sentence does. The background is required:
gseapy's default (the union of the gene sets) would test against genes a model never sees.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import hypergeom

from ._gmt import normalize_genes
from ._kernels import bh_segments, joined_names, overlap_genes
from ._library import resolve

logger = logging.getLogger(__name__)
COLUMNS = ["List", "Gene_set", "Term", "Overlap", "P-value", "Adjusted P-value", "Odds Ratio", "Combined Score",
           "Genes"]


def _as_lists(gene_lists) -> dict[str, list[str]]:
    if isinstance(gene_lists, dict):
        if not gene_lists:
            raise ValueError("gene_lists is an empty dict; pass {name: [genes]}.")
        lists = {str(name): normalize_genes(genes) for name, genes in gene_lists.items()}
        if len(lists) != len(gene_lists):
            raise ValueError("Two gene-list names are equal as strings; give every list a distinct name.")
        return lists
    if isinstance(gene_lists, (list, tuple, np.ndarray, pd.Index, pd.Series, pd.DataFrame)):
        return {"list": normalize_genes(gene_lists)}
    raise TypeError(f"gene_lists must be a dict {{name: [genes]}} or one list of genes, "
                    f"not {type(gene_lists).__name__}.")


def _no_overlap_message(lists: dict, k: np.ndarray, universe: pd.Index) -> str:
    empty = [name for name, n in zip(lists, k) if n == 0]
    name = empty[0]
    sample = ", ".join(lists[name][:5]) or "no genes at all"
    return (f"{len(empty)} of {len(lists)} gene lists share no gene with the background of {len(universe)} genes "
            f"(e.g. {name!r}: {sample}; background: {', '.join(universe[:5])}, ...), so nothing can be tested. "
            "Check that the lists hold gene symbols of the same organism and spelling as the background "
            "(a ranked table needs its gene column), and that the background is the genes the model sees.")


def _rows_in(rows: list[list[str]], index: pd.Index):
    """Each row's genes found in ``index`` as (indptr, background indices in row order)."""
    sizes = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    flat = [g for r in rows for g in r]
    found = index.get_indexer(flat) if flat else np.zeros(0, np.int64)
    keep = found >= 0
    owner = np.repeat(np.arange(len(rows)), sizes)[keep]
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(np.bincount(owner, minlength=len(rows)), out=indptr[1:])
    return indptr, found[keep].astype(np.int64)


def _csr(indptr, indices, n_columns) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix((np.ones(indices.size, np.float32), indices, indptr),
                               shape=(indptr.size - 1, n_columns))
    matrix.sort_indices()
    return matrix


def _codes(key: np.ndarray):
    """(distinct values, code of each entry): a dense lookup when the values are small, else np.unique."""
    if key.size and int(key.max()) < max(1 << 22, 4 * key.size):
        present = np.zeros(int(key.max()) + 1, bool)
        present[key] = True
        distinct = np.flatnonzero(present)
        lookup = np.cumsum(present) - 1
        return distinct, lookup[key]
    distinct, inverse = np.unique(key, return_inverse=True)
    return distinct, inverse.reshape(-1)


def _hypergeom_sf(x, m, k, n_background: int) -> np.ndarray:
    """``hypergeom.sf(x - 1, N, m, k)`` for each entry, evaluated once per distinct (x, m, k)."""
    if x.size == 0:
        return np.zeros(0)
    span_m, span_k = int(m.max()) + 1, int(k.max()) + 1
    unique, code = _codes((x.astype(np.int64) * span_m + m) * span_k + k)
    ux, rest = np.divmod(unique, span_m * span_k)
    um, uk = np.divmod(rest, span_k)
    return hypergeom.sf(ux - 1, n_background, um, uk)[code]


def enrich(
    gene_lists,
    gene_sets,
    background,
    *,
    max_fdr: float | None = None,
    min_overlap: int = 1,
    min_set_size: int = 1,
    fdr_over: str = "overlapping",
    genes: bool = True,
    organism: str = "Human",
) -> pd.DataFrame:
    """Hypergeometric enrichment of every gene list in every gene set, with Benjamini-Hochberg FDR.

    Parameters
    ----------
    gene_lists
        ``{name: [genes]}`` (e.g. one list per feature), or one list.
    gene_sets
        A bundled library name (:func:`libraries`), ``"all"``, a GMT path, an Enrichr
        library name, ``{term: [genes]}``, ``{library: {term: [genes]}}`` or a list of these.
    background
        The genes that could have been in a list: for a model, the genes it can see
        (its vocabulary intersected with the data). Required; never the whole genome.
    max_fdr
        Keep rows with an adjusted p-value at most this (None: every tested term).
    min_overlap
        Keep rows with at least this many shared genes (the FDR is still over every
        term with one or more, as gseapy's).
    min_set_size
        Test only sets with at least this many genes in the background (1: every set, as gseapy).
    fdr_over
        ``"overlapping"`` (gseapy's): Benjamini-Hochberg over the sets sharing at least one
        gene with the list; ``"tested"``: over every tested set (stricter; see the module docstring).
    genes
        Fill the ``Genes`` column (the shared genes, ``;``-joined, in list order).
    organism
        For Enrichr library names.

    Returns
    -------
    A DataFrame with gseapy's columns (Gene_set, Term, Overlap, P-value, Adjusted
    P-value, Odds Ratio, Combined Score, Genes) after a ``List`` column; text columns
    are categorical. The statistics and how they match gseapy are in this module's docstring.
    """
    lists = _as_lists(gene_lists)
    if fdr_over not in ("overlapping", "tested"):
        raise ValueError(f"fdr_over={fdr_over!r} must be 'overlapping' (gseapy's) or 'tested'.")
    if min_set_size < 1:
        raise ValueError(f"min_set_size={min_set_size} must be at least 1.")
    if min_overlap < 1:
        raise ValueError(f"min_overlap={min_overlap}: terms are tested only when they share a gene (min_overlap >= 1).")
    if background is None:
        raise ValueError("background is required: the genes the model can see (sct.tl.visible_genes(adata, model)); "
                         "testing against the whole genome would make every expressed gene look enriched.")
    universe = pd.Index(normalize_genes(background))
    if universe.empty:
        raise ValueError("background holds no genes.")
    libraries = resolve(gene_sets, organism=organism)
    list_names = list(lists)
    list_indptr, list_genes = _rows_in(list(lists.values()), universe)
    k = np.diff(list_indptr)
    if (k == 0).any():
        raise ValueError(_no_overlap_message(lists, k, universe))
    query = _csr(list_indptr, list_genes, len(universe))

    n_lists, n_background = len(list_names), len(universe)
    parts, sizes, terms, by_gene, offset = [], [], [], [], 0
    for library, sets in libraries.items():
        set_indptr, set_genes = _rows_in(list(sets.values()), universe)
        m = np.diff(set_indptr)
        if min_set_size > 1:  # untested sets keep their place (term numbering) but lose their genes
            small = np.repeat(m < min_set_size, m)
            set_genes = set_genes[~small]
            m = np.where(m < min_set_size, 0, m)
            set_indptr = np.concatenate([[0], np.cumsum(m)]).astype(np.int64)
        members = _csr(set_indptr, set_genes, n_background)
        n_tests = int((m >= min_set_size).sum()) if fdr_over == "tested" else 0
        overlap = (query @ members.T).tocsr()
        overlap.eliminate_zeros()
        rows = np.repeat(np.arange(n_lists, dtype=np.int32), np.diff(overlap.indptr))
        cols = overlap.indices.astype(np.int64)
        x = np.rint(overlap.data).astype(np.int32)
        p = _hypergeom_sf(x, m[cols], k[rows], n_background)
        q, order = bh_segments(overlap.indptr.astype(np.int64), p, n_tests)  # order: by p within each list
        if min_overlap > 1 or max_fdr is not None:
            keep = x[order] >= min_overlap
            if max_fdr is not None:
                keep &= q[order] <= max_fdr
            order = order[keep]
        parts.append({"list": rows[order], "set": (cols[order] + offset).astype(np.int32), "x": x[order],
                      "p": p[order], "q": q[order]})
        sizes.append(m)
        terms.extend(sets)
        by_gene.append(members)
        offset += len(sets)
    set_sizes = np.concatenate(sizes)
    set_library = np.repeat(np.arange(len(libraries), dtype=np.int16), [len(s) for s in libraries.values()])
    columns = _table(parts, n_lists, k, set_sizes, n_background)
    table = _frame(columns, list_names, list(libraries), set_library, terms, set_sizes)
    if genes:
        gene_to_sets = sparse.vstack(by_gene).T.tocsr()
        table["Genes"] = _gene_strings(columns, list_indptr, list_genes, gene_to_sets, universe)
    else:
        table["Genes"] = ""
    # how the table was made, for reports (pandas carries attrs through filtering)
    table.attrs["enrich"] = {"libraries": list(libraries), "background_genes": n_background, "lists": n_lists,
                             "fdr_over": fdr_over, "min_set_size": min_set_size, "min_overlap": min_overlap,
                             "max_fdr": max_fdr}
    return table


def _table(parts, n_lists: int, k, set_sizes, n_background: int) -> dict:
    """All libraries' rows in one set of columns, ordered by list, then library, then P-value (a counting sort:
    each library's rows are already grouped by list and sorted by P-value within a list)."""
    counts = np.stack([np.bincount(part["list"], minlength=n_lists) for part in parts], axis=1)  # lists x libs
    starts = np.concatenate([[0], np.cumsum(counts.ravel())[:-1]]).reshape(counts.shape)
    n_rows = int(counts.sum())
    columns = {"list": np.empty(n_rows, np.int32), "set": np.empty(n_rows, np.int32),
               "x": np.empty(n_rows, np.int32), "floats": np.empty((4, n_rows))}
    for lib, part in enumerate(parts):
        first = np.concatenate([[0], np.cumsum(counts[:, lib])[:-1]])  # this part's first row of each list
        target = starts[part["list"], lib] + (np.arange(part["list"].size) - first[part["list"]])
        for key in ("list", "set", "x"):
            columns[key][target] = part[key]
        columns["floats"][0, target] = part["p"]
        columns["floats"][1, target] = part["q"]
    x = columns["x"].astype(np.float64)
    m = set_sizes[columns["set"]].astype(np.float64)
    kk = k[columns["list"]].astype(np.float64)
    odds = columns["floats"][2]
    np.divide((x + 0.5) * (n_background - m - kk + x + 0.5), (m - x + 0.5) * (kk - x + 0.5), out=odds)
    with np.errstate(divide="ignore"):
        np.multiply(-1 * np.log(columns["floats"][0]), odds, out=columns["floats"][3])
    return columns


def _frame(columns, list_names, library_names, set_library, terms, set_sizes) -> pd.DataFrame:
    # built around the one float block, without copying it; text columns are categorical
    table = pd.DataFrame(columns["floats"].T, columns=["P-value", "Adjusted P-value", "Odds Ratio", "Combined Score"],
                         copy=False)
    sets, x = columns["set"], columns["x"]
    term_codes, term_names = pd.factorize(pd.Index(terms))  # a term name may sit in two libraries
    span = int(set_sizes.max(initial=0)) + 1
    unique_overlap, overlap_code = _codes(x.astype(np.int64) * span + set_sizes[sets])
    overlap_labels = [f"{a}/{b}" for a, b in zip(unique_overlap // span, unique_overlap % span)]
    table.insert(0, "List", pd.Categorical.from_codes(columns["list"], categories=list_names))
    table.insert(1, "Gene_set", pd.Categorical.from_codes(set_library[sets], categories=library_names))
    table.insert(2, "Term", pd.Categorical.from_codes(term_codes[sets], categories=term_names))
    table.insert(3, "Overlap", pd.Categorical.from_codes(overlap_code, categories=overlap_labels))
    return table


def _gene_strings(columns, list_indptr, list_genes, gene_to_sets, universe):
    """The shared genes of every row, ';'-joined in the list's order, as an Arrow-backed string column
    built from one buffer (no Python string per row)."""
    import pyarrow as pa

    x = columns["x"]
    if not x.size:
        return pd.array([], dtype="string[pyarrow]")
    offsets = np.zeros(x.size + 1, np.int64)
    np.cumsum(x, out=offsets[1:])
    flat = overlap_genes(list_indptr, list_genes, gene_to_sets.indptr.astype(np.int64),
                         gene_to_sets.indices.astype(np.int64), gene_to_sets.shape[1],
                         columns["list"].astype(np.int64), columns["set"].astype(np.int64), offsets)
    encoded = [g.encode() for g in universe]
    name_offsets = np.concatenate([[0], np.cumsum([len(g) for g in encoded])]).astype(np.int64)
    data, byte_offsets = joined_names(np.frombuffer(b"".join(encoded), np.uint8), name_offsets, flat, offsets)
    if byte_offsets[-1] < 2**31:
        arrow = pa.StringArray.from_buffers(x.size, pa.py_buffer(byte_offsets.astype(np.int32)), pa.py_buffer(data))
    else:
        arrow = pa.LargeStringArray.from_buffers(x.size, pa.py_buffer(byte_offsets), pa.py_buffer(data))
    return pd.arrays.ArrowStringArray(arrow)
