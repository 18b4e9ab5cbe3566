"""Gene-name families and an enrichment null that keeps them (no torch, no AnnData: gene names in, numbers out).

A subword tokenizer spells HLA-DRB1 and HLA-DPA1 with the same leading token, and S100A8 and S100A9 share
a stem. Those name families also sit in the same gene sets, so a feature that reads a name fragment looks
enriched for MHC class II or calprotectin without knowing any biology. Two tools tell the two apart:

- :func:`name_families`: every gene's family, joining genes that share a name stem (:func:`name_stem`)
  or a leading subword token (given by the caller, who has the tokenizer);
- :func:`matched_null_p`: random gene lists with the same family structure as each real list (the same
  number of genes sharing a family, the rest from distinct families), and the empirical p-value of a set's
  hypergeometric p against the best p those random lists reach over every tested set of every library
  (so picking the best of thousands of sets is paid for, and random lists pass at most 5% of the time).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

from ._enrich import _csr, _hypergeom_sf, _rows_in
from ._gmt import normalize_genes
from ._library import resolve

_LEADING = re.compile(r"^[A-Z]+")


def name_stem(gene: str) -> str:
    """The family part of a gene symbol: its leading letters (RPL13 -> RPL, CD79A -> CD), the letter after a
    hyphen kept (HLA-DRB1 -> HLA-D), digits kept when the letters are one (S100A8 -> S100A), and a letter-only
    name of four or more letters without its last letter (GZMB -> GZM)."""
    gene = str(gene).upper()
    letters = _LEADING.match(gene)
    stem = letters.group(0) if letters else ""
    rest = gene[len(stem):]
    if rest.startswith("-") and len(rest) > 1 and rest[1].isalpha():
        return stem + rest[:2]
    if len(stem) == 1:  # S100A8: the letters alone say nothing
        more = re.match(r"^[0-9]+[A-Z]*", rest)
        return stem + (more.group(0) if more else "")
    if not rest and len(stem) >= 4:
        return stem[:-1]
    return stem


def name_families(genes, leading_tokens: dict | None = None, *, min_key_length: int = 2) -> pd.Series:
    """Each gene's name family: genes sharing a name stem, or a leading subword token, are one family
    (joined transitively).

    Parameters
    ----------
    genes
        Gene names (uppercased here).
    leading_tokens
        ``{gene: its leading subword}`` as the model's tokenizer spells it (see
        :func:`sctranscoder.tl.leading_subwords`); keys shorter than ``min_key_length`` letters join nothing.

    Returns
    -------
    A Series indexed by gene: the family's label (its most shared key, e.g. ``HLA`` or ``RPL``), or the gene
    itself when it shares no key.
    """
    genes = list(dict.fromkeys(normalize_genes(genes)))
    leading = {str(k).upper(): str(v).strip().upper() for k, v in (leading_tokens or {}).items()}
    parent = list(range(len(genes)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys_of = []
    first_with: dict[str, int] = {}
    for i, gene in enumerate(genes):
        keys = {"stem:" + name_stem(gene)}
        token = leading.get(gene, "")
        if token and token != gene:
            keys.add("token:" + token)
        keys = {k for k in keys if len(k.split(":", 1)[1]) >= min_key_length}
        keys_of.append(keys)
        for key in keys:
            if key in first_with:
                a, b = find(i), find(first_with[key])
                if a != b:
                    parent[a] = b
            else:
                first_with[key] = i
    roots = [find(i) for i in range(len(genes))]
    members = Counter(roots)
    labels = {}
    for root in members:
        if members[root] == 1:
            continue
        counts = Counter(k.split(":", 1)[1] for i, r in enumerate(roots) if r == root for k in keys_of[i])
        # ties go to the longer key, then the alphabetically first: set order varies between runs
        labels[root] = max(counts.items(), key=lambda item: (item[1], len(item[0]), [-ord(c) for c in item[0]]))[0]
    return pd.Series([labels.get(r, g) for r, g in zip(roots, genes)], index=pd.Index(genes, name="gene"),
                     name="family")


def family_counts(genes, families: pd.Series) -> Counter:
    """How many of ``genes`` fall in each family (genes missing from ``families`` are their own family)."""
    return Counter(families.get(g, g) for g in normalize_genes(genes))


def family_share(genes, families: pd.Series) -> float:
    """Share of ``genes`` that share their name family with another gene of the list."""
    genes = normalize_genes(genes)
    if not genes:
        return 0.0
    counts = family_counts(genes, families)
    return sum(c for c in counts.values() if c >= 2) / len(genes)


def largest_family(genes, families: pd.Series) -> tuple[str, int]:
    """The family most of ``genes`` share and how many share it (``("", 0)`` for an empty list)."""
    counts = family_counts(genes, families)
    return counts.most_common(1)[0] if counts else ("", 0)


def _structure(genes, families: pd.Series) -> tuple[int, tuple[int, ...]]:
    """(list size, sizes of the families the list holds two or more genes of, largest first)."""
    counts = family_counts(genes, families)
    return sum(counts.values()), tuple(sorted((c for c in counts.values() if c >= 2), reverse=True))


def matched_lists(structure: tuple[int, tuple[int, ...]], families: pd.Series, n: int, rng) -> list[list[str]]:
    """``n`` random gene lists with a given family structure: for each shared family of size ``c`` a random
    family (uniformly among those with at least ``c`` genes, each used once) gives ``c`` random members; the
    remaining genes come from distinct other families, drawn in proportion to family size (a random gene,
    one per family)."""
    return _draw_matched(structure, _family_table(families), n, rng)


def _family_table(families: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every gene grouped by family (families in sorted order), where each family starts in that array, and how
    many genes it has: what every draw of a null reads."""
    groups = families.groupby(families.values, sort=True).groups
    genes = np.array([str(g) for name in groups for g in groups[name]], dtype=object)
    sizes = np.array([len(groups[name]) for name in groups])
    return genes, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64), sizes


