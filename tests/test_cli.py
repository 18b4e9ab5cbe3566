import json
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest
from conftest import make_adata, make_counts

from sctranscoder.cli import main

QUICK = ["--d-hidden", "256", "--k", "8", "--steps", "30", "--batch-size", "256", "--n-largest", "2", "--n-cells", "1",
         "--max-nodes", "8", "--max-feature-nodes", "16", "--knockout-cells", "3", "--steer-cells", "2"]


def test_quickstart_runs_the_pipeline_and_can_be_repeated(tmp_path, capsys):
    import yaml

    out = tmp_path / "q"
    assert main(["quickstart", "--out", str(out), *QUICK]) == 0
    sentences = pd.read_parquet(out / "sentences.parquet")
    assert sentences.shape == (700, 4) and sentences.cell_sentence.str.len().min() > 0
    fit = json.loads((out / "rank_expression_fit.json").read_text())
    assert fit["r_squared"] > 0.85
    assert pd.read_parquet(out / "prompts.parquet").response.notna().all()
    quality = pd.read_csv(out / "transcoder_quality.csv", index_col=0)
    assert list(quality.index) == ["0", "1", "2", "all"] and (quality.l0.iloc[:3] <= 8).all()
    assert {p.name for p in (out / "transcoders").glob("layer*")} == {"layer0", "layer1", "layer2"}
    # circuits for the two largest cell types of the whole data set, each as a graph and a gene table
    assert {p.stem for p in (out / "circuits").glob("*.graphml")} == {"Dendritic", "CD14+_Monocyte"}
    # with 30-step transcoders (FVU near 1) a circuit may run through error nodes only and reach no gene,
    # so the genes are checked over both types
    tables = [pd.read_csv(out / "circuits" / f"{name}_genes.csv") for name in ("Dendritic", "CD14+_Monocyte")]
    assert all(list(t.columns[:2]) == ["gene", "attribution"] for t in tables)
    genes = pd.concat(tables)
    assert len(genes) and genes.gene.str.len().min() > 0 and genes.n_cells.max() == 1
    printed = capsys.readouterr().out
    assert "FVU" in printed and str(out) in printed
    # per type: the genes whose knockout passes its rank-matched null, or that none does, in words
    assert printed.count("top genes by knockout (measured, beyond random genes at the same rank, 3 cells)") + \
        printed.count("more than knocking out a random gene at the same rank in these 3 cells") == 2
    # every circuit's genes were knocked out in its traced cell: the measured ranking is written and shown first
    for name in ("Dendritic", "CD14+_Monocyte"):
        measured = pd.read_csv(out / "circuits" / "validation" / f"{name}_knockouts.csv")
        assert measured.knockout_effect.is_monotonic_decreasing and {"attribution", "features"} <= set(measured)
        assert {"effect", "ci_low", "ci_high", "null_mean", "null_sd", "z", "p_value", "fdr", "passes"} <= set(measured)
        figures = json.loads((out / "circuits" / "validation" / f"{name}.json").read_text())
        assert figures["n_cells"] == 1 and figures["n_cells_knockout"] == 3  # traced, and knocked out
    page = (out / "report.html").read_text()
    assert page.count("Genes whose knockout passes a random gene at the same rank") == 2
    # each section opens with its readable circuit, and the run keeps it for `report`
    assert page.count("The circuit in one picture") == 2
    supernodes = pd.read_csv(out / "circuits" / "readable" / "Dendritic_supernodes.csv")
    assert 1 <= len(supernodes) <= 8 and {"name", "n_features", "genes", "predicted_effect",
                                           "measured_effect"} <= set(supernodes)
    # each type's supernodes that carry its call raised together in 2 cells of the other at 1, 3, 10 and 30 times
    # their activation, beside as many random features; a type with none is skipped, and the run says why
    steered_types = skipped_types = 0
    for name, into in (("Dendritic", "CD14+ Monocyte"), ("CD14+_Monocyte", "Dendritic")):
        table = pd.read_csv(out / "circuits" / "readable" / f"{name}_supernodes.csv")
        supporting = table.supernode[table.measured_effect > 0].tolist()
        if not supporting:  # the run, and the report, say why
            info = json.loads((out / "circuits" / "readable" / f"{name}_steering.json").read_text())
            assert info["skipped"].startswith(f"Steering skipped for {name.replace('_', ' ')}: none of its")
            assert f"Steering skipped for {name.replace('_', ' ')}: none of its supernodes lowers" in printed
            assert f"Steering skipped for {name.replace('_', ' ')}" in page
            skipped_types += 1
            continue
        steered_types += 1
        steered = pd.read_csv(out / "circuits" / "readable" / f"{name}_steering.csv")
        assert len(steered) == 8 and {"moved", "moved_control", "p_after_control"} <= set(steered)
        assert steered.scale.tolist() == [1.0] * 2 + [3.0] * 2 + [10.0] * 2 + [30.0] * 2
        assert (steered.n_changes_control == steered.n_changes).all()
        info = json.loads((out / "circuits" / "readable" / f"{name}_steering.json").read_text())
        assert info["from_type"] == into and info["supernode"] == ", ".join(supporting)
        assert info["scale"] == [1.0, 3.0, 10.0, 30.0] and len(info["fraction_moved_control"]) == 4
        assert len(info["control_features"]) == len(info["features"])
        assert not set(info["control_features"]) & set(info["features"])
    assert page.count("Steering: raising this type&#x27;s") == steered_types
    assert printed.count("Steering: raising this type's") == steered_types
    # the run configuration names every setting, and reading it back gives the same run
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["train"]["d_hidden"] == 256 and run["circuits"]["n_cells"] == 1
    assert run["circuits"]["validate_cells"] == 2 and run["circuits"]["min_feature_share"] == 0.8
    assert run["circuits"]["steer_cells"] == 2 and run["circuits"]["steer_into"] == "next"
    assert "workers" not in run["quickstart"]  # how fast a run goes, not what it finds
    from sctranscoder.cli import _parse
    again = _parse(["quickstart", "--out", str(tmp_path / "r"), "--config", str(out / "run.yaml")])
    assert (again.d_hidden, again.k, again.steps, again.n_largest) == (256, 8, 30, 2)
    assert (out / "report.html").stat().st_size > 10_000
    # the enrich and report subcommands work on what the quickstart wrote
    background = tmp_path / "background.txt"
    background.write_text("\n".join(sentences.cell_sentence.str.split(" ").explode().unique()))
    assert main(["enrich", str(out / "circuits"), str(tmp_path / "e.csv"), "--background", str(background),
                 "--max-fdr", "1"]) == 0
    table = pd.read_csv(tmp_path / "e.csv")
    assert set(table.List.astype(str)) <= {"Dendritic", "CD14+_Monocyte"} and "P-value" in table
    assert main(["report", str(out), str(tmp_path / "again.html")]) == 0
    page = (tmp_path / "again.html").read_text()
    # each circuit is drawn once: interactive where its view was saved, a figure otherwise
    drawn = page.count('<div class="circuit-view">') + page.count("<figure><img alt=\"Circuit behind")
    assert "Dendritic" in page and drawn == 2
    # read back from circuits/validation/ and circuits/readable/
    assert page.count("The circuit in one picture") == 2
    assert page.count("Steering: raising this type&#x27;s") == steered_types
    assert page.count("Steering skipped for") == skipped_types
    assert page.count("Genes whose knockout passes a random gene at the same rank") == 2
    # and the feature controls the run measured, as the quickstart's report shows them
    assert "Trained features beside randomized controls" in page and "testable features" in page
    assert main(["enrich", str(out / "circuits"), str(tmp_path / "e2.csv")]) == 2
    assert main(["report", str(tmp_path / "nothing"), str(tmp_path / "x.html")]) == 2


