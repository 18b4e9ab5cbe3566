"""sct.datasets.planted: a simulated atlas whose programs are known, checked as a biologist would check it."""

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy.stats import chi2_contingency

import sctranscoder as sct


@pytest.fixture(scope="module")
def atlas():
    return sct.datasets.planted(n_cells=600, n_types=4, n_genes=1500, seed=3)


def test_ground_truth_is_recorded_and_drawn_from_real_sets(atlas):
    programs, kinds, by_type = atlas.uns["programs"], atlas.uns["program_kind"], atlas.uns["type_programs"]
    hallmark = sct.genesets.load("hallmark")
    assert set(kinds.values()) == {"type", "state"} and set(programs) == set(kinds)
    assert sorted(p for p, k in kinds.items() if k == "state") == sorted(sct.datasets.STATE_PROGRAMS)
    assert set(by_type) == set(atlas.obs.cell_type.astype(str))
    assert all(1 <= len(names) <= 2 and all(kinds[n] == "type" for n in names) for names in by_type.values())
    every = [g for genes in programs.values() for g in genes]
    assert len(every) == len(set(every))  # programs share no gene
    assert all(set(genes) <= set(hallmark[name]) and set(genes) <= set(atlas.var_names)
               for name, genes in programs.items())
    assert atlas.n_vars == 1500 and atlas.var_names.is_unique


def test_type_programs_are_recoverable_by_differential_expression(atlas):
    sc.tl.rank_genes_groups(atlas, "cell_type", method="wilcoxon")
    for cell_type, names in atlas.uns["type_programs"].items():
        top = set(sc.get.rank_genes_groups_df(atlas, cell_type).names.head(40))
        own = {g for name in names for g in atlas.uns["programs"][name]}
        others = {g for t, ns in atlas.uns["type_programs"].items() if t != cell_type
                  for name in ns for g in atlas.uns["programs"][name]}
        assert len(top & own) >= 0.8 * min(40, len(own)), cell_type  # its own program leads its DE genes
        assert not top & others  # and no other type's program does


def test_state_programs_are_independent_of_type_and_recoverable(atlas):
    for name, kind in atlas.uns["program_kind"].items():
        if kind != "state":
            continue
        active = atlas.obs[f"{name} active"].to_numpy()
        assert 0.2 < active.mean() < 0.4
        _, p, _, _ = chi2_contingency(pd.crosstab(atlas.obs.cell_type, active))
        assert p > 0.001  # carried alike by every type
        genes = atlas.uns["programs"][name]
        x = atlas[:, genes].X.toarray()
        assert (x[active].mean(axis=0) > x[~active].mean(axis=0)).all()  # every program gene up where it is on


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="are not Hallmark sets"):
        sct.datasets.planted(n_cells=50, state_programs=["INTERFERON"])
    with pytest.raises(ValueError, match="must exceed the .* program genes"):
        sct.datasets.planted(n_cells=50, n_genes=100)
    with pytest.raises(ValueError, match="programs_per_type"):
        sct.datasets.planted(n_cells=50, programs_per_type=(2, 1))


def test_same_seed_same_atlas():
    a = sct.datasets.planted(n_cells=60, n_types=3, n_genes=800, seed=5)
    b = sct.datasets.planted(n_cells=60, n_types=3, n_genes=800, seed=5)
    assert (a.X != b.X).nnz == 0 and a.uns["programs"] == b.uns["programs"]
    assert np.array_equal(a.obs.cell_type, b.obs.cell_type)
