"""Compiled loops of the enrichment: Benjamini-Hochberg per segment, and the genes of each overlap."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def bh_segments(indptr, p, n_tests):
    """Benjamini-Hochberg adjusted p-values within each segment ``p[indptr[s]:indptr[s+1]]``, computed as
    gseapy's ``fdrcorrection`` does (``p_sorted / (rank / n)``, reverse running minimum, capped at 1);
    also the order that sorts each segment by p-value.

    ``n`` is the segment's length when ``n_tests`` is 0, else ``n_tests``: the segment then holds the
    smallest p-values of ``n_tests`` tests, the others being 1 (they cannot lower any adjusted value).
    """
    q = np.empty_like(p)
    order = np.empty(p.size, np.int64)
    for s in prange(indptr.size - 1):
        start, stop = indptr[s], indptr[s + 1]
        n = stop - start
        if n == 0:
            continue
        total = n if n_tests == 0 else n_tests
        local = np.argsort(p[start:stop], kind="mergesort")
        running = np.inf
        for r in range(n - 1, -1, -1):
            value = p[start + local[r]] / ((r + 1) / total)
            if value < running:
                running = value
            q[start + local[r]] = min(running, 1.0)
        for r in range(n):
            order[start + r] = start + local[r]
    return q, order


@njit(parallel=True, cache=True)
def overlap_genes(list_indptr, list_genes, gene_indptr, gene_sets, n_sets, pair_list, pair_set, offsets):
    """For each (list, set) pair, the background indices of their shared genes, in the list's order.

    ``list_genes`` holds each list's genes in list order; ``gene_sets`` the sets holding each background
    gene (CSR by gene). Pairs are grouped by list (``pair_list`` ascending); pair ``t`` fills
    ``out[offsets[t]:offsets[t+1]]``. The work is that of the sparse product that found the overlaps.
    """
    out = np.empty(offsets[-1], np.int64)
    bounds = np.searchsorted(pair_list, np.arange(list_indptr.size))  # pairs of list i: bounds[i]:bounds[i+1]
    n_chunks = min(64, list_indptr.size - 1)
    for c in prange(n_chunks):
        cursor = np.full(n_sets, -1, np.int64)  # next output slot of (this list, set j), -1: not a kept pair
        for i in range(c, list_indptr.size - 1, n_chunks):
            if bounds[i] == bounds[i + 1]:
                continue
            for t in range(bounds[i], bounds[i + 1]):
                cursor[pair_set[t]] = offsets[t]
            for a in range(list_indptr[i], list_indptr[i + 1]):
                gene = list_genes[a]
                for b in range(gene_indptr[gene], gene_indptr[gene + 1]):
                    j = gene_sets[b]
                    if cursor[j] >= 0:
                        out[cursor[j]] = gene
                        cursor[j] += 1
            for t in range(bounds[i], bounds[i + 1]):
                cursor[pair_set[t]] = -1
    return out


@njit(parallel=True, cache=True)
def joined_names(name_bytes, name_offsets, flat, offsets):
    """UTF-8 bytes of every row's genes joined by ';' (row ``t`` holds ``flat[offsets[t]:offsets[t+1]]``),
    and the byte offset of each row: the buffers of an Arrow string array."""
    n_rows = offsets.size - 1
    row_bytes = np.zeros(n_rows + 1, np.int64)
    for t in prange(n_rows):
        total = offsets[t + 1] - offsets[t] - 1
        for e in range(offsets[t], offsets[t + 1]):
            total += name_offsets[flat[e] + 1] - name_offsets[flat[e]]
        row_bytes[t + 1] = total
    starts = np.cumsum(row_bytes)
    data = np.empty(starts[-1], np.uint8)
    for t in prange(n_rows):
        at = starts[t]
        for e in range(offsets[t], offsets[t + 1]):
            if e > offsets[t]:
                data[at] = 59  # ';'
                at += 1
            for b in range(name_offsets[flat[e]], name_offsets[flat[e] + 1]):
                data[at] = name_bytes[b]
                at += 1
    return data, starts