def _controls_run(folder):
    """A run folder as the quickstart leaves it, with transcoder quality and the feature controls only."""
    import numpy as np

    from sctranscoder.cli._controls_io import write_controls
    from sctranscoder.tl._controls import COLUMNS

    folder.mkdir()
    pd.DataFrame({"fvu": [0.2, 0.3, 0.25], "l0": [8.0, 8, 8]}, index=pd.Index(["0", "1", "all"], name="layer")
                 ).to_csv(folder / "transcoder_quality.csv")
    controls = pd.DataFrame([[0, "trained", 40, 30, 3, 0.1, np.nan, ""],
                             [0, "random_directions", 40, 35, 1, 1 / 35, 0.25, ""],
                             [1, "trained", 50, 40, 12, 0.3, np.nan, ""],
                             [1, "random_directions", 50, 44, 2, 2 / 44, 0.003, ""],
                             [1, "untrained_model", 0, 0, 0, np.nan, np.nan, "skipped (untrained=False): not run"]],
                            columns=COLUMNS)
    controls.attrs["settings"] = {"max_fdr": 0.01, "n_top": 25}
    write_controls(controls, folder)
    return controls


def test_report_shows_the_feature_controls_the_run_wrote(tmp_path, capsys):
    import html

    import sctranscoder as sct
    from sctranscoder.report._from_adata import CONTROLS_CAPTION

    controls = _controls_run(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    # the last layer's headline, with its FDR read back beside the table, as the quickstart's report has it
    headline = sct.tl.control_headline(controls, 1)
    assert "FDR <= 0.01" in headline and "5% of random directions that fire as often (2 of 44 testable" in headline
    assert html.escape(headline) in page
    assert CONTROLS_CAPTION in page and "Testable (&gt;= 3 genes listed)" in page and ">not run<" in page
    assert "untrained=False" not in page and "feature_controls(untrained=True) runs it" in page
    # a table from before testable features were counted: the report renders, and says why it has no controls
    table = pd.read_csv(tmp_path / "run" / "feature_controls.csv").drop(columns="n_listable")
    table.to_csv(tmp_path / "run" / "feature_controls.csv", index=False)
    assert main(["report", str(tmp_path / "run"), str(tmp_path / "old.html")]) == 0
    old = (tmp_path / "old.html").read_text()
    assert CONTROLS_CAPTION not in old and "no n_listable column" in old
    assert "run the quickstart again" in capsys.readouterr().err


def test_a_negative_steer_cells_or_no_workers_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--steer-cells", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sctranscoder quickstart: error: --steer-cells -1 must be 0 (no steering) or more"]
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "sctranscoder quickstart: error: --workers 0 must be 1 (every step in this process) or more"]
    assert not (tmp_path / "q").exists()


