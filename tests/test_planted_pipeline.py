"""The planted-program benchmark's pipeline, end to end, on a small atlas: every stage runs with the
controls beside it, and its table says what it found (the full benchmark, thousands of cells, stays out of CI)."""

import sys
from pathlib import Path

import pytest

import sctranscoder as sct

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import planted_programs  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    return planted_programs.run_seed(300, 0, out, untrained=False, eval_cells=60, circuit_cells=2,
                                     cell_types=["type 1"], train_config=sct.models.TrainConfig(epochs=12),
                                     transcoder_settings={"d_hidden": 256, "auto_steps": 150},
                                     gene_scores=("contrast", "activity"), n_null=100)


def test_the_model_learns_the_planted_types(result):
    assert result["held-out accuracy"] >= 0.6  # 5 types: chance is 0.2
    assert 0 < result["regression"] <= 1


def test_every_layer_has_its_controls_under_both_gene_rankings(result):
    for score in ("contrast", "activity"):
        controls = result["controls"][score]
        assert set(controls.side) == {"trained", "random_directions", "untrained_model"}
        ran = controls[controls.side != "untrained_model"]
        assert (ran.n_features > 0).all() and ran.fraction_enriched.between(0, 1).all()
        assert controls[controls.side == "untrained_model"].note.str.contains("skipped").all()
        assert set(result["recovered"][score]) == set(result["program kind"])


def test_the_circuit_row_and_the_summary_name_the_goals(result):
    circuits = result["circuits"]
    assert circuits["cell type"].tolist() == ["type 1"]
    assert {"measured genes", "own program FDR", "own program expression-matched p",
            "other type programs at FDR < 0.01", "state programs at FDR < 0.05"} <= set(circuits)
    lines = "\n".join(planted_programs.summary_lines(result))
    assert "genes ranked by contrast" in lines and "genes ranked by activity" in lines and "goal" in lines
    overlap = result["best overlap"]
    assert list(overlap.columns) == ["random_directions", "trained"] and set(overlap.index) == set(result["program kind"])
    assert overlap.to_numpy().max() <= 25 and overlap.trained.max() >= 3  # a learned model: some feature reads a program
