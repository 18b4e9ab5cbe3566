"""``sctranscoder train-model`` and ``sctranscoder predict``, end to end, and their errors."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from sctranscoder.cli import main

TINY = '{"hidden_size": 32, "layers": 1, "heads": 2}'


@pytest.fixture(scope="module")
def atlas(tmp_path_factory, pbmc_template):
    folder = tmp_path_factory.mktemp("atlas")
    pbmc = pbmc_template.copy()
    keep = np.concatenate([np.flatnonzero(pbmc.obs.bulk_labels == label)[:12]
                           for label in ["CD14+ Monocyte", "CD19+ B", "CD56+ NK"]])
    pbmc[np.sort(keep)].copy().write_h5ad(folder / "cells.h5ad")
    return folder


@pytest.fixture(scope="module")
def model_folder(atlas):
    out = atlas / "model"
    assert main(["train-model", str(atlas / "cells.h5ad"), "--label-key", "bulk_labels", "--out", str(out),
                 "--model-config", TINY, "--epochs", "2", "--n-genes", "20", "--seed", "1"]) == 0
    return out


def test_train_model_then_predict_to_csv_and_h5ad(atlas, model_folder, capsys):
    import sctranscoder as sct

    model = sct.models.load(model_folder)
    assert model.metadata["label_key"] == "bulk_labels" and model.metadata["n_genes"] == 20
    assert model.model.config.hidden_size == 32
    out = atlas / "predictions.csv"
    assert main(["predict", str(atlas / "cells.h5ad"), "--model", str(model_folder), "--out", str(out)]) == 0
    table = pd.read_csv(out, index_col="cell")
    cells = ad.read_h5ad(atlas / "cells.h5ad")
    assert list(table.index) == list(cells.obs_names)
    probabilities = table[[f"P({label})" for label in model.labels]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    assert (table.prediction == np.asarray(model.labels)[probabilities.argmax(axis=1)]).all()
    assert "agrees with adata.obs['bulk_labels']" in capsys.readouterr().out
    copy = atlas / "predicted.h5ad"
    assert main(["predict", str(atlas / "cells.h5ad"), "--model", str(model_folder), "--out", str(copy)]) == 0
    written = ad.read_h5ad(copy)
    assert (written.obs.c2s_prediction.astype(str).to_numpy() == table.prediction.to_numpy()).all()
    assert "c2s_prediction" not in ad.read_h5ad(atlas / "cells.h5ad").obs  # the input is never changed


def test_train_model_resumes_a_finished_model(atlas, model_folder, capsys):
    before = (model_folder / "model.safetensors").read_bytes()
    assert main(["train-model", str(atlas / "cells.h5ad"), "--label-key", "bulk_labels", "--out", str(model_folder),
                 "--model-config", TINY, "--epochs", "2", "--n-genes", "20", "--seed", "1"]) == 0
    assert (model_folder / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["train-model", "cells.h5ad", "--label-key", "celltype", "--out", "m"],
     "--label-key celltype is not a column of adata.obs; pass the column holding cell types. adata.obs has these "
     "columns: 'bulk_labels'"),
    (["train-model", "missing.h5ad", "--label-key", "bulk_labels", "--out", "m"], "is not an .h5ad file"),
    (["train-model", "cells.h5ad", "--label-key", "bulk_labels"], "--out is missing"),
    (["plan", "cells.h5ad"], "to plan training one, name the cell types' obs column with --label-key"),
    (["plan", "cells.h5ad", "--label-key", "celltype"], "--label-key celltype is not a column of adata.obs"),
    (["train-model", "cells.h5ad", "--label-key", "bulk_labels", "--out", "m", "--base-model", "nowhere"],
     "model nowhere is not a Hugging Face model folder"),
    (["predict", "cells.h5ad", "--model", "nowhere", "--out", "p.csv"], "model nowhere is not a Hugging Face model"),
    (["predict", "cells.h5ad", "--model", "nowhere", "--out", "p.txt"], "must end in .csv (a table) or .h5ad"),
    (["predict", "cells.h5ad", "--model", "nowhere", "--out", "cells.h5ad", "--overwrite"], "is the input"),
])
def test_model_command_errors_are_one_line(atlas, monkeypatch, capsys, args, message):
    monkeypatch.chdir(atlas)
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line
    assert not (atlas / "m").exists() and not (atlas / "p.csv").exists()


def test_bad_model_config_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["train-model", "x.h5ad", "--label-key", "y", "--out", "m", "--model-config", "{hidden"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--model-config" in line and "is not JSON" in line


def test_the_plan_lays_out_the_training_that_follows(atlas, model_folder, capsys):
    """Planned epochs, steps and recipe are the ones training recorded; the time is a positive estimate."""
    import sctranscoder as sct

    recorded = sct.models.load(model_folder).metadata
    assert main(["train-model", str(atlas / "cells.h5ad"), "--label-key", "bulk_labels", "--model-config", TINY,
                 "--epochs", "2", "--n-genes", "20", "--seed", "1", "--plan"]) == 0
    printed = capsys.readouterr().out
    assert f"2 epochs x {recorded['steps'] // 2} steps = {recorded['steps']} optimizer steps" in printed
    assert "20 genes per prompt, tokenizer word" in printed
    cells = ad.read_h5ad(atlas / "cells.h5ad")
    plan = sct.tl.plan_training(cells, "bulk_labels", settings=sct.pp.PromptSettings(n_genes=20),
                                train_config=sct.models.TrainConfig(epochs=2, seed=1),
                                config={"hidden_size": 32, "layers": 1, "heads": 2})
    for key in ("epochs", "n_genes", "tokenizer", "model_config", "augment", "validation_size"):
        assert plan.recipe[key] == recorded["recipe"][key], key
    assert plan.n_held_out_cells == len(recorded["held_out_cells"])
    assert plan.n_train_cells == recorded["n_train_cells"]
    assert 0 < plan.seconds["training"] < plan.total_seconds and plan.peak_memory_bytes > 0