def test_config_file_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "run.yaml"
    bad.write_text("train:\n  d_hiden: 5\n")
    assert main(["train", "acts", "tc", "--config", str(bad)]) == 2
    assert "unknown settings for train: d_hiden" in capsys.readouterr().err
    bad.write_text("train: [1, 2\n")
    assert main(["train", "acts", "tc", "--config", str(bad)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


def test_sentences_command(tmp_path):
    make_adata(make_counts()).write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.parquet"
    umask = os.umask(0o022)
    try:
        assert main(["sentences", str(tmp_path / "in.h5ad"), str(out), "--n-genes", "5"]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # readable by the group, as a plain open() would make it
    assert pd.read_parquet(out).cell_sentence.str.split(" ").str.len().max() == 5
    assert main(["sentences", str(tmp_path / "in.h5ad"), str(out)]) == 2  # exists, no --overwrite
    assert main(["sentences", str(tmp_path / "in.h5ad"), str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("args, message", [
    (["missing.h5ad", "o.parquet"], "is not a file"),
    (["in.h5ad", "o.csv"], "must end in .parquet"),
    (["in.h5ad", "o.parquet", "--layer", "counts"], "--layer counts is not in adata.layers"),
    (["in.h5ad", "o.parquet", "--use-raw"], "--use-raw but adata.raw is None; pass --no-use-raw or --layer LAYER."),
    (["in.h5ad", "o.parquet", "--use-raw", "--layer", "x"], "Pass either --layer LAYER or --use-raw, not both."),
    (["in.h5ad", "o.parquet", "--gene-symbols", "sym"], "--gene-symbols sym is not a column of adata.var"),
])
def test_sentences_errors(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    make_adata(make_counts()).write_h5ad(tmp_path / "in.h5ad")
    assert main(["sentences", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.parquet").exists()


def test_negative_values_name_the_flags(tmp_path, capsys):
    adata = make_adata(make_counts())
    adata.X = adata.X.toarray() - 1.0  # centred, no adata.raw
    adata.write_h5ad(tmp_path / "in.h5ad")
    assert main(["sentences", str(tmp_path / "in.h5ad"), str(tmp_path / "o.parquet")]) == 2
    # the progress line of the stage it failed in may come first
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "adata.X holds negative values" in err
    assert "use non-negative data: --use-raw (scanpy keeps log-normalized values in adata.raw) or " \
           "--layer counts (raw counts;" in err
    assert "use_raw" not in err and "layer=" not in err and "log-normalized layer" not in err


def test_hinted_errors_name_only_flags_the_command_has():
    from sctranscoder._hints import Arg, HintedValueError
    from sctranscoder.cli import _message

    error = HintedValueError("use {use_raw} or {layer}.", use_raw=Arg("use_raw", True), layer=Arg("layer", "counts"))
    assert _message(error, "sentences") == "use --use-raw or --layer counts."
    assert _message(error, "harvest") == ("use use_raw=True or layer='counts'. sctranscoder harvest has no "
                                          "--use-raw or --layer option (those are Python arguments): change the "
                                          ".h5ad instead.")


def test_help_shows_an_example():
    result = subprocess.run([sys.executable, "-m", "sctranscoder", "sentences", "--help"],
                            capture_output=True, text=True, check=True)
    assert "example:" in result.stdout and "sctranscoder sentences" in result.stdout


def test_version():
    from importlib.metadata import version

    import sctranscoder

    result = subprocess.run([sys.executable, "-m", "sctranscoder", "--version"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == f"sctranscoder {sctranscoder.__version__}"
    assert sctranscoder.__version__ == version("sctranscoder")


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


def test_option_errors_are_one_line_with_a_pointer_to_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "acts", "tc", "--k", "abc"])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "sctranscoder train: error: argument --k: invalid int value: 'abc' (see 'sctranscoder train --help')"


def test_an_unknown_label_key_lists_the_columns_alone(tmp_path, capsys):
    from sctranscoder.models._default import default_model_path

    adata = make_adata(make_counts())
    adata.obs["cell_type"] = "T"
    adata.write_h5ad(tmp_path / "in.h5ad")
    assert main(["harvest", str(tmp_path / "in.h5ad"), str(default_model_path()), str(tmp_path / "acts"),
                 "--label-key", "celltype"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # no progress line before the input error
    assert "--label-key celltype is not a column of adata.obs" in line and "'cell_type'" in line


def test_bad_layer_list_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["train", "acts", "tc", "--layers", "one"])
    assert "not a comma-separated list of layer numbers" in capsys.readouterr().err


def _random_transcoders(folder, model, d_hidden=64):
    import torch

    from sctranscoder.tc import Transcoder, TranscoderConfig, save

    d = model.model.config.hidden_size
    for layer in range(3):
        tc = Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=d_hidden, activation="topk", k=8, seed=layer))
        with torch.no_grad():
            tc.output_scale.fill_(0.1)
        save(tc.eval(), folder / f"layer{layer}", layer=layer)


def test_evaluate_and_circuits_commands(tmp_path, capsys, pbmc_template):
    import networkx as nx

    import sctranscoder as sct
    from sctranscoder.models._default import default_model_path

    model = sct.models.default()
    held_out = pbmc_template[pbmc_template.obs_names.isin(model.metadata["held_out_cells"])]
    held_out[:10].copy().write_h5ad(tmp_path / "cells.h5ad")
    _random_transcoders(tmp_path / "tc", model)
    cells, model_dir, tc = str(tmp_path / "cells.h5ad"), str(default_model_path()), str(tmp_path / "tc")
    assert main(["evaluate", cells, model_dir, tc, str(tmp_path / "m.csv"), "--label-key", "bulk_labels"]) == 0
    table = pd.read_csv(tmp_path / "m.csv", index_col=0)
    assert list(table.index) == ["0", "1", "2", "all"] and {"fvu", "l0", "accuracy_kept"} <= set(table.columns)
    label = held_out[:10].obs.bulk_labels.astype(str).value_counts().index[0]
    assert main(["circuits", cells, model_dir, tc, str(tmp_path / "circ"), "--cell-types", label, "--n-cells", "1",
                 "--max-feature-nodes", "8"]) == 0
    printed = capsys.readouterr().out
    assert "replacement" in printed
    # one traced type: nothing to steer its supernode into, and it says so
    assert "Steering skipped: it raises one cell type's supernodes in another type's cells, and only " in printed
    safe = "".join(c if c.isalnum() or c in "+-" else "_" for c in label)
    graph = nx.read_graphml(tmp_path / "circ" / f"{safe}.graphml")
    assert "output" in graph and graph.number_of_nodes() > 1
    assert pd.read_csv(tmp_path / "circ" / f"{safe}_genes.csv").shape[0] > 0
    exported = json.loads((tmp_path / "circ" / "circuit_tracer" / f"{safe}_0.json").read_text())
    assert {"metadata", "nodes", "links", "qParams"} <= set(exported)
    capsys.readouterr()
    assert main(["circuits", cells, model_dir, tc, str(tmp_path / "c2"), "--cell-types", "Neuron"]) == 2
    assert "not labels the model knows" in capsys.readouterr().err
    assert main(["evaluate", cells, model_dir, str(tmp_path), str(tmp_path / "m2.csv")]) == 2
    assert "No layer*/ transcoder folders" in capsys.readouterr().err


def test_harvest_says_when_genes_and_labels_are_new_to_the_model(tmp_path, capsys):
    """A new user's h5ad, whose genes (Ensembl-like ids) and labels the default model never saw: the harvest
    runs, and says so with numbers."""
    import sctranscoder as sct
    from sctranscoder.models._default import default_model_path

    adata = sct.datasets.simulated(n_cells=9, n_types=3, n_genes=200, seed=0)
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    adata.write_h5ad(tmp_path / "new.h5ad")
    assert main(["harvest", str(tmp_path / "new.h5ad"), str(default_model_path()), str(tmp_path / "acts"),
                 "--layers", "0", "--label-key", "cell_type"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("sctranscoder harvest: warning: ")]
    assert len(warnings) == 2, err
    assert "100% of the genes in these cells' sentences (top 200) never occurred in the model's training" in err
    assert ("3 of the 3 labels in adata.obs['cell_type'] are not among the model's 10 training labels "
            "(9 of 9 cells): 'type 1', 'type 2', 'type 3'") in err


def test_report_command_names_no_circuit_set_whose_genes_only_spell_one_family():
    import sctranscoder as sct
    from sctranscoder.cli._report_commands import _circuit_result
    from sctranscoder.tl import headline_sets

    def table(rows):
        return pd.DataFrame([{"List": "Dendritic", "Gene_set": "reactome", "Term": term, "Overlap": f"{len(genes)}/15",
                              "P-value": p, "Adjusted P-value": p * 10, "Odds Ratio": 50.0, "Genes": ";".join(genes)}
                             for term, genes, p in rows])

    hla = ["HLA-DQA1", "HLA-DRA", "HLA-DPA1", "HLA-DPB1"]
    mixed = ["LYZ", "CST3", "FCER1G"]
    families = sct.genesets.name_families(hla + mixed)
    spelled = headline_sets(table([("REACTOME_PD_1_SIGNALING", hla, 1e-12)]), families=families)
    said = _circuit_result(spelled)
    assert "reach PD 1 signaling" in said and "one name family (HLA-D*)" in said and "enriched for" not in said
    both = headline_sets(table([("REACTOME_PD_1_SIGNALING", hla, 1e-12),
                                ("REACTOME_NEUTROPHIL_DEGRANULATION", mixed, 1e-5)]), families=families)
    assert _circuit_result(both).startswith("Its circuit's input genes are enriched for Neutrophil degranulation")
    assert _circuit_result(both.iloc[0:0]).startswith("Circuit enrichment: no gene set")
