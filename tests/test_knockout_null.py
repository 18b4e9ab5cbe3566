"""Knockouts against their own null: random genes knocked out at the same sentence positions, in the same cells."""

import re

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import sctranscoder as sct
from sctranscoder.tl._knockout_null import null_test, plan_null

# -- the null's draws -------------------------------------------------------------------------------------------


def test_null_genes_sit_at_the_nearest_free_positions_and_are_never_tested():
    rng = np.random.default_rng(0)
    sentences = [rng.permutation(300)[:60] for _ in range(5)]
    tested = [np.array([sentences[0][0], sentences[0][30], sentences[0][31], sentences[0][59], 299, 7])] * 5
    n_draws = 3
    plans = plan_null(sentences, tested, n_draws, seed=1)
    checked = 0
    for sentence, own, plan in zip(sentences, tested, plans):
        assert set(plan) == set(own) & set(sentence.tolist())  # each tested gene in the sentence, no other
        free = np.flatnonzero(~np.isin(sentence, own))
        for gene, drawn in plan.items():
            rank = int(np.flatnonzero(sentence == gene)[0])
            assert len(drawn) == n_draws and len(set(drawn.tolist())) == n_draws
            assert not np.isin(drawn, own).any()  # never a tested gene
            positions = np.array([int(np.flatnonzero(sentence == h)[0]) for h in drawn])
            # within the 2 * n_draws free positions nearest the gene's own (the farthest of them may tie)
            limit = np.sort(np.abs(free - rank))[2 * n_draws - 1]
            assert (np.abs(positions - rank) <= limit).all()
            checked += 1
    assert checked >= 5
    # the top gene's null comes from the top of the sentence, the last gene's from its end
    top = plans[0][int(sentences[0][0])]
    assert max(int(np.flatnonzero(sentences[0] == h)[0]) for h in top) <= 2 * n_draws
    last = plans[0][int(sentences[0][59])]
    assert min(int(np.flatnonzero(sentences[0] == h)[0]) for h in last) >= 59 - 2 * n_draws - 1


def test_every_gene_mode_draws_other_genes_nearby():
    sentence = np.arange(100, 140)
    plans = plan_null([sentence], None, 4, seed=0, every_gene=True)
    assert set(plans[0]) == set(sentence.tolist())
    for gene, drawn in plans[0].items():
        assert gene not in drawn.tolist() and np.abs(drawn - gene).max() <= 8  # positions are gene - 100 here


def test_the_draws_are_seeded():
    rng = np.random.default_rng(3)
    sentences = [rng.permutation(500)[:200] for _ in range(4)]
    tested = [sentences[0][[5, 50, 120]]] * 4
    first, again = plan_null(sentences, tested, 4, 7), plan_null(sentences, tested, 4, 7)
    other = plan_null(sentences, tested, 4, 8)
    same = all(np.array_equal(a[g], b[g]) for a, b in zip(first, again) for g in a)
    differs = any(not np.array_equal(a[g], b[g]) for a, b in zip(first, other) for g in a)
    assert same and differs
    with pytest.raises(ValueError, match="at least 2 random knockouts"):
        plan_null(sentences, tested, 1, 0)


# -- the per-gene test ------------------------------------------------------------------------------------------


def _effects(n_cells, effect_of, n_draws=4, seed=0):
    """Per cell: the tested genes' effects (``effect_of[gene]`` plus the rank shift) and their null draws (the
    rank shift alone: every knockout moves the call by a rank-dependent amount plus noise)."""
    rng = np.random.default_rng(seed)
    real, null = [], []
    for c in range(n_cells):
        for g, (planted, rank) in effect_of.items():
            shift = 0.2 / (1 + rank)  # removing a gene high in the sentence moves more genes
            real.append({"cell": f"c{c}", "gene": g, "rank": rank, "effect": planted + shift + rng.normal(0, 0.02)})
            null += [{"cell": f"c{c}", "gene": g, "effect": shift + rng.normal(0, 0.02)} for _ in range(n_draws)]
    return pd.DataFrame(real), pd.DataFrame(null)


