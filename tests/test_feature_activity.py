import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import sctranscoder as sct

N_CELLS, N_GENES, LAYER = 24, 40, 1


@pytest.fixture(scope="module")
def setup(pbmc_template):
    """The default model on a few cells, a data-initialized TopK transcoder, and a reference harvest."""
    torch.manual_seed(0)
    model = sct.models.default()
    adata = pbmc_template[:: pbmc_template.n_obs // N_CELLS][:N_CELLS].copy()
    store = sct.tl.harvest(adata, model, [LAYER], None, n_genes=N_GENES, dtype="float32", only_genes=True,
                           progress=False)
    x, y = store.read(LAYER)
    transcoder = sct.tc.Transcoder(sct.tc.TranscoderConfig(d_in=128, d_out=128, d_hidden=256, activation="topk",
                                                           k=8))
    transcoder.init_from_data(x, y)
    transcoder.eval()
    with torch.no_grad():
        acts = transcoder.encode(x).numpy()
    # small passes and encode batches, so that cells and gene occurrences straddle their boundaries
    sct.tl.feature_activity(adata, model, {LAYER: transcoder}, n_genes=N_GENES, cells_per_pass=10,
                            rows_per_encode=97, progress=False)
    return model, adata, store.metadata(), acts, transcoder


def test_cell_and_gene_activity_equal_a_direct_computation(setup):
    model, adata, meta, acts, _ = setup
    cells = adata.obsm["features"]
    assert cells.shape == (N_CELLS, 256)
    for cell in range(N_CELLS):  # float32 products over other batch shapes: equal to rounding, not bit for bit
        np.testing.assert_allclose(cells[cell], acts[meta["document"] == cell].max(0), rtol=1e-5, atol=1e-6)
    info = adata.uns["features"]
    occurrences = pd.DataFrame({"doc": meta["document"], "gene": meta["gene"]}).groupby(["doc", "gene"]).indices
    total = np.zeros((len(info["genes"]), 256))
    count = np.zeros(len(info["genes"]))
    for rows in occurrences.values():
        gene = meta["gene_id"][rows[0]]
        total[gene] += acts[rows].max(0)  # an occurrence: max over the gene's tokens
        count[gene] += 1
    np.testing.assert_array_equal(info["gene_occurrences"], count)
    np.testing.assert_allclose(info["gene_activity"], total / np.maximum(count, 1)[:, None], rtol=1e-5, atol=1e-6)
    assert count.sum() == N_CELLS * N_GENES  # every gene of every sentence counted once
    # contrast: each occurrence minus the mean over its cell's gene occurrences, averaged per gene
    contrast = np.zeros_like(total)
    per_cell = {}
    for (doc, _), rows in occurrences.items():
        per_cell.setdefault(doc, []).append(acts[rows].max(0))
    for (doc, _), rows in occurrences.items():
        contrast[meta["gene_id"][rows[0]]] += acts[rows].max(0) - np.mean(per_cell[doc], axis=0)
    np.testing.assert_allclose(info["gene_contrast"], contrast / np.maximum(count, 1)[:, None], rtol=1e-4,
                               atol=1e-5)


def test_contrast_ranks_what_a_feature_reads_not_which_cells_it_sits_in():
    """A feature on in every position of some cells (context) and a little higher on one gene: plain activity
    ranks those cells' genes, the contrast ranks the gene."""
    from sctranscoder.tc import ActivityPool

    class Identity:
        device = "cpu"

        def encode(self, x):
            return x

    # 2 cells x 3 genes, one token each: cell 0 carries context 5 on every gene; gene 2 reads +1 in both cells
    document = torch.tensor([0, 0, 0, 1, 1, 1])
    gene_id = torch.tensor([0, 1, 2, 3, 4, 2])
    activity = torch.tensor([[5.0], [5.0], [6.0], [0.0], [0.0], [1.0]])
    pool = ActivityPool(2, 5, 1)
    pool.add(Identity(), activity, document, torch.tensor([0, 1, 2, 0, 1, 2]), gene_id, max_spans=3)
    plain, contrast = pool.names()[:, 0], pool.name_contrast()[:, 0]
    assert plain[0] == plain[1] == 5.0 > plain[2] == 3.5  # plain activity puts cell 0's genes first
    assert np.argmax(contrast) == 2 and contrast[2] == pytest.approx(2 / 3)
    assert contrast[0] == pytest.approx(-1 / 3) and contrast[3] == pytest.approx(-1 / 3)


def test_mean_pooling_over_every_prompt_token(setup):
    model, adata, _, _, transcoder = setup
    result = sct.tl.feature_activity(adata, model, {LAYER: transcoder}, pool="mean", tokens="all", n_genes=N_GENES,
                                     progress=False, inplace=False)
    store = sct.tl.harvest(adata, model, [LAYER], None, n_genes=N_GENES, dtype="float32", progress=False)
    meta = store.metadata()
    with torch.no_grad():
        acts = transcoder.encode(store.read(LAYER)[0]).numpy()
    for cell in (0, 7, N_CELLS - 1):
        np.testing.assert_allclose(result["cells"][cell], acts[meta["document"] == cell].mean(0), rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_array_equal(result["uns"]["cell_tokens"], np.bincount(meta["document"]))
    # per-gene activity reads gene tokens only, whichever tokens the cells pool
    np.testing.assert_allclose(result["uns"]["gene_activity"], adata.uns["features"]["gene_activity"], rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="pool"):
        sct.tl.feature_activity(adata, model, {LAYER: transcoder}, pool="median")


def test_visible_genes_are_the_sentence_genes(setup):
    model, adata, meta, _, _ = setup
    visible = sct.tl.visible_genes(adata, model, n_genes=N_GENES)
    genes = np.asarray(adata.uns["features"]["genes"])
    assert set(visible) == set(genes[np.unique(meta["gene_id"])])
    assert set(sct.tl.feature_background(adata)) == set(visible)


def test_feature_genes_and_specificity(setup):
    _, adata, _, _, _ = setup
    info = adata.uns["features"]
    table = sct.tl.feature_genes(adata, n_top=5, min_occurrences=2, label_key="bulk_labels")
    assert set(table.index) == set(sct.tl.alive_features(adata))
    counts = np.asarray(info["gene_occurrences"])
    for feature, row in table.head(20).iterrows():
        scores = np.where(counts >= 2, info["gene_activity"][:, feature], 0)
        expected = np.asarray(info["genes"])[np.argsort(-scores, kind="stable")[:5]]
        assert row.genes == [g for g in expected if scores[list(info["genes"]).index(g)] > 0]
        assert row.gene_scores == sorted(row.gene_scores, reverse=True)
    loose = sct.tl.feature_genes(adata, n_top=None, threshold=0.5, min_occurrences=1)
    for feature, row in loose.head(10).iterrows():
        assert min(row.gene_scores) >= 0.5 * row.gene_scores[0]

    spec = sct.tl.feature_specificity(adata, "bulk_labels", features=[0, 5, 9])
    labels = adata.obs.bulk_labels.astype(str).to_numpy()
    values = adata.obsm["features"]
    for _, row in spec.iterrows():
        inside = labels == row.label
        v = values[:, row.feature].astype(np.float64)
        if np.ptp(v) > 0:
            assert row.auroc == pytest.approx(roc_auc_score(inside, v))
        pooled = np.sqrt(((inside.sum() - 1) * v[inside].var(ddof=1) + ((~inside).sum() - 1) * v[~inside].var(ddof=1))
                         / (len(v) - 2)) if inside.sum() > 1 else None
        if pooled:
            assert row.cohens_d == pytest.approx((v[inside].mean() - v[~inside].mean()) / pooled)
    best = spec.loc[spec.groupby("feature").auroc.idxmax()].set_index("feature")
    assert table.loc[5, "top_label"] == best.loc[5, "label"]


def test_features_to_obs_for_scanpy_plots(setup):
    _, adata, _, _, _ = setup
    columns = sct.tl.features_to_obs(adata, [3, 7])
    assert columns == ["feature_3", "feature_7"]
    np.testing.assert_array_equal(adata.obs["feature_7"], adata.obsm["features"][:, 7])
    with pytest.raises(IndexError, match="out of range"):
        sct.tl.features_to_obs(adata, [10_000])
    with pytest.raises(KeyError, match="feature_activity"):
        sct.tl.feature_genes(adata, key="nothing")


def test_enrich_features_and_circuit(setup):
    model, adata, _, _, _ = setup
    table = sct.tl.enrich_features(adata, ["hallmark", "immune_markers"], n_top=10, min_occurrences=1)
    assert set(table.List.astype(str)) <= {str(f) for f in sct.tl.alive_features(adata)}
    # the same as calling the core with the same lists and background
    lists = {str(f): g for f, g in sct.tl.feature_genes(adata, n_top=10, min_occurrences=1).genes.items() if g}
    core = sct.genesets.enrich(lists, ["hallmark", "immune_markers"], sct.tl.feature_background(adata),
                               min_set_size=3, fdr_over="tested")
    pd.testing.assert_frame_equal(table, core)
    fraction = sct.tl.enriched_fraction(table, len(lists))
    assert fraction == table.loc[table["Adjusted P-value"] <= 0.05, "List"].nunique() / len(lists)

    markers = sct.genesets.load("immune_markers")
    visible = sct.tl.visible_genes(adata, model)
    circuit = {"CD14+ Monocyte": [g for g in markers["CD14+ Monocyte"] + markers["CD16+ Monocyte"] if g in visible],
               "CD19+ B": pd.Series({g: float(i) for i, g in enumerate(reversed(markers["B cell"]))})}
    result = sct.tl.enrich_circuit(circuit, "immune_markers", adata=adata, model=model, min_set_size=1)
    top = result.sort_values("P-value").groupby("List", observed=True).Term.first().astype(str)
    assert top["CD19+ B"] == "B cell"
    assert top["CD14+ Monocyte"] in {"CD14+ Monocyte", "CD16+ Monocyte"}
    with pytest.raises(ValueError, match="background"):
        sct.tl.enrich_circuit(circuit, "immune_markers")
    with pytest.raises(TypeError, match="input genes"):
        sct.tl.enrich_circuit(42, "immune_markers", background=visible)
