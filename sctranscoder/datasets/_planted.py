"""A simulated atlas whose gene programs are known: cell types defined by type programs, and state programs
that any cell may carry, each drawn from a real gene set of the bundled Hallmark library.

It is the case where "the pipeline finds biology" can be checked: the true programs are in ``uns``.
"""

from __future__ import annotations

import numpy as np

STATE_PROGRAMS = ("HALLMARK_INTERFERON_ALPHA_RESPONSE", "HALLMARK_G2M_CHECKPOINT", "HALLMARK_HYPOXIA")
"""Default state programs: interferon response, cell cycle and hypoxia, as in real tissue."""


def _distinct_sets(sets: dict, taken: list[str], n: int, rng, max_overlap: float) -> list[str]:
    """``n`` set names, in random order, each sharing at most ``max_overlap`` of its genes with every set in
    ``taken`` or chosen before it (so a program's genes point to one set of the library, not several)."""
    chosen: list[str] = []
    for name in rng.permutation(sorted(set(sets) - set(taken))):
        genes = set(sets[name])
        if all(len(genes & set(sets[other])) <= max_overlap * min(len(genes), len(sets[other]))
               for other in [*taken, *chosen]):
            chosen.append(str(name))
        if len(chosen) == n:
            return chosen
    raise ValueError(f"The library has only {len(chosen)} sets distinct enough for {n} type programs; ask for "
                     "fewer types (n_types) or fewer programs per type.")


def planted(n_cells: int = 2000, n_types: int = 5, *, n_genes: int = 3000, programs_per_type: tuple = (1, 2),
            state_programs=STATE_PROGRAMS, state_fraction: float = 0.3, program_size: int = 25,
            fold_change: float = 4.0, library_size: float = 1500, dispersion: float = 2.0, seed: int = 0):
    """Counts of ``n_cells`` cells of ``n_types`` types with planted gene programs, and the ground truth.

    Each type is defined by 1-2 *type programs* (``programs_per_type``: the least and most). Every cell also
    carries each *state program* (default: interferon-alpha response, G2M checkpoint, hypoxia) with
    probability ``state_fraction``, independently of its type and of the other states. A program is
    ``program_size`` genes of one Hallmark set (MSigDB, bundled); programs share no genes, and type programs
    come from sets that share at most 5% of their genes with each other and with the state sets, so
    enrichment against the bundled libraries can name the planted set.

    Parameters
    ----------
    n_cells, n_types
        Cells, in types of equal size (up to one cell).
    n_genes
        The gene universe: every program gene plus others drawn from the Hallmark genes (a few thousand real
        human symbols; at most the library's 4,383).
    programs_per_type
        ``(least, most)`` type programs per type.
    state_programs
        Hallmark set names of the state programs (an empty tuple: none).
    state_fraction
        Share of the cells of every type that carry each state program.
    program_size
        Genes per program.
    fold_change
        Typical fold change of a program's genes in the cells that carry it (each gene's drawn between 0.5x
        and 1.5x of its log).
    library_size, dispersion
        Log-normal library sizes around ``library_size``; gamma-Poisson (negative binomial) counts with this
        shape, so the data have dropout and ties among small counts.
    seed
        Seed of everything drawn.

    Returns
    -------
    AnnData with log-normalized expression (``normalize_total`` to 1e4, ``log1p``) in ``.X``, counts in
    ``.layers["counts"]``, ``obs["cell_type"]`` and one boolean ``obs`` column per state program
    (``"{program} active"``). Ground truth: ``uns["programs"]`` (``{program: [genes]}``),
    ``uns["program_kind"]`` (``{program: "type" | "state"}``) and ``uns["type_programs"]``
    (``{cell_type: [programs]}``).
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    from scipy import sparse

    from ..genesets import load

    hallmark = load("hallmark")
    state_programs = [str(p) for p in state_programs]
    unknown = [p for p in state_programs if p not in hallmark]
    if unknown:
        raise ValueError(f"state_programs {unknown} are not Hallmark sets; choose from e.g. {STATE_PROGRAMS}.")
    least, most = programs_per_type
    if not 1 <= least <= most:
        raise ValueError(f"programs_per_type={programs_per_type} must be (least, most) with 1 <= least <= most.")
    if not 2 <= n_types <= n_cells:
        raise ValueError(f"n_types={n_types} must be between 2 and n_cells={n_cells}.")
    if not 0 <= state_fraction <= 1:
        raise ValueError(f"state_fraction={state_fraction} must be between 0 and 1.")
    rng = np.random.default_rng(seed)
    per_type = rng.integers(least, most + 1, n_types)
    type_sets = _distinct_sets(hallmark, state_programs, int(per_type.sum()), rng, max_overlap=0.05)

    used: set[str] = set()
    programs: dict[str, list[str]] = {}
    for name in [*state_programs, *type_sets]:
        free = [g for g in hallmark[name] if g not in used]
        if len(free) < program_size:
            raise ValueError(f"{name} has {len(free)} genes left for a program of program_size={program_size}.")
        programs[name] = sorted(rng.choice(free, program_size, replace=False).tolist())
        used.update(programs[name])
    everything = sorted({g for genes in hallmark.values() for g in genes})
    if not len(used) < n_genes <= len(everything):
        raise ValueError(f"n_genes={n_genes} must exceed the {len(used)} program genes and be at most "
                         f"{len(everything)} (the Hallmark genes).")
    others = rng.choice(sorted(set(everything) - used), n_genes - len(used), replace=False)
    genes = np.asarray(sorted([*used, *others]), dtype=object)
    column = {g: i for i, g in enumerate(genes)}

    log_mean = rng.normal(-8.5, 1.6, n_genes)  # log fraction of a cell's counts
    effects = {}
    for name, members in programs.items():
        effect = np.zeros(n_genes)
        idx = [column[g] for g in members]
        log_mean[idx] = rng.normal(-6.5, 0.8, len(idx))  # program genes are detectable where they are off, too
        effect[idx] = np.log(fold_change) * rng.uniform(0.5, 1.5, len(idx))
        effects[name] = effect
    type_programs, start = {}, 0
    for t in range(n_types):
        type_programs[f"type {t + 1}"] = type_sets[start:start + per_type[t]]
        start += per_type[t]

    cell_type = np.arange(n_cells) % n_types
    rng.shuffle(cell_type)
    log_rate = np.tile(log_mean, (n_cells, 1))
    for t, names in enumerate(type_programs.values()):
        for name in names:
            log_rate[cell_type == t] += effects[name]
    active = {name: rng.random(n_cells) < state_fraction for name in state_programs}
    for name, cells in active.items():
        log_rate[cells] += effects[name]
    proportions = np.exp(log_rate)
    proportions /= proportions.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(library_size), 0.4, n_cells)
    mean = proportions * library[:, None]
    counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)

    obs = pd.DataFrame({"cell_type": pd.Categorical([f"type {t + 1}" for t in cell_type])},
                       index=[f"cell{i}" for i in range(n_cells)])
    for name, cells in active.items():
        obs[f"{name} active"] = cells
    adata = ad.AnnData(sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.uns["programs"] = programs
    adata.uns["program_kind"] = {name: "state" if name in state_programs else "type" for name in programs}
    adata.uns["type_programs"] = {t: list(names) for t, names in type_programs.items()}
    return adata
