import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import make_adata, make_counts

from sctranscoder.cli import main


def test_quickstart(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "q")]) == 0
    sentences = pd.read_parquet(tmp_path / "q" / "sentences.parquet")
    assert sentences.shape == (700, 4) and sentences.cell_sentence.str.len().min() > 0
    fit = json.loads((tmp_path / "q" / "rank_expression_fit.json").read_text())
    assert fit["r_squared"] > 0.85
    prompts = pd.read_parquet(tmp_path / "q" / "prompts.parquet")
    assert prompts.response.notna().all()
    assert "r^2" in capsys.readouterr().out


def test_sentences_command(tmp_path):
    make_adata(make_counts()).write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.parquet"
    assert main(["sentences", str(tmp_path / "in.h5ad"), str(out), "--n-genes", "5"]) == 0
    assert pd.read_parquet(out).cell_sentence.str.split(" ").str.len().max() == 5
    assert main(["sentences", str(tmp_path / "in.h5ad"), str(out)]) == 2  # exists, no --overwrite
    assert main(["sentences", str(tmp_path / "in.h5ad"), str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("args, message", [
    (["missing.h5ad", "o.parquet"], "is not a file"),
    (["in.h5ad", "o.csv"], "must end in .parquet"),
    (["in.h5ad", "o.parquet", "--layer", "counts"], "layer='counts' is not in adata.layers"),
])
def test_sentences_errors(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    make_adata(make_counts()).write_h5ad(tmp_path / "in.h5ad")
    assert main(["sentences", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.parquet").exists()


def test_help_shows_an_example():
    result = subprocess.run([sys.executable, "-m", "sctranscoder", "sentences", "--help"],
                            capture_output=True, text=True, check=True)
    assert "example:" in result.stdout and "sctranscoder sentences" in result.stdout


def test_harvest_then_train(tmp_path, capsys, pbmc_template):
    from sctranscoder.harvest import ActivationStore
    from sctranscoder.models._default import default_model_path
    from sctranscoder.tc import load

    pbmc_template[:12].copy().write_h5ad(tmp_path / "cells.h5ad")
    store = tmp_path / "acts"
    args = ["harvest", str(tmp_path / "cells.h5ad"), str(default_model_path()), str(store), "--layers", "0,2",
            "--chunk-size", "3", "--label-key", "bulk_labels"]
    assert main(args) == 0
    opened = ActivationStore(store)
    assert opened.complete and opened.layers == [0, 2] and opened.n_shards == 4
    assert main(args) == 0  # finished: resumes with nothing left to do
    capsys.readouterr()
    assert main(["train", str(store), str(tmp_path / "tc"), "--layers", "2", "--d-hidden", "256", "--k", "8",
                 "--steps", "20", "--batch-size", "512", "--eval-fraction", "0.25"]) == 0
    assert "layer 2: FVU" in capsys.readouterr().out
    transcoder = load(tmp_path / "tc" / "layer2")
    assert transcoder.metadata["metrics"]["held_out"]["l0"] == 8 and transcoder.metadata["layer"] == 2
    assert not (tmp_path / "tc" / "layer0").exists()


@pytest.mark.parametrize("args, message", [
    (["harvest", "missing.h5ad", ".", "acts"], "is not an .h5ad file"),
    (["harvest", "in.h5ad", ".", "acts"], "is not a Hugging Face model folder"),
    (["train", "acts", "tc"], "is not an activation store"),
])
def test_harvest_and_train_errors(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    make_adata(make_counts()).write_h5ad(tmp_path / "in.h5ad")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "acts").exists() and not (tmp_path / "tc").exists()


def test_bad_layer_list_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["train", "acts", "tc", "--layers", "one"])
    assert "not a comma-separated list of layer numbers" in capsys.readouterr().err
