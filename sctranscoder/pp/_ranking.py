"""Compiled kernels that turn the rows of a CSR chunk into gene rankings.

Every row is sorted on a packed 64-bit key: the high 32 bits are an
order-preserving code of the (non-negative) expression value, inverted so that
ascending keys mean descending expression; the low 32 bits are the entry's
position in a per-row tie-break permutation. Keys are therefore unique, and any
sort gives the same, fully determined order.

Tie-break permutations:

- ``stable``: the identity (the chunk's indices are sorted, so gene order).
- ``random``: a Fisher-Yates shuffle driven by a counter-based generator seeded
  from ``(seed, global row index)``, so results do not depend on chunking or on
  the number of threads.
- ``c2s``: the exact permutation cell2sentence 1.2.0 draws, i.e. numpy's legacy
  ``RandomState.shuffle`` (via ``sklearn.utils.shuffle``) consuming one global
  MT19937 stream, one shuffle per row. The raw 32-bit draws come from
  ``RandomState`` itself; the kernel replays numpy's bounded-interval rejection
  sampling on them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_MASK32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def _splitmix64(x):
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x, z ^ (z >> np.uint64(31))


@njit(cache=True)
def _random_permutation(m, seed, row):
    perm = np.arange(m).astype(np.int64)
    state = (np.uint64(seed) * np.uint64(0xD1342543DE82EF95)) ^ np.uint64(row)
    state, _ = _splitmix64(state)
    for i in range(m - 1, 0, -1):
        state, r = _splitmix64(state)
        # multiply-shift maps a 32-bit draw to [0, i]; bias < 2**-32 * i
        j = np.int64(((r >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
        tmp = perm[i]
        perm[i] = perm[j]
        perm[j] = tmp
    return perm


@njit(cache=True)
def c2s_permutations(indptr, raw, start):
    """Replay ``RandomState.shuffle(np.arange(m))`` for each row in order.

    ``raw`` holds consecutive MT19937 32-bit outputs starting at ``raw[start]``.
    Returns the concatenated permutations and the number of draws consumed, or
    ``-1`` when ``raw`` ran out (the caller then supplies a longer buffer).
    """
    n = indptr.size - 1
    perms = np.empty(indptr[n], np.int64)
    pos = start
    for row in range(n):
        s = indptr[row]
        m = indptr[row + 1] - indptr[row]
        for j in range(m):
            perms[s + j] = j
        for i in range(m - 1, 0, -1):
            # numpy's random_interval(max=i): smallest all-ones mask >= i, reject above i
            mask = np.uint64(i)
            mask |= mask >> np.uint64(1)
            mask |= mask >> np.uint64(2)
            mask |= mask >> np.uint64(4)
            mask |= mask >> np.uint64(8)
            mask |= mask >> np.uint64(16)
            while True:
                if pos >= raw.size:
                    return perms, np.int64(-1)
                value = np.uint64(raw[pos]) & mask
                pos += 1
                if value <= np.uint64(i):
                    break
            j = np.int64(value)
            tmp = perms[s + i]
            perms[s + i] = perms[s + j]
            perms[s + j] = tmp
    return perms, np.int64(pos - start)


@njit(parallel=True, cache=True)
def count_expressed(indptr, codes):
    """Number of expressed (non-zero) entries per row."""
    n = indptr.size - 1
    expressed = np.zeros(n, np.int64)
    for i in prange(n):
        c = 0
        for p in range(indptr[i], indptr[i + 1]):
            if codes[p] != 0:
                c += 1
        expressed[i] = c
    return expressed


@njit(parallel=True, cache=True)
def rank_rows(indptr, indices, codes, mode, perms, seed, row_offset, out_ptr, out_idx):
    """Fill ``out_idx[out_ptr[i]:out_ptr[i+1]]`` with row i's top genes, best first.

    The chunk is a CSR with ``indptr[0] == 0``; ``codes`` are order-preserving
    uint32 codes of the values, 0 exactly for zeros (which are skipped).
    ``mode``: 0 stable, 1 random, 2 c2s (``perms`` then holds the permutations).
    """
    n = indptr.size - 1
    for i in prange(n):
        s = indptr[i]
        m = indptr[i + 1] - s
        k = out_ptr[i + 1] - out_ptr[i]
        if k == 0:
            continue
        if mode == 1:
            perm = _random_permutation(m, seed, row_offset + i)
        elif mode == 2:
            perm = perms[s : s + m]
        else:
            perm = np.arange(m).astype(np.int64)
        keys = np.empty(m, np.uint64)
        c = 0
        for p in range(m):
            code = codes[s + perm[p]]
            if code != 0:
                keys[c] = ((_MASK32 - np.uint64(code)) << np.uint64(32)) | np.uint64(p)
                c += 1
        keys = keys[:c]
        if k < c:
            keys = np.partition(keys, k - 1)[:k]
        keys.sort()
        o = out_ptr[i]
        for j in range(k):
            out_idx[o + j] = indices[s + perm[np.int64(keys[j] & _MASK32)]]


@njit(parallel=True, cache=True)
def order_by_rank(indptr, indices, ranks):
    """Gene indices of each row sorted by their stored rank (1 = highest)."""
    n = indptr.size - 1
    out = np.empty(indices.size, indices.dtype)
    for i in prange(n):
        s = indptr[i]
        e = indptr[i + 1]
        ordered = True
        for p in range(s + 1, e):
            if ranks[p] < ranks[p - 1]:
                ordered = False
                break
        if ordered:
            out[s:e] = indices[s:e]
        else:
            o = np.argsort(ranks[s:e])
            for j in range(e - s):
                out[s + j] = indices[s + o[j]]
    return out


@njit(parallel=True, cache=True)
def fill_positions(indptr, out):
    """``out[indptr[i] + j] = j + 1``: 1-based positions within each row."""
    n = indptr.size - 1
    for i in prange(n):
        for p in range(indptr[i], indptr[i + 1]):
            out[p] = p - indptr[i] + 1
