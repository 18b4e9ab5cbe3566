"""Progress output: nothing with progress=False, one line per stage when stderr is not a terminal."""

import re

import numpy as np
import pytest

import sctranscoder as sct
from sctranscoder import _progress
from sctranscoder._progress import StageLine, progress_bar, silenced, transformers_progress

TINY = {"hidden_size": 32, "layers": 2, "heads": 4, "max_positions": 256}


def test_bar_is_one_line_per_stage_off_a_terminal(capfd):
    assert list(progress_bar(range(5), desc="scoring", unit="batches")) == list(range(5))
    with progress_bar(total=10, desc="harvest", unit="docs") as bar:
        bar.update(4)
        bar.update(6)
        bar.set_postfix_str("120 tok/s", refresh=False)
    bar = progress_bar(total=100, initial=40, desc="transcoder layer 0", unit="steps")
    bar.update(20)
    bar.close()
    bar.close()  # closing twice writes once
    out, err = capfd.readouterr()
    assert out == "" and "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("scoring: 5 batches done in ") and lines[0].endswith(" s")
    assert lines[1].startswith("harvest: 10 docs done in ") and lines[1].endswith(" s (120 tok/s)")
    assert lines[2].startswith("transcoder layer 0: 60 of 100 steps done in ")


def test_a_failed_stage_says_so(capfd):
    with pytest.raises(RuntimeError), progress_bar(total=3, desc="cell sentences", unit="cells") as bar:
        bar.update(1)
        raise RuntimeError
    assert capfd.readouterr().err.startswith("cell sentences: 1 of 3 cells failed after ")


def test_disabled_or_silenced_bars_print_nothing(capfd):
    assert list(progress_bar(range(3), desc="off", enabled=False)) == [0, 1, 2]
    with silenced():
        bar = progress_bar(total=2, desc="inside", enabled=True)
        bar.update(2)
        bar.close()
    assert capfd.readouterr() == ("", "")


def test_a_terminal_gets_tqdm(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.setattr(_progress, "interactive", lambda: True)
    bar = progress_bar(total=2, desc="x", enabled=True)
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    monkeypatch.setattr(_progress, "interactive", lambda: False)
    assert isinstance(progress_bar(total=2, desc="x"), StageLine)


def test_transformers_settings_are_restored():
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    with transformers_progress(False):
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert not _progress.wanted(True)  # code deeper down stays quiet
    assert (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()) == before
    assert _progress.wanted(True)


def test_progress_false_prints_nothing(pbmc_template, capfd, monkeypatch):
    monkeypatch.setattr(_progress, "interactive", lambda: True)  # even on a terminal
    model = sct.models.default(progress=False)
    held = pbmc_template.obs_names.isin(model.metadata["held_out_cells"])
    cells = pbmc_template[np.r_[np.flatnonzero(~held)[:16], np.flatnonzero(held)[:6]]].copy()
    sct.tl.predict_cell_types(cells[:6].copy(), model, progress=False)
    sct.tl.predict_cell_types(cells[:4].copy(), model, mode="generate", progress=False)
    sct.tl.harvest(cells[:6].copy(), model, [0], None, progress=False)
    transcoders = sct.tl.train_transcoders(cells, model, [0], label_key="bulk_labels", k=4, d_hidden=32,
                                           batch_size=128, n_tokens=128 * 4, progress=False)
    sct.tl.evaluate_transcoders(cells, model, transcoders, label_key="bulk_labels", progress=False)
    assert capfd.readouterr() == ("", "")
    # the same with progress on: stage lines on stderr (not a terminal here), no redraws, nothing on stdout
    monkeypatch.setattr(_progress, "interactive", lambda: False)
    sct.tl.harvest(pbmc_template[:6].copy(), model, [0], None, progress=True)  # cells with no sentences yet
    out, err = capfd.readouterr()
    assert out == "" and "\r" not in err
    assert [line.split(":")[0] for line in err.splitlines()] == ["cell sentences", "harvest"]


@pytest.fixture(scope="module")
def small_pbmc(pbmc_template):
    keep = []
    for label in ["CD14+ Monocyte", "CD19+ B", "CD56+ NK", "Dendritic"]:
        keep += list(np.flatnonzero(pbmc_template.obs.bulk_labels == label)[:10])
    return pbmc_template[sorted(keep)].copy()


def test_training_a_c2s_model_is_quiet_or_one_line_per_epoch(small_pbmc, tmp_path, capfd, monkeypatch):
    options = dict(n_genes=8, config=TINY, epochs=2, batch_size=8, vocab_size=300, seed=3, validation_size=0.2)
    monkeypatch.setattr(_progress, "interactive", lambda: True)  # even on a terminal
    sct.models.train_c2s(small_pbmc, "bulk_labels", tmp_path / "quiet", progress=False, **options)
    assert capfd.readouterr() == ("", "")  # no loss dicts, no "Writing model shards", no "Loading weights"
    monkeypatch.setattr(_progress, "interactive", lambda: False)
    sct.models.train_c2s(small_pbmc, "bulk_labels", tmp_path / "loud", progress=True, **options)
    out, err = capfd.readouterr()
    assert out == "" and "\r" not in err and "{" not in err
    lines = err.splitlines()
    assert lines[0].startswith("cell sentences: ")
    epochs = [line for line in lines if line.startswith("training: epoch ")]
    assert any("loss=" in line for line in epochs) and any("eval_accuracy=" in line for line in epochs)
    assert re.match(r"training: \d+ steps done in [\d.]+ s \(", lines[-2]), lines[-2]
    assert lines[-1].startswith("scoring: ")  # the held-out cells, scored against the regression
    assert len(lines) == 3 + len(epochs)


def test_a_stage_failing_before_its_first_item_prints_no_progress_line(capfd):
    # an input error comes alone: no "0 of 700 cells failed" line before it
    with pytest.raises(ValueError), progress_bar(total=700, desc="cell sentences", unit="cells"):
        raise ValueError("bad input")
    assert capfd.readouterr().err == ""