# rows of random keys drawn at once: bounds the (lists x families) arrays
_DRAW_CHUNK = 256


def _draw_matched(structure, table, n: int, rng) -> list[list[str]]:
    """:func:`matched_lists` on a :func:`_family_table`, every list of a chunk drawn at once: a uniform pick among
    the eligible families is the arg-max of uniform keys; a weighted draw without replacement is the top of
    ``log(u) / weight`` keys (Efraimidis and Spirakis 2006), the same law as drawing one family at a time."""
    genes, starts, sizes = table
    size, shared = structure
    n_single = size - sum(shared)
    if n_single > len(sizes) - len(shared):
        raise ValueError("The background has too few families to draw a matched list.")
    out: list[list[str]] = []
    for first in range(0, n, _DRAW_CHUNK):
        rows = min(_DRAW_CHUNK, n - first)
        used = np.zeros((rows, len(sizes)), bool)
        picked = []
        for count in shared:
            eligible = (sizes >= count) & ~used
            if not eligible.any(axis=1).all():
                raise ValueError(f"No unused family of {count} or more genes in the background to match a list.")
            family = np.where(eligible, rng.random(used.shape), -1.0).argmax(axis=1)
            used[np.arange(rows), family] = True
            # ``count`` members of each picked family without replacement: the smallest of uniform keys
            keys = rng.random((rows, int(sizes[family].max())))
            keys[np.arange(keys.shape[1]) >= sizes[family][:, None]] = np.inf
            picked.append(starts[family][:, None] + np.argsort(keys, axis=1)[:, :count])
        if n_single:
            keys = np.where(used, -np.inf, np.log(rng.random(used.shape)) / sizes)
            family = np.argpartition(-keys, n_single - 1, axis=1)[:, :n_single]
            # one random member of each
            picked.append(starts[family] + (rng.random(family.shape) * sizes[family]).astype(np.int64))
        drawn = np.concatenate(picked, axis=1) if picked else np.zeros((rows, 0), np.int64)
        out.extend(genes[drawn].tolist())
    return out


