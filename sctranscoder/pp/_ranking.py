"""Compiled kernels that turn the rows of a CSR chunk into gene rankings.

Each row is first put in its tie-break order (a permutation of its stored
entries), then sorted by a stable radix sort on an order-preserving uint32 code
of the (non-negative) expression value, inverted so that ascending keys mean
descending expression. Equal values therefore keep tie-break order, exactly as
cell2sentence's ``argsort(-values, kind="stable")`` after its shuffle does.
For top-n sentences a radix select keeps the n best before sorting.

Tie-break permutations:

- ``stable``: the identity (the chunk's indices are sorted, so gene order).
- ``random``: a Fisher-Yates shuffle driven by a counter-based generator seeded
  from ``(seed, the cell's tie key)``, so results do not depend on chunking or on
  the number of threads. The tie key is a 64-bit hash of the cell's obs name
  (:func:`name_keys`), so a cell gets the same sentence in any subset or order of
  cells; sentences made before names keyed the ties used the cell's global row
  index instead (still available: ``tie_key="row"``).
- ``c2s``: the exact permutation cell2sentence 1.2.0 draws, i.e. numpy's legacy
  ``RandomState.shuffle`` (via ``sklearn.utils.shuffle``) consuming one global
  MT19937 stream, one shuffle per row. The raw 32-bit draws come from
  ``RandomState`` itself; the kernel replays numpy's bounded-interval rejection
  sampling on them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Codes are < 2**31; masking the sign bit lets float32 bits serve as codes directly
# (for non-negative floats the bit pattern is order-preserving, and -0.0 becomes 0).
_CODE_MASK = np.uint32(0x7FFFFFFF)

@njit(cache=True, inline="always")
def _splitmix64(x):
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x, z ^ (z >> np.uint64(31))


@njit(parallel=True, cache=True)
def name_keys(data, offsets):
    """64-bit tie keys of names given as UTF-8 bytes: name i is ``data[offsets[i]:offsets[i+1]]``.

    FNV-1a (64-bit) over the bytes, then splitmix64's finaliser to spread the bits.
    Defined on bytes with wrapping uint64 arithmetic, so a name has the same key in
    every process and on every platform (Python's ``hash`` of a string does not).
    """
    n = offsets.size - 1
    keys = np.empty(n, np.uint64)
    for i in prange(n):
        h = np.uint64(0xCBF29CE484222325)
        for p in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[p])) * np.uint64(0x100000001B3)
        _, keys[i] = _splitmix64(h)
    return keys


@njit(cache=True)
def _random_permutation(m, seed, key):
    perm = np.arange(m).astype(np.int64)
    state = (np.uint64(seed) * np.uint64(0xD1342543DE82EF95)) ^ key
    state, _ = _splitmix64(state)
    draw = np.uint64(0)
    for i in range(m - 1, 0, -1):
        # each 64-bit output serves two steps, 32 bits each; multiply-shift maps
        # a 32-bit draw to [0, i] (bias < i / 2**32)
        if (m - 1 - i) % 2 == 0:
            state, draw = _splitmix64(state)
            half = draw >> np.uint64(32)
        else:
            half = draw & np.uint64(0xFFFFFFFF)
        j = np.int64((half * np.uint64(i + 1)) >> np.uint64(32))
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
            c += np.int64((codes[p] & _CODE_MASK) != 0)
        expressed[i] = c
    return expressed


@njit(cache=True)
def _radix_sort(keys, vals, tmp_keys, tmp_vals, m):
    """Stable LSD radix sort of ``keys[:m]`` (uint32) carrying ``vals``; returns the sorted pair.

    One pass counts all four byte histograms; a byte that is the same for every
    key costs no pass.
    """
    count = np.zeros((4, 256), np.int64)
    for i in range(m):
        key = keys[i]
        for b in range(4):
            count[b, (key >> np.uint32(8 * b)) & np.uint32(255)] += 1
    src_k, src_v, dst_k, dst_v = keys, vals, tmp_keys, tmp_vals
    for b in range(4):
        shift = np.uint32(8 * b)
        if count[b, (keys[0] >> shift) & np.uint32(255)] == m:
            continue
        total = 0
        for d in range(256):
            c = count[b, d]
            count[b, d] = total
            total += c
        for i in range(m):
            d = (src_k[i] >> shift) & np.uint32(255)
            pos = count[b, d]
            dst_k[pos] = src_k[i]
            dst_v[pos] = src_v[i]
            count[b, d] = pos + 1
        src_k, dst_k = dst_k, src_k
        src_v, dst_v = dst_v, src_v
    return src_k, src_v


@njit(cache=True)
def _select_smallest(keys, vals, m, k, out_keys, out_vals, scratch, top_count):
    """The ``k`` smallest of ``keys[:m]``, in their original order (radix select).

    ``top_count`` is the histogram of the keys' top bytes (counted while the keys
    were filled in). Ties at the threshold are taken in order, so a stable sort
    afterwards gives exactly the first ``k`` of a stable sort of all ``m``.
    """
    count = top_count
    prefix = np.uint32(0)
    n_cand = m
    cand = keys
    needed = k
    for b in range(3, -1, -1):
        shift = np.uint32(8 * b)
        if b < 3:
            count[:] = 0
            for i in range(n_cand):
                count[(cand[i] >> shift) & np.uint32(255)] += 1
        below = 0
        digit = 0
        for d in range(256):
            if below + count[d] >= needed:
                digit = d
                break
            below += count[d]
        needed -= below
        prefix |= np.uint32(digit) << shift
        if count[digit] != n_cand:  # keep only the keys in the boundary bucket
            c = 0
            for i in range(n_cand):  # branch-free: rows differ, so branches mispredict
                scratch[c] = cand[i]
                c += np.int64((cand[i] >> shift) & np.uint32(255) == digit)
            cand = scratch
            n_cand = c
    taken_equal = 0
    c = 0
    for i in range(m):
        key = keys[i]
        equal = np.int64(key == prefix)
        take = np.int64(key < prefix) | (equal & np.int64(taken_equal < needed))
        out_keys[c] = key
        out_vals[c] = vals[i]
        c += take
        taken_equal += equal & take
    return c


@njit(parallel=True, cache=True)
def rank_rows(indptr, indices, codes, mode, perms, seed, tie_keys, out_ptr, out_idx, out_rank):
    """Fill ``out_idx[out_ptr[i]:out_ptr[i+1]]`` with row i's top genes, best first,
    and ``out_rank`` with their 1-based ranks.

    The chunk is a CSR with ``indptr[0] == 0``; ``codes`` are order-preserving
    uint32 codes of the values below ``2**31`` (or raw float32 bits), 0 exactly
    for zeros (which are skipped).
    ``mode``: 0 stable, 1 random (row i's ties seeded by ``seed`` and ``tie_keys[i]``, uint64),
    2 c2s (``perms`` then holds the permutations).
    Ties keep tie-break-permutation order because the radix sort is stable.
    """
    n = indptr.size - 1
    n_blocks = min(n, 256)
    for block in prange(n_blocks):
        r0 = block * n // n_blocks
        r1 = (block + 1) * n // n_blocks
        longest = 1
        for i in range(r0, r1):
            longest = max(longest, indptr[i + 1] - indptr[i])
        keys = np.empty(longest, np.uint32)
        vals = np.empty(longest, np.int64)
        tmp_keys = np.empty(longest, np.uint32)
        tmp_vals = np.empty(longest, np.int64)
        scratch = np.empty(longest, np.uint32)
        top_count = np.zeros(256, np.int64)
        for i in range(r0, r1):
            s = indptr[i]
            m = indptr[i + 1] - s
            k = out_ptr[i + 1] - out_ptr[i]
            if k == 0:
                continue
            if mode == 1:
                perm = _random_permutation(m, seed, tie_keys[i])
            elif mode == 2:
                perm = perms[s : s + m]
            else:
                perm = np.arange(m).astype(np.int64)
            c = 0
            select = k < m  # a top-n cut is possible: count top bytes while filling
            if select:
                top_count[:] = 0
            for p in range(m):
                code = codes[s + perm[p]] & _CODE_MASK
                if code != 0:
                    key = np.uint32(0xFFFFFFFF) - code  # ascending keys: descending values
                    keys[c] = key
                    vals[c] = perm[p]
                    c += 1
                    if select:
                        top_count[key >> np.uint32(24)] += 1
            if k < c:
                c = _select_smallest(keys, vals, c, k, tmp_keys, tmp_vals, scratch, top_count)
                sorted_keys, sorted_vals = _radix_sort(tmp_keys, tmp_vals, keys, vals, c)
            else:
                sorted_keys, sorted_vals = _radix_sort(keys, vals, tmp_keys, tmp_vals, c)
            o = out_ptr[i]
            for j in range(k):
                out_idx[o + j] = indices[s + sorted_vals[j]]
                out_rank[o + j] = j + 1


@njit(parallel=True, cache=True)
def order_by_rank(indptr, indices, ranks, out_ptr):
    """Each row's gene indices sorted by stored rank (1 = highest), cut to ``out_ptr``'s row lengths."""
    n = indptr.size - 1
    out = np.empty(out_ptr[n], indices.dtype)
    for i in prange(n):
        s = indptr[i]
        e = indptr[i + 1]
        o = out_ptr[i]
        k = out_ptr[i + 1] - o
        ordered = True
        for p in range(s + 1, e):
            if ranks[p] < ranks[p - 1]:
                ordered = False
                break
        if ordered:
            out[o : o + k] = indices[s : s + k]
        else:
            order = np.argsort(ranks[s:e])
            for j in range(k):
                out[o + j] = indices[s + order[j]]
    return out


@njit(parallel=True, cache=True)
def scan_float32(indptr, bits):
    """One pass over float32 values (as their uint32 bits): expressed genes per row, bad-value flags.

    Returns ``(expressed, any_non_finite, any_negative)``.
    """
    n = indptr.size - 1
    expressed = np.zeros(n, np.int64)
    non_finite = np.zeros(n, np.bool_)
    negative = np.zeros(n, np.bool_)
    for i in prange(n):
        c = 0
        bad_exp = False
        neg = False
        for p in range(indptr[i], indptr[i + 1]):
            b = bits[p]
            code = b & _CODE_MASK
            c += np.int64(code != 0)
            bad_exp |= code >= np.uint32(0x7F800000)  # inf or NaN
            neg |= (b >> np.uint32(31)) != 0 and code != 0
        expressed[i] = c
        non_finite[i] = bad_exp
        negative[i] = neg
    return expressed, non_finite.any(), negative.any()


@njit(parallel=True, cache=True)
def join_names(indptr, genes, name_bytes, name_offsets, delimiter):
    """UTF-8 sentences of all rows in one buffer: ``(buffer, offsets)``, row i at offsets[i]:offsets[i+1].

    ``name_bytes[name_offsets[g]:name_offsets[g+1]]`` is gene g's encoded name.
    """
    n = indptr.size - 1
    lengths = np.zeros(n, np.int64)
    d = delimiter.size
    for i in prange(n):
        total = 0
        for p in range(indptr[i], indptr[i + 1]):
            g = genes[p]
            total += name_offsets[g + 1] - name_offsets[g]
        if indptr[i + 1] > indptr[i]:
            total += d * (indptr[i + 1] - indptr[i] - 1)
        lengths[i] = total
    offsets = np.zeros(n + 1, np.int64)
    for i in range(n):
        offsets[i + 1] = offsets[i] + lengths[i]
    buffer = np.empty(offsets[n], np.uint8)
    for i in prange(n):
        o = offsets[i]
        for p in range(indptr[i], indptr[i + 1]):
            if p > indptr[i]:
                for j in range(d):
                    buffer[o + j] = delimiter[j]
                o += d
            g = genes[p]
            for j in range(name_offsets[g], name_offsets[g + 1]):
                buffer[o] = name_bytes[j]
                o += 1
    return buffer, offsets
