import matplotlib

matplotlib.use("Agg")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import sctranscoder as sct  # noqa: E402


@pytest.fixture(scope="module")
def table(pbmc_template):
    background = [g.upper() for g in pbmc_template.raw.var_names]
    markers = sct.genesets.load("immune_markers")
    lists = {"mono": [g for g in markers["CD14+ Monocyte"] + markers["CD16+ Monocyte"] if g in background],
             "B": [g for g in markers["B cell"] if g in background] + background[:5]}
    return sct.genesets.enrich(lists, ["immune_markers", "hallmark"], background)


def test_enrichment_dotplot(table, tmp_path):
    ax = sct.pl.enrichment(table, n_terms=3, show=False)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) <= 6 and any("B cell" in t for t in labels)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mono", "B"]
    points = ax.collections[0]
    shown = table.assign(label=table.Gene_set.astype(str) + ": " + table.Term.astype(str))
    shown = shown[shown.label.isin(labels)]
    assert len(points.get_offsets()) == len(shown)
    ratio = shown.Overlap.astype(str).str.split("/", expand=True).astype(float)
    ratio = (ratio[0] / ratio[1]).to_numpy()
    np.testing.assert_allclose(points.get_sizes() / points.get_sizes().max(), ratio / ratio.max())
    np.testing.assert_allclose(points.get_array(), -np.log10(shown["Adjusted P-value"]))
    named = sct.pl.enrichment(table, n_terms=3, term_names=sct.tl.short_term, show=False)
    plain = [t.get_text() for t in named.get_yticklabels()]
    assert any(t.startswith("hallmark: ") for t in plain) and not any("HALLMARK_" in t for t in plain)
    sct.pl.enrichment(table, size="-log10 p", max_fdr=0.5, save=tmp_path / "dots.png")
    assert (tmp_path / "dots.png").stat().st_size > 2000
    # gseapy's own table (no List column) draws too
    import gseapy

    res2d = gseapy.enrich(list(table.Genes.iloc[0].split(";")) + ["CD14", "LYZ"], gene_sets=sct.genesets.load("hallmark"),
                          background=list(pd.unique(table.Genes.str.split(";").explode())) + ["CD14", "LYZ"],
                          no_plot=True).res2d
    ax = sct.pl.enrichment(res2d, n_terms=4, show=False)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["genes"] and len(ax.collections[0].get_offsets()) == 4
    with pytest.raises(ValueError, match="No enrichment rows"):
        sct.pl.enrichment(table, max_fdr=0.0, show=False)
    with pytest.raises(KeyError, match="columns"):
        sct.pl.enrichment(pd.DataFrame({"Term": ["x"]}), show=False)


def test_feature_genes_plot(tmp_path):
    rng = np.random.default_rng(0)
    adata = ad.AnnData(np.zeros((30, 5), np.float32))
    adata.obs["cell_type"] = ["a"] * 15 + ["b"] * 15
    adata.obsm["features"] = np.abs(rng.normal(size=(30, 8))).astype(np.float32)
    adata.obsm["features"][15:, 2] = 0
    genes = [f"G{i}" for i in range(12)]
    adata.uns["features"] = {"genes": genes, "gene_activity": np.abs(rng.normal(size=(12, 8))),
                             "gene_occurrences": np.full(12, 5)}
    table = sct.tl.feature_genes(adata, [2, 5, 6], n_top=4, label_key="cell_type")
    axes = sct.pl.feature_genes(table, n_top=4, show=False)
    assert len(axes) == 3
    activity = adata.uns["features"]["gene_activity"][:, 2]
    top = [genes[i] for i in np.argsort(-activity)[:4]]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == top[::-1]
    assert "a (AUROC" in axes[0].get_title()
    sct.pl.feature_genes(table, 5, save=tmp_path / "genes.png")
    assert (tmp_path / "genes.png").stat().st_size > 2000
