"""Spelling, not biology: name families, the matched null, and planted features it must tell apart."""

import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sctranscoder as sct


def test_name_stems_and_families():
    stem = sct.genesets.name_stem
    assert [stem(g) for g in ["HLA-DRB1", "HLA-DPA1", "S100A8", "RPL13", "CD79A", "GZMB", "LYZ"]] == \
        ["HLA-D", "HLA-D", "S100A", "RPL", "CD", "GZM", "LYZ"]
    families = sct.genesets.name_families(["HLA-DRB1", "HLA-A", "RPL13", "RPS27A", "LYZ", "CD3E"],
                                          {"HLA-A": " HLA", "HLA-DRB1": " HLA", "RPL13": "RP", "RPS27A": "RP"})
    assert families["HLA-A"] == families["HLA-DRB1"] == "HLA"  # joined by their shared leading token
    assert families["RPL13"] == families["RPS27A"]
    assert families["LYZ"] == "LYZ" and families["CD3E"] == "CD3E"
    assert sct.genesets.family_share(["HLA-A", "HLA-DRB1", "LYZ", "CD3E"], families) == 0.5


@pytest.fixture(scope="module")
def planted(pbmc_template):
    """Features over pbmc68k's 765 genes: 0 reads the HLA name family (its other genes random), 1 reads a
    pathway whose genes are not one family, 2-41 are random gene lists."""
    rng = np.random.default_rng(1)
    genes = [g.upper() for g in pbmc_template.var_names]
    families = sct.genesets.name_families(genes)
    hla = [g for g in genes if g.startswith("HLA-D")]
    sets = sct.genesets.load("reactome")
    visible = set(genes)
    # the pathway: the Reactome set with the most visible genes among those no family dominates
    best = max((s for s in sets if sum(g in visible for g in sets[s]) <= 40),
               key=lambda s: (sct.genesets.family_share([g for g in sets[s] if g in visible], families) < 0.2)
               * sum(g in visible for g in sets[s]))
    pathway = [g for g in sets[best] if g in visible][:10]
    others = [g for g in genes if families[g] == g and g not in set(pathway)]
    lists = [hla + list(rng.choice(others, 25 - len(hla), replace=False)),
             pathway + list(rng.choice(others, 15, replace=False))]
    lists += [list(rng.choice(genes, 25, replace=False)) for _ in range(40)]
    activity = np.zeros((len(genes), len(lists)), np.float32)
    for f, chosen in enumerate(lists):
        for rank, g in enumerate(chosen):
            activity[genes.index(g), f] = 2.0 - rank / 25
    data = ad.AnnData(np.zeros((4, 2), np.float32))
    data.obsm["features"] = np.ones((4, len(lists)), np.float32)
    data.uns["features"] = {"layer": 0, "pool": "max", "tokens": "genes", "n_genes": 200, "d_hidden": len(lists),
                            "activation": "topk", "genes": genes, "gene_activity": activity,
                            "gene_occurrences": np.full(len(genes), 10)}
    return data, best, len(hla)


def test_planted_spelling_caught_and_pathway_passes(planted):
    data, pathway, n_hla = planted
    table = sct.tl.enrich_beyond_spelling(data, ["reactome", "hallmark"], n_null=200)
    rows = table[table.List.astype(str) == "0"].sort_values("P-value")
    # the name-family feature looks enriched by the hypergeometric test alone (MHC class II) ...
    assert rows["Adjusted P-value"].iloc[0] < 1e-3 and "HLA-D" in rows.Genes.iloc[0]
    # ... and the matched null (random lists holding a random family of the same size) sees through it
    assert not rows["Beyond spelling"].any()
    assert rows["Matched P-value"].iloc[0] > 0.05
    hit = table[(table.List.astype(str) == "1") & (table.Term.astype(str) == pathway)]
    assert bool(hit["Beyond spelling"].iloc[0]) and hit["Matched P-value"].iloc[0] <= 0.01
    scores = sct.tl.spelling_scores(data, features=[0, 1])
    assert scores.loc[0, "family"] == "HLA-D" and scores.loc[0, "family_genes"] == n_hla
    assert scores.loc[0, "spelling_score"] > 0.25 > scores.loc[1, "spelling_score"]
    # random gene lists: the control stays at or under 5%
    assert sct.tl.beyond_spelling_fraction(table[table.List.astype(int) >= 2], 40) <= 0.05


