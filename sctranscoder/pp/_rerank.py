"""Sentences re-ranked after a change of expression: a cell's sentence rebuilt from its expression row with the
sentence builder's own kernel and the recorded prompt settings (same tie-break, seed, gene count and row), as
in-silico knockouts need it."""

from __future__ import annotations

import numpy as np


def expression_rows(adata, settings):
    """The expression matrix (and gene names) the sentences of ``settings`` are ranked from."""
    from ._matrix import select_expression

    return select_expression(adata, layer=settings.layer, use_raw=settings.use_raw,
                             gene_symbols=settings.gene_symbols, uppercase=settings.uppercase)


def read_row(matrix, row: int):
    """One row as canonical CSR ``(indices, data)``, exactly as the sentence builder reads it."""
    from ._matrix import iter_csr_chunks

    chunk = next(iter_csr_chunks(matrix[row:row + 1], 1))
    return np.asarray(chunk.indices).copy(), np.asarray(chunk.data).copy()


def c2s_permutations(matrix, rows, seed) -> dict:
    """cell2sentence's tie-break permutation of each row in ``rows`` (its stream runs over every earlier row)."""
    from ._matrix import iter_csr_chunks
    from ._sentences import _C2SStream

    last = int(max(rows)) + 1
    counts = np.concatenate([np.diff(c.indptr) for c in iter_csr_chunks(matrix[:last], 4096)])
    indptr = np.zeros(last + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    perms = _C2SStream(seed).permutations(indptr)
    return {int(r): perms[indptr[r]:indptr[r + 1]] for r in rows}


def rerank_row(indices, data, settings, key, c2s_perm=None, n_vars: int = 0) -> np.ndarray:
    """The top ``settings.n_genes`` gene indices of one row, best first, with the sentence builder's kernel
    (``key``: the row's random tie-break key, from ``tie_keys`` in the sentence builder)."""
    from . import _ranking
    from ._matrix import value_codes
    from ._sentences import TIE_BREAKS, rank_dtype_for

    codes = value_codes(np.asarray(data))
    n_expressed = int((codes != 0).sum())
    k = min(n_expressed, settings.n_genes)
    out_idx, out_rank = np.empty(k, np.int32), np.empty(k, rank_dtype_for(n_vars))  # the builder's dtypes: no recompile
    perms = np.asarray(c2s_perm, np.int64) if c2s_perm is not None else np.empty(0, np.int64)
    _ranking.rank_rows(np.array([0, indices.size], np.int64), np.asarray(indices), codes,
                       TIE_BREAKS[settings.tie_break], perms, settings.seed, np.array([key], np.uint64),
                       np.array([0, k], np.int64), out_idx, out_rank)
    return out_idx.astype(np.int64)


def prompt_text(settings, names) -> str:
    """The prediction prompt around a sentence, as :func:`sctranscoder.pp.prompts` writes it."""
    from ._prompts import PREDICTION_TEMPLATES

    template = settings.template if isinstance(settings.template, str) else PREDICTION_TEMPLATES[settings.template]
    return template.format(num_genes=len(names), organism=settings.organism, cell_sentence=" ".join(names),
                           cell_type=None)


def knockout_sentences(adata, settings, rows, sentences, genes, mode: str) -> list[list]:
    """Per cell: one sentence (gene indices) per knocked-out gene, ``None`` where the sentence does not change.

    ``sentences`` are the cells' stored sentences; in ``"zero"`` mode the unknocked
    re-ranking must reproduce them (else the knockouts would also move other genes).
    """
    from ._sentences import tie_keys

    if mode == "remove":
        return [[s[s != g] if (s == g).any() else None for g in genes] for s in sentences]
    source = expression_rows(adata, settings)
    c2s = c2s_permutations(source.matrix, rows, settings.seed) if settings.tie_break == "c2s" else {}
    keys = tie_keys(adata.obs_names, rows, settings.tie_key)
    variants = []
    for row, key, sentence in zip(rows, keys, sentences):
        indices, data = read_row(source.matrix, int(row))
        perm = c2s.get(int(row))
        base = rerank_row(indices, data, settings, key, perm, len(source.genes))
        if not np.array_equal(base, sentence):
            raise ValueError(f"Cell {adata.obs_names[row]!r}: re-ranking its expression with the recorded settings "
                             f"({settings.tie_break} tie-break, seed {settings.seed}, {settings.n_genes} genes) does "
                             "not give its stored sentence, so a knockout would also reorder other genes. "
                             + _why_not_reproduced(settings))
        cell = []
        for g in genes:
            hit = np.flatnonzero(indices == g)
            if hit.size == 0 or data[hit[0]] == 0:  # not expressed: nothing to knock out
                cell.append(None)
                continue
            knocked = data.copy()
            knocked[hit[0]] = 0  # an explicit zero: the other genes keep their tie-break order
            variant = rerank_row(indices, knocked, settings, key, perm, len(source.genes))
            cell.append(None if np.array_equal(variant, base) else variant)
        variants.append(cell)
    return variants


def _why_not_reproduced(settings) -> str:
    """Why a stored sentence may not re-rank to itself, and the fix, for these settings."""
    if settings.tie_break == "random" and settings.tie_key == "row":
        return ("These sentences key their random tie-break on each cell's row (tie_key='row', as models trained "
                "before name-keyed ties read them), so they were probably made before adata was subset. Pass the "
                "AnnData the sentences were made on and pick cells with cells=, or rebuild the sentences on this one "
                "(del adata.obsm['c2s_ranks']).")
    if settings.tie_break == "c2s":
        return ("The c2s tie-break runs one random stream over the cells in order, so a cell's sentence depends on "
                "the cells before it: pass the AnnData the sentences were made on and pick cells with cells=, or "
                "rebuild the sentences on this one (del adata.obsm['c2s_ranks']).")
    return ("The expression changed since the sentences were made, or they were made from other data: rebuild "
            "them (del adata.obsm['c2s_ranks']).")