def test_a_planted_effect_passes_its_null_and_a_rank_shift_does_not():
    genes = {"PLANTED": (0.05, 10), "TOP_NEUTRAL": (0.0, 1), **{f"N{i}": (0.0, 3 + i) for i in range(8)}}
    real, null = _effects(12, genes)
    table = null_test(real, null).set_index("gene")
    assert table.loc["PLANTED", "passes"] and table.loc["PLANTED", "fdr"] < 0.05
    # the neutral gene at the top moves the call more than the planted gene does, yet only by its rank
    assert table.loc["TOP_NEUTRAL", "effect"] > table.loc["PLANTED", "effect"]
    assert not table.drop(index="PLANTED").passes.any()
    row = table.loc["PLANTED"]
    assert row.n_cells == 12 and row.ci_low < row.effect < row.ci_high and row.z > 3
    # the null's spread is that of a mean over 12 cells of one random draw each
    assert row.null_sd == pytest.approx(0.02 / np.sqrt(12), rel=0.4)


def test_too_few_cells_cannot_pass_and_one_cell_has_no_interval():
    real, null = _effects(2, {"PLANTED": (1.0, 5)})
    table = null_test(real, null, min_cells=3)
    assert table.fdr.iloc[0] < 0.05 and not table.passes.iloc[0]  # clear of the null, but in 2 cells only
    one = null_test(*_effects(1, {"PLANTED": (1.0, 5)}), min_cells=1)
    assert np.isnan(one.ci_low.iloc[0]) and np.isnan(one.ci_high.iloc[0])
    with pytest.raises(ValueError, match="max_fdr"):
        null_test(real, null, max_fdr=0)


# -- knockout_test end to end, with a scoring function whose answer we know --------------------------------------

PLANTED, FIRST = "PLANTED", None


def _sentence_of(text: str) -> list[str]:
    return re.search(r"Cell sentence: (.*)\.\nThe cell type", text, re.S).group(1).split(" ")


@pytest.fixture(scope="module")
def planted_scoring():
    """The default model's tokenizer and prompts on pbmc68k cells, scored by a known function: the first
    candidate's score is a rank-weighted sum of fixed random per-gene values (so removing any gene moves it),
    plus ``+1`` when the planted gene is in the sentence. The planted and the neutral genes' own values are 0."""
    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()[:40].copy()
    encoded = sct.tl.encode_cells(adata, model, progress=False)
    names = np.asarray(encoded.genes, dtype=object)
    counts = pd.Series([str(names[g]) for s in encoded.span_ids[:12] for g in s]).value_counts()
    common = sorted(counts[counts >= 9].index.tolist())  # in at least 9 of the first 12 cells' sentences
    assert len(common) >= 6
    planted, neutral = common[0], common[1:6]
    values = dict(zip(names.tolist(), np.random.default_rng(0).normal(0, 1, names.size)))
    for gene in [planted, *neutral]:  # their own value is nothing: they move the score only by moving others
        values[gene] = 0.0

    def score(model_, prompts, candidates, *, batch_size=32, progress=True):
        out = np.zeros((len(prompts), len(candidates)))
        for i, ids in enumerate(prompts):
            genes = _sentence_of(model.tokenizer.decode(ids))
            weights = 0.02 / (1 + np.arange(len(genes)) / 20)
            out[i, 0] = float(weights @ np.array([values.get(g, 0.0) for g in genes])) + 1.0 * (planted in genes)
        return out

    return model, adata, encoded, planted, neutral, score


def _score_with(monkeypatch, score):
    """Knockouts scored by ``score`` (each prompt whole, one pass per cell) instead of the model."""
    monkeypatch.setattr(sct.models, "score_variants", lambda model_, base, variants, candidates, *, batch_size=64:
                        (score(model_, [base, *variants], candidates), 1))