def test_a_lists_matched_p_does_not_depend_on_the_other_lists_or_the_cache(pbmc_template):
    from sctranscoder.genesets import _spelling

    genes = [g.upper() for g in pbmc_template.var_names]
    families = sct.genesets.name_families(genes)
    rng = np.random.default_rng(3)
    lists = {"a": list(rng.choice(genes, 12, replace=False)), "b": list(rng.choice(genes, 30, replace=False))}
    sets = sct.genesets.load("hallmark")

    def matched(chosen, library):
        table = sct.genesets.enrich(chosen, library, genes, min_set_size=3)
        table = table[table.List.astype(str) == "a"].reset_index(drop=True)
        return sct.genesets.matched_null_p(table, chosen, families, genes, library, n_null=100)
    _spelling._NULL_CACHE.clear()
    alone = matched({"a": lists["a"]}, {"hallmark": sets})
    assert len(alone) >= 5 and len(_spelling._NULL_CACHE) == 1
    both = matched(lists, {"hallmark": sets})  # its own null stream, and read back from the cache
    pd.testing.assert_series_equal(alone, both)
    assert len(_spelling._NULL_CACHE) == 2  # b's structure was drawn, a's was not drawn again
    _spelling._NULL_CACHE.clear()
    pd.testing.assert_series_equal(alone, matched(lists, {"hallmark": sets}))  # drawn again: the same
    # other sets under the same library name are another null, not the cached one
    fewer = {"hallmark": dict(list(sets.items())[:10])}
    matched({"a": lists["a"]}, fewer)
    assert len(_spelling._NULL_CACHE) == 3


def test_matched_lists_keep_the_structure(pbmc_template):
    genes = [g.upper() for g in pbmc_template.var_names]
    families = sct.genesets.name_families(genes)
    drawn = sct.genesets.matched_lists((20, (5, 2)), families, 30, np.random.default_rng(0))
    for genes_drawn in drawn:
        counts = sorted(pd.Series([families[g] for g in genes_drawn]).value_counts().tolist(), reverse=True)
        assert len(genes_drawn) == 20 and counts[:3] == [5, 2, 1]
    with pytest.raises(ValueError, match="No unused family"):
        sct.genesets.matched_lists((60, (50,)), families, 1, np.random.default_rng(0))


def test_headlines_collapse_prefer_curated_and_flag_families():
    genes = "HLA-DRA;HLA-DPB1;HLA-DQA1;CD74"
    table = pd.DataFrame({
        "List": ["Dendritic"] * 4 + ["B"],
        "Gene_set": ["wikipathways", "reactome", "go_bp", "hallmark", "reactome"],
        "Term": ["WP_EBOLA_VIRUS_INFECTION_IN_HOST", "REACTOME_MHC_CLASS_II_ANTIGEN_PRESENTATION",
                 "antigen processing and presentation (GO:0019882)", "HALLMARK_HYPOXIA", "REACTOME_X"],
        "Overlap": ["4/20", "4/12", "3/15", "3/40", "2/9"],
        "P-value": [1e-7, 1e-6, 1e-5, 1e-4, 1e-3], "Adjusted P-value": [1e-5, 1e-4, 1e-3, 0.01, 0.2],
        "Odds Ratio": [40.0, 60.0, 30.0, 8.0, 5.0],
        "Genes": [genes, genes, "HLA-DRA;HLA-DPB1;HLA-DQA1", "VEGFA;LDHA;PGK1", "A;B"]})
    families = sct.genesets.name_families(["HLA-DRA", "HLA-DPB1", "HLA-DQA1", "CD74", "VEGFA", "LDHA", "PGK1"])
    heads = sct.tl.headline_sets(table, families=families)
    assert list(heads.List) == ["Dendritic", "Dendritic"]  # B's set failed the FDR
    first = heads.iloc[0]
    # the same genes reach the virus set and MHC class II: one entry, named after the curated pathway
    assert first.Headline == "MHC class II antigen presentation" and first.Gene_set == "reactome"
    assert "EBOLA" in first.Also.upper() and "antigen processing" in first.Also
    assert heads.iloc[1].Headline == "Hypoxia"
    # an overlap that is all one name family is flagged and ranked after the others
    only_hla = table.iloc[[2, 3]].assign(List="Dendritic")
    flagged = sct.tl.headline_sets(only_hla, families=families)
    assert flagged.iloc[-1]["One family"] == "HLA-D" and flagged.iloc[0].Headline == "Hypoxia"
    assert sct.tl.is_disease_term("WP_EBOLA_VIRUS_INFECTION_IN_HOST") and not sct.tl.is_disease_term("HALLMARK_HYPOXIA")
    # two shared genes of a three-gene marker set pass the FDR but do not name a cell type: ranked after, flagged
    pair = table.iloc[[3, 4]].assign(List="T reg", Overlap=["3/40", "2/3"], **{"Adjusted P-value": [0.03, 0.01]})
    heads = sct.tl.headline_sets(pair, families=families)
    assert list(heads["Few genes"]) == [False, True] and heads.iloc[0].Headline == "Hypoxia"


def test_family_names_do_not_depend_on_the_run():
    """A family whose stem and leading token are shared by as many genes gets the same (longer) name in every run,
    whatever the interpreter's string hashing."""
    import subprocess
    import sys

    code = ("import sctranscoder as sct; genes = ['HLA-DRA', 'HLA-DPB1', 'HLA-DQA1', 'RPL3', 'RPL4'];"
            "print(sorted(set(sct.genesets.name_families(genes, {g: g[:3] for g in genes}))))")
    names = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                            capture_output=True, text=True, check=True).stdout for seed in range(6)}
    assert names == {"['HLA-D', 'RPL']\n"}