def best_p_per_library(gene_lists: dict, gene_sets, background, *, min_set_size: int = 3,
                       batch: int = 4096) -> pd.DataFrame:
    """For many gene lists, the smallest hypergeometric p-value each reaches in each library (over the sets
    with at least ``min_set_size`` background genes; 1 when it touches none), without building the full table."""
    universe = pd.Index(normalize_genes(background))
    libraries = resolve(gene_sets)
    names = list(gene_lists)
    rows = [normalize_genes(g) for g in gene_lists.values()]
    members = {}
    for library, sets in libraries.items():
        indptr, idx = _rows_in(list(sets.values()), universe)
        m = np.diff(indptr)
        keep = m >= min_set_size
        kept = [s for s, k in zip(range(len(m)), keep) if k]
        sub_indptr = np.concatenate([[0], np.cumsum(m[keep])]).astype(np.int64)
        sub_idx = np.concatenate([idx[indptr[s]:indptr[s + 1]] for s in kept]) if kept else np.zeros(0, np.int64)
        members[library] = (_csr(sub_indptr, sub_idx, len(universe)).T.tocsc(), m[keep])
    best = np.ones((len(rows), len(libraries)))
    for start in range(0, len(rows), batch):
        indptr, idx = _rows_in(rows[start:start + batch], universe)
        k = np.diff(indptr)
        query = _csr(indptr, idx, len(universe))
        for j, (matrix, m) in enumerate(members.values()):
            overlap = (query @ matrix).tocsr()
            overlap.eliminate_zeros()
            if not overlap.nnz:
                continue
            row_of = np.repeat(np.arange(overlap.shape[0]), np.diff(overlap.indptr))
            p = _hypergeom_sf(np.rint(overlap.data).astype(np.int64), m[overlap.indices], k[row_of], len(universe))
            touched = np.flatnonzero(np.diff(overlap.indptr))
            best[start + touched, j] = np.minimum.reduceat(p, overlap.indptr[touched])
    return pd.DataFrame(best, index=pd.Index(names, name="List"), columns=list(libraries))


def matched_null_p(table: pd.DataFrame, gene_lists: dict, families: pd.Series, background, gene_sets, *,
                   n_null: int = 200, min_set_size: int = 3, scope: str = "all", seed: int = 0) -> pd.Series:
    """Empirical p-value of every row of an enrichment table against random lists with its list's name-family
    structure: ``(1 + #{random lists whose best p <= the row's p}) / (1 + n_null)``, the best p of a random
    list taken over every tested set of every library (``scope="all"``) or of the row's library
    (``scope="library"``, less strict: a list then has one chance per library).

    Lists with the same structure (size and shared-family sizes) share one set of ``n_null`` random lists.
    Because each random list is scored by its best set, the p-value already pays for picking the best of the
    sets; a list that only spells a family (HLA-D*, RPL/RPS) gets no better p than random lists holding a
    random family of the same size.

    Parameters
    ----------
    table
        :func:`sctranscoder.genesets.enrich`'s table for ``gene_lists``.
    gene_lists
        ``{name: [genes]}`` as given to ``enrich`` (names match ``table.List``).
    families
        :func:`name_families` of ``background``.
    background, gene_sets, min_set_size
        As given to ``enrich``.
    """
    if scope not in ("all", "library"):
        raise ValueError(f"scope={scope!r} must be 'all' (best over every library) or 'library'.")
    background = normalize_genes(background)
    families = families[families.index.isin(set(background))]
    lists = {str(k): [g for g in normalize_genes(v) if g in families.index] for k, v in gene_lists.items()}
    structure_of = {name: _structure(genes, families) for name, genes in lists.items()}
    sorted_null = _null_best_p(sorted(set(structure_of.values())), families, background, gene_sets, n_null,
                               min_set_size, seed)
    out = np.ones(len(table))
    list_names = table["List"].astype(str).to_numpy()
    libraries = table["Gene_set"].astype(str).to_numpy()
    p = table["P-value"].to_numpy()
    for (name, library), index in pd.Series(np.arange(len(table))).groupby([list_names, libraries]).groups.items():
        index = np.asarray(index)
        null = sorted_null[structure_of[name]]["" if scope == "all" else library]
        out[index] = (1 + np.searchsorted(null, p[index] * (1 + 1e-9), side="right")) / (1 + n_null)
    return pd.Series(out, index=table.index, name="Matched P-value")