def test_knockout_test_finds_the_planted_gene_and_not_the_neutral_ones(planted_scoring, monkeypatch):
    model, adata, encoded, planted, neutral, score = planted_scoring
    _score_with(monkeypatch, score)
    label = model.labels[0]
    cells = np.arange(12)
    table = sct.tl.knockout_test(adata, model, [planted, *neutral], cells=cells, label=label, encoded=encoded,
                                 progress=False).set_index("gene")
    assert table.loc[planted, "passes"] and table.loc[planted, "n_cells"] >= 9
    assert len(neutral) == 5 and (table.loc[neutral, "n_cells"] >= 9).all()
    assert not table.loc[neutral, "passes"].any()
    assert (table.loc[neutral, "effect"].abs() > 0).all()  # the neutral knockouts do move the call: by rank
    assert table.attrs["n_cells"] == 12 and table.attrs["n_draws"] == 4 and table.attrs["message"] == ""
    again = sct.tl.knockout_test(adata, model, [planted, *neutral], cells=cells, label=label, encoded=encoded,
                                 progress=False).set_index("gene")
    pd.testing.assert_frame_equal(table, again)  # seeded
    other = sct.tl.knockout_test(adata, model, [planted, *neutral], cells=cells, label=label, encoded=encoded,
                                 seed=5, progress=False).set_index("gene")
    assert not np.allclose(other.loc[neutral, "null_mean"], table.loc[neutral, "null_mean"])
    # without the planted gene, nothing passes, and the result says so in words
    none = sct.tl.knockout_test(adata, model, neutral, cells=cells, label=label, encoded=encoded, progress=False)
    assert not none.passes.any()
    assert none.attrs["message"] == ("No gene's knockout moved the call more than knocking out a random gene at the "
                                     "same rank in these 12 cells.")


def test_the_null_is_scored_in_the_same_passes_rank_matched_and_untested(planted_scoring, monkeypatch):
    from sctranscoder.tl._knockout_vs_null import score_with_null

    model, adata, encoded, planted, neutral, score = planted_scoring
    _score_with(monkeypatch, score)
    names = np.asarray(encoded.genes, dtype=object)
    lookup = {str(n): i for i, n in enumerate(names)}
    tested = np.array([lookup[g] for g in [planted, *neutral]])
    rows = np.arange(6)
    sub = encoded.subset(rows)
    table, result, draws = score_with_null(adata, model, rows, sub, tested, model.labels[0], model.labels,
                                           n_draws=4, seed=0, progress=False)
    assert set(table.gene) == {planted, *neutral} and len(table) == 6 * 6  # only the tested genes come back
    assert len(draws) == 4 * table.in_sentence.sum()  # 4 draws for each tested gene in each sentence
    assert not draws.null_gene.isin([planted, *neutral]).any()
    ranks = table.set_index(["cell", "gene"])["rank"]
    gap = np.abs(draws.null_rank.to_numpy() - ranks.loc[list(zip(draws.cell, draws.gene))].to_numpy())
    assert gap.max() <= 2 * 4 + len(tested)  # the nearest free positions
    per_cell = draws.groupby("cell").null_gene.nunique()
    # each cell's prompt, its tested genes that change its sentence, and its null genes
    assert table.attrs["n_prompts"] == 6 + table.changed.sum() + per_cell.sum()
    assert table.attrs["n_passes"] == 6  # one batched pass per cell, the null included


def test_bad_input_is_refused_or_warned(planted_scoring, monkeypatch):
    model, adata, encoded, planted, neutral, score = planted_scoring
    _score_with(monkeypatch, score)
    label = model.labels[0]
    with pytest.raises(ValueError, match="at least 2 cells for an interval"):
        sct.tl.knockout_test(adata, model, [planted], cells=[0], label=label, encoded=encoded, progress=False)
    with pytest.warns(UserWarning, match="fewer than min_cells=3, so no gene can pass"):
        two = sct.tl.knockout_test(adata, model, [planted], cells=[0, 1], label=label, encoded=encoded,
                                   progress=False)
    assert not two.passes.any()
    with pytest.raises(ValueError, match="at least 2 random knockouts"):
        sct.tl.knockout_test(adata, model, [planted], cells=[0, 1, 2], label=label, n_draws=1, encoded=encoded,
                             progress=False)
    with pytest.raises(ValueError, match="label='all'"):
        sct.tl.knockout_test(adata, model, [planted], cells=[0, 1, 2], label="all", encoded=encoded, progress=False)


