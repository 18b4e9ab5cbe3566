import json
import subprocess
import sys

import pandas as pd
import pytest

from sctranscoder.cli import main
from conftest import make_adata, make_counts


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
