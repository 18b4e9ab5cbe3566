"""Cell-type circuits on the default C2S model: answer contrasts, merged graphs, gene rankings, de-embedding."""

import numpy as np
import pytest
import torch

import sctranscoder as sct
from sctranscoder.tc import Transcoder, TranscoderConfig


def test_answer_contrast_splits_shared_prefixes():
    answers = {"CD4+ naive": [1, 2, 3, 9], "CD4+ memory": [1, 2, 4, 9], "B": [5, 9], "NK": [6, 9]}
    assert sct.tl.answer_contrast(answers, "CD4+ naive") == ([1, 2], 3, [4])
    assert sct.tl.answer_contrast(answers, "B") == ([], 5, [1, 6])
    with pytest.raises(ValueError, match="prefix of another"):
        sct.tl.answer_contrast({"T": [1, 9], "T reg": [1, 9, 3]}, "T")


@pytest.fixture(scope="module")
def default_setup():
    model = sct.models.default()
    d = model.model.config.hidden_size
    cells = sct.datasets.pbmc68k_reduced()
    transcoders = {}
    for layer in range(3):
        tc = Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=128, activation="topk", k=8, seed=layer)).eval()
        transcoders[layer] = tc
    return model, cells, transcoders


def test_cell_type_circuit_ranks_genes_of_the_traced_cells(default_setup):
    model, adata, transcoders = default_setup
    adata = adata.copy()
    result = sct.tl.cell_type_circuit(adata, model, transcoders, "CD19+ B", n_cells=2, max_nodes=6, method="greedy",
                                      target="contrast", check_faithfulness=True, progress=False)
    assert len(result.graphs) == 2 and result.cells == list(result.cells)
    assert result.target["token"] and result.target["rivals"]
    sentences = sct.get.sentences(adata[result.cells], n_genes=model.metadata["n_genes"])
    seen = set(" ".join(sentences).split())
    assert len(result.genes) > 0 and set(result.genes.gene) <= seen
    assert result.genes.attribution.is_monotonic_decreasing
    assert result.graph.graph["n_graphs"] == 2 and "output" in result.graph
    # every traced graph reproduces the model's target value
    assert all(np.isfinite(g.graph["value"]) for g in result.graphs)
    assert set(result.faithfulness.columns) >= {"correlation", "circuit_fraction"}
    stored = adata.uns["circuits"]["CD19+ B"]
    assert list(stored["genes"]) == result.genes.gene.tolist()


def test_cell_type_circuit_refuses_unknown_labels(default_setup):
    model, adata, transcoders = default_setup
    with pytest.raises(ValueError, match="not among the candidate labels"):
        sct.tl.cell_type_circuit(adata.copy(), model, transcoders, "Neuron", progress=False)
    with pytest.raises(ValueError, match="not a column of adata.obs"):
        sct.tl.cell_type_circuit(adata.copy(), model, transcoders, "CD19+ B", label_key="donor", progress=False)


def test_gene_de_embedding(default_setup):
    model, adata, transcoders = default_setup
    genes = ["CD79A", "HLA-DRA", "MT-CO1", "LYZ"]
    tokens = sct.tl.gene_tokens(model.tokenizer, genes)
    assert all(model.tokenizer.decode(ids) == f" {g}" for g, ids in tokens.items())
    table = sct.tl.gene_de_embedding(model, transcoders, 1, genes)
    assert table.shape == (128, 4) and list(table.columns) == genes
    by_sum = sct.tl.gene_de_embedding(model, transcoders, 1, genes, aggregate="sum")
    single = [g for g, ids in tokens.items() if len(ids) == 1]
    for gene in single:  # one token: every aggregate is that token's score
        np.testing.assert_allclose(table[gene], by_sum[gene], rtol=1e-5)
    with torch.no_grad():
        assert np.isfinite(table.to_numpy()).all()