# -- what circuits, the CLI and the report make of it ------------------------------------------------------------


def _circuit(passes):
    genes = pd.DataFrame({"gene": ["A", "B", "C"], "attribution": [0.3, 0.2, 0.1]})
    measured = pd.DataFrame({"gene": ["B", "C", "A"], "knockout_effect": [0.3, 0.2, 0.1],
                             "effect": [0.5, 0.4, 0.2], "ci_low": [0.1, 0.0, -0.1], "ci_high": [0.9, 0.8, 0.5],
                             "null_mean": [0.0, 0.0, 0.0], "null_sd": [0.1, 0.1, 0.1], "z": [5.0, 4.0, 2.0],
                             "p_value": [1e-6, 1e-4, 0.03], "fdr": [3e-6, 1.5e-4, 0.03], "passes": passes,
                             "n_cells": [8, 8, 8], "features": ["", "", ""]})
    validation = {"genes_by_knockout": measured, "n_cells": 2, "n_cells_knockout": 8, "max_fdr": 0.05,
                  "min_cells": 3, "n_passing": int(sum(passes)),
                  "message": "" if any(passes) else ("No gene's knockout moved P(T) more than knocking out a random "
                                                     "gene at the same rank in these 8 cells.")}
    return sct.tl.CellTypeCircuit("T", nx.DiGraph(), genes, [], [], {}, validation=validation,
                                  genes_by_knockout=measured)


def test_only_passing_genes_are_measured_and_none_passing_is_said():
    from sctranscoder.cli._commands import genes_line

    some = _circuit([True, False, True])
    assert some.input_genes() == {"T": ["B", "A"]}  # passing only, strongest effect first
    line = genes_line(some)
    assert "measured, beyond random genes at the same rank, 8 cells) B, A;" in line
    html = sct.report.render_html(sct.report.ReportContent(cell_types=[
        sct.report.CellTypeSection("T", input_genes=some.genes, validation=some.validation)]))
    assert "2 of 3 tested, in 8 cells" in html and "This is the list to read genes from" not in html
    none = _circuit([False, False, False])
    assert none.input_genes() == {"T": ["A", "B", "C"]}  # nothing measured: the attributed genes, named so
    assert genes_line(none).startswith("No gene's knockout moved P(T) more than knocking out a random gene at the "
                                       "same rank in these 8 cells.")
    html = sct.report.render_html(sct.report.ReportContent(cell_types=[
        sct.report.CellTypeSection("T", input_genes=none.genes, validation=none.validation)]))
    assert "No gene&#x27;s knockout moved P(T) more than knocking out a random gene" in html
    assert "0 of 3 tested, in 8 cells" in html


@pytest.mark.parametrize("option,value,said", [("knockout_draws", 1, "--knockout-draws 1 must be 0"),
                                               ("knockout_fdr", 0.0, "--knockout-fdr 0.0 must be in"),
                                               ("knockout_cells", 0, "--knockout-cells 0 must be at least 1")])
def test_cli_refuses_a_null_it_cannot_run(option, value, said):
    from types import SimpleNamespace

    from sctranscoder.cli._commands import UsageError, run_circuits

    args = SimpleNamespace(cell_types="A", validate_cells=None, knockout_draws=4, knockout_fdr=0.05,
                           knockout_cells=20, knockout_genes="top")
    setattr(args, option, value)
    with pytest.raises(UsageError, match=re.escape(said)):
        run_circuits(None, SimpleNamespace(labels=["A", "B"]), {}, args, "cell_type")