# Null best p-values already drawn, by what fixes them: the same structure, families, background, libraries and
# seed always give the same random lists (each structure has its own seeded stream), so a feature table, its
# controls and every layer share them instead of drawing and scoring them again. Bounded: oldest dropped first.
_NULL_CACHE: dict = {}
_NULL_CACHE_SIZE = 4096


def _null_best_p(structures, families: pd.Series, background, gene_sets, n_null: int, min_set_size: int,
                 seed: int) -> dict:
    """``{structure: {library: sorted best p}}`` (``""``: the best over every library) of ``n_null`` random lists
    matched to each structure, drawn from a stream seeded by ``seed`` and the structure; cached across calls."""
    libraries = resolve(gene_sets)  # what the sets hold, not what they are called, keys the cache
    context = (hash(tuple(background)), hash((tuple(families.index), tuple(families.to_numpy()))),
               hash(tuple((name, tuple((term, tuple(genes)) for term, genes in sets.items()))
                          for name, sets in libraries.items())), n_null, min_set_size, seed)
    out, missing = {}, []
    for structure in structures:
        hit = _NULL_CACHE.get((context, structure))
        if hit is None:
            missing.append(structure)
        else:
            out[structure] = hit
    if missing:
        null_lists, table = {}, _family_table(families)
        for i, structure in enumerate(missing):
            rng = np.random.default_rng([seed, structure[0], *structure[1]])
            for j, genes in enumerate(_draw_matched(structure, table, n_null, rng)):
                null_lists[f"{i}:{j}"] = genes
        best = best_p_per_library(null_lists, libraries, background, min_set_size=min_set_size)
        best.insert(0, "", best.min(axis=1))
        for i, structure in enumerate(missing):
            block = best.iloc[i * n_null:(i + 1) * n_null]
            out[structure] = _NULL_CACHE[(context, structure)] = {library: np.sort(block[library].to_numpy())
                                                                  for library in block.columns}
        while len(_NULL_CACHE) > _NULL_CACHE_SIZE:
            _NULL_CACHE.pop(next(iter(_NULL_CACHE)))
    return out


def enrich_matched(gene_lists: dict, gene_sets, background, families: pd.Series, *, n_null: int = 200,
                   max_fdr: float = 0.05, max_matched_p: float = 0.05, min_set_size: int = 3,
                   fdr_over: str = "tested", seed: int = 0) -> pd.DataFrame:
    """:func:`sctranscoder.genesets.enrich` (rows with nominal p <= 0.05) plus ``Matched P-value``
    (:func:`matched_null_p`) and ``Beyond spelling``: ``Adjusted P-value <= max_fdr`` and
    ``Matched P-value <= max_matched_p``."""
    from ._enrich import enrich

    table = enrich(gene_lists, gene_sets, background, min_set_size=min_set_size, fdr_over=fdr_over)
    made = table.attrs.get("enrich", {})
    table = table[table["P-value"] <= 0.05].reset_index(drop=True)  # a nominal p above 0.05 never passes
    table["Matched P-value"] = matched_null_p(table, gene_lists, families, background, gene_sets, n_null=n_null,
                                              min_set_size=min_set_size, seed=seed).to_numpy()
    table["Beyond spelling"] = (table["Adjusted P-value"] <= max_fdr) & (table["Matched P-value"] <= max_matched_p)
    table.attrs["enrich"] = {**made, "n_null": n_null, "max_matched_p": max_matched_p, "max_fdr": max_fdr}
    return table