def test_complete_circuit_scores_the_call_as_predict_cell_types_does(default_setup):
    model, adata, transcoders = default_setup
    adata = adata[adata.obs.bulk_labels == "CD19+ B"][:2].copy()
    result = sct.tl.cell_type_circuit(adata, model, transcoders, "CD19+ B", n_cells=2, max_feature_nodes=48,
                                      max_supernodes=None, progress=False)  # supernodes: test_supernodes_*
    # the target is the call's log-odds against all candidates, as predict_cell_types scores it
    sct.tl.predict_cell_types(adata, model, progress=False)
    predicted = sct.get.prediction_probabilities(adata).loc[result.cells, "CD19+ B"].to_numpy()
    np.testing.assert_allclose(result.scores.probability, predicted, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(result.scores.value, np.log(predicted / (1 - predicted)), rtol=1e-3, atol=1e-3)
    assert result.target["kind"] == "logodds"
    # the older target, the first differing answer token against its rivals, calls the same cells the same way
    contrast = sct.tl.cell_type_circuit(adata, model, transcoders, "CD19+ B", n_cells=2, method="greedy",
                                        target="contrast", max_nodes=1, progress=False)
    assert list(contrast.cells) == list(result.cells)
    np.testing.assert_array_equal(np.sign(contrast.scores.value), np.sign(result.scores.value))
    np.testing.assert_array_equal(contrast.scores.value > 0, predicted > 0.5)
    # every graph carries circuit-tracer's scores, pruned and unpruned, and the input groups' shares
    for column in ("replacement", "completeness", "replacement_pruned", "completeness_pruned"):
        assert result.scores[column].between(0, 1).all()
        assert 0 < result.graph.graph[column] <= 1
    shares = result.scores[["share_gene", "share_template", "share_answer", "share_error", "share_unexpanded"]]
    np.testing.assert_allclose(shares.sum(1), 1.0, rtol=1e-4)
    # inputs are genes, the template and the answer prefix, each template/answer group one named node
    sections = {d.get("section") for _, d in result.graph.nodes(data=True) if d["kind"] == "input"}
    assert sections <= {"gene", "template", "answer"} and "gene" in sections
    names = {d["label"] for _, d in result.graph.nodes(data=True) if d["kind"] == "input"}
    assert not names & {":", " CD"}
    sentences = sct.get.sentences(adata[result.cells], n_genes=model.metadata["n_genes"])
    assert set(result.genes.gene) <= set(" ".join(sentences).split())
    assert len(result.exports) == 2 and result.exports[0]["nodes"]
    summary = result.summary()
    assert summary["replacement"] == pytest.approx(result.scores.replacement.mean())
    # each cell's circuit is grown until its features alone carry 80% of the call (or says it cannot), and
    # validate's measure, rerun on the circuit's features, gives the same share
    scores = result.scores
    reached = scores.feature_share_reached.astype(bool)
    assert (scores.feature_share[reached] >= 0.8).all() and (scores.n_circuit_features >= scores.n_features_pruned).all()
    assert (reached | (scores.feature_share == scores.feature_share_pruned)).all()
    assert ("cannot carry 80%" in result.message) == (not reached.all())
    from sctranscoder.models._scoring import answer_tokens
    from sctranscoder.tl._validate import feature_share

    encoded = sct.tl.encode_cells(adata[result.cells], model, progress=False)
    rerun = feature_share(model, transcoders, encoded.prompt_ids(), result.circuit_features, model.labels.index("CD19+ B"),
                          answer_tokens(model.tokenizer, model.labels))
    np.testing.assert_allclose(rerun, scores.feature_share, rtol=1e-4, atol=1e-5)
    drawn = [sum(d["kind"] == "feature" for _, d in g.nodes(data=True)) for g in result.graphs]
    assert (np.array(drawn) == scores.n_circuit_features - scores.n_features_over_budget).all()
    with pytest.raises(ValueError, match="min_feature_share"):
        sct.tl.cell_type_circuit(adata, model, transcoders, "CD19+ B", min_feature_share=1.5, progress=False)
    # the figure draws the gene table's genes, with horizontal labels, a legend for edges and a caption
    import matplotlib

    matplotlib.use("Agg")
    ax = sct.pl.circuit(result.graph, show=False)
    texts = {t.get_text() for t in ax.texts}
    assert set(result.genes[result.genes.attribution > 0].gene.head(3)) <= texts
    assert all(t.get_rotation() == 0 for t in ax.texts)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "edge raises its target" in legend and "edge lowers its target" in legend
    assert any("replacement score" in t.get_text() for t in ax.figure.texts)


def test_no_gene_says_so_in_words():
    import pandas as pd

    from sctranscoder.tl._circuits import no_gene_message

    empty = pd.DataFrame({"gene": ["A"], "attribution": [-0.2]})
    scores = pd.DataFrame({"share_template": [0.6], "share_answer": [0.3], "share_error": [0.1]})
    message = no_gene_message("T reg", empty, scores)
    assert "reaches no gene" in message and "60%" in message
    assert no_gene_message("B", pd.DataFrame({"gene": ["CD79A"], "attribution": [0.3]}), scores) == ""


def test_cells_short_of_the_share_are_named_in_words():
    import pandas as pd

    from sctranscoder.tl._circuits import short_of_share_message

    scores = pd.DataFrame({"feature_share_reached": [True, False], "feature_share_all": [float("nan"), 0.62],
                           "feature_share_pruned": [0.85, 0.3]})
    message = short_of_share_message(scores, 0.8)
    assert "In 1 of 2 cells" in message and "80%" in message and "62% at most" in message and "30%" in message
    assert short_of_share_message(scores.iloc[:1], 0.8) == "" and short_of_share_message(scores, None) == ""
    flat = scores.assign(feature_share_all=float("nan"))
    assert "does not move the label's log-odds" in short_of_share_message(flat, 0.8)


def test_a_circuit_traced_from_cells_encoded_with_answers_feeds_the_answer_once(default_setup):
    # an encoding made with label_key carries the answer after each prompt; the circuit must trace the prompt
    # and feed the label's answer itself, once, exactly as from cells it encodes itself
    model, adata, transcoders = default_setup
    adata = adata[adata.obs.bulk_labels == "CD19+ B"][:1].copy()
    options = dict(n_cells=1, method="greedy", max_nodes=2, progress=False)
    plain = sct.tl.cell_type_circuit(adata, model, transcoders, "CD19+ B", **options)
    encoded = sct.tl.encode_cells(adata, model, label_key="bulk_labels", progress=False)
    assert len(encoded.input_ids[0]) > encoded.prompt_lengths[0]  # answers appended
    with_answers = sct.tl.cell_type_circuit(adata, model, transcoders, "CD19+ B", encoded=encoded, **options)
    assert with_answers.scores.probability.tolist() == pytest.approx(plain.scores.probability.tolist(), rel=1e-5)
    assert with_answers.scores.value.tolist() == pytest.approx(plain.scores.value.tolist(), rel=1e-4, abs=1e-5)
    inputs = [sorted(d["label"] for _, d in r.graphs[0].nodes(data=True) if d["kind"] == "input")
              for r in (plain, with_answers)]
    assert inputs[0] == inputs[1]
