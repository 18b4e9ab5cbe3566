from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

import sctranscoder as sct
from sctranscoder._atomic import ordinary_file_mode

TINY = {"hidden_size": 32, "layers": 2, "heads": 4, "max_positions": 256}


@pytest.fixture(scope="module")
def small_pbmc(pbmc_template):
    # four common labels, 15 cells each: enough to exercise every path quickly
    pbmc = pbmc_template.copy()
    keep = []
    for label in ["CD14+ Monocyte", "CD19+ B", "CD56+ NK", "Dendritic"]:
        keep += list(np.flatnonzero(pbmc.obs.bulk_labels == label)[:15])
    return pbmc[sorted(keep)].copy()


def train(adata, out_dir, **kwargs):
    options = dict(n_genes=12, config=TINY, epochs=2, batch_size=8, vocab_size=300, progress=False, seed=3)
    options.update(kwargs)
    return sct.models.train_c2s(adata, "bulk_labels", out_dir, **options)


@pytest.fixture(scope="module")
def trained(small_pbmc, tmp_path_factory):
    return train(small_pbmc, tmp_path_factory.mktemp("c2s"))


def test_trained_model_and_metadata(trained, small_pbmc):
    meta = trained.metadata
    assert trained.architecture == "gpt_neox" and trained.model.config.use_parallel_residual
    assert meta["labels"] == sorted(small_pbmc.obs.bulk_labels.unique().astype(str))
    assert meta["n_genes"] == 12 and meta["label_key"] == "bulk_labels"
    held = meta["held_out_cells"]
    assert len(held) == 12 and set(held) <= set(small_pbmc.obs_names)  # 20% of 15 per label, rounded
    held_labels = small_pbmc.obs.loc[held, "bulk_labels"].value_counts()
    assert (held_labels == 3).all()
    assert meta["n_train_cells"] == 60 - 12
    assert (Path(trained.name_or_path) / "model.safetensors").stat().st_mode & 0o777 == ordinary_file_mode()
    # gene names take several tokens, as in the real C2S models
    spans = sct.models.gene_spans(trained.tokenizer, "Cell sentence: HLA-DRA CD74 MALAT1.", "HLA-DRA CD74 MALAT1")
    assert (spans.spans[:, 1] - spans.spans[:, 0]).max() > 1


def test_loss_is_on_the_answer_only(trained):
    from sctranscoder.models._train import IGNORE_INDEX, encode_examples

    examples = encode_examples(trained.tokenizer, ["Cell sentence: CD74 FTL.\nThe cell type is:"], ["CD19+ B."])
    e = examples[0]
    answer = trained.tokenizer("CD19+ B.", add_special_tokens=False)["input_ids"] + [trained.tokenizer.eos_token_id]
    n_prompt = len(e["input_ids"]) - len(answer)
    assert e["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert e["labels"][n_prompt:] == answer == e["input_ids"][n_prompt:]


class CrashAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt("simulated crash")


def test_resume_after_a_crash_matches_an_uninterrupted_run(small_pbmc, trained, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(small_pbmc, tmp_path, callbacks=[CrashAfterFirstSave()])
    assert (tmp_path / "checkpoints").is_dir() and not (tmp_path / "sctranscoder.json").exists()
    resumed = train(small_pbmc, tmp_path)
    for (name, a), (_, b) in zip(trained.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_epoch_is_chosen_on_a_validation_split(small_pbmc, trained, tmp_path):
    from sctranscoder.models import score_candidates

    options = dict(validation_size=0.25, epochs=3, learning_rate=5e-3)
    with pytest.raises(KeyboardInterrupt):  # and the choice survives a crash and resume
        train(small_pbmc, tmp_path / "crashed", callbacks=[CrashAfterFirstSave()], **options)
    resumed = train(small_pbmc, tmp_path / "crashed", **options)
    model = train(small_pbmc, tmp_path / "whole", **options)
    meta = model.metadata
    validation, held = meta["validation_cells"], meta["held_out_cells"]
    assert held == trained.metadata["held_out_cells"]  # the held-out split does not move
    assert not set(validation) & set(held)
    assert len(validation) + len(held) + meta["n_train_cells"] == small_pbmc.n_obs
    assert (small_pbmc.obs.loc[validation, "bulk_labels"].value_counts() == 3).all()  # 25% of 12 per label
    history = meta["validation_history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best = max(history, key=lambda h: h["accuracy"])  # the first of equals
    assert meta["selected_epoch"] == best["epoch"]
    # the model returned is that epoch's: its answers to the validation cells score as recorded
    cells = small_pbmc[validation].copy()
    sct.pp.cell_sentences(cells, n_genes=12, seed=3, progress=False)
    prompts = list(sct.pp.prompts(cells, n_genes=12, organism="Homo sapiens", template=0).prompt)
    scores = score_candidates(model, prompts, model.labels, progress=False)
    truth = np.searchsorted(model.labels, cells.obs.bulk_labels.astype(str))
    assert -scores[np.arange(truth.size), truth].mean() == pytest.approx(best["answer_nll"], rel=1e-5)
    assert (scores.argmax(axis=1) == truth).mean() == best["accuracy"]
    assert resumed.metadata["selected_epoch"] == meta["selected_epoch"]
    for (name, a), (_, b) in zip(model.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_fine_tune_a_given_model(small_pbmc, trained, tmp_path):
    tuned = train(small_pbmc, tmp_path, base_model=trained, epochs=1)
    assert tuned.tokenizer.get_vocab() == trained.tokenizer.get_vocab()
    assert tuned.metadata["base_model"] == trained.name_or_path


def test_bad_arguments(small_pbmc, tmp_path):
    with pytest.raises(KeyError, match="label_key='cell_type'"):
        sct.models.train_c2s(small_pbmc, "cell_type", tmp_path)
    with pytest.raises(ValueError, match="validation_size=0.01 sets aside no cell"):
        train(small_pbmc, tmp_path, validation_size=0.01)
    with pytest.raises(ValueError, match="lower n_genes"):
        train(small_pbmc, tmp_path, n_genes=200, config=dict(TINY, max_positions=64))


def test_dropout_augmentation_copies(small_pbmc):
    from sctranscoder.models._train import _dropout_copy

    before = small_pbmc.raw.X.count_nonzero()
    noisy = _dropout_copy(small_pbmc, 0.3, seed=1)
    kept = noisy.raw.X.count_nonzero() / before
    assert 0.65 < kept < 0.75
    assert small_pbmc.raw.X.count_nonzero() == before  # the original is untouched
    dropped = (small_pbmc.raw.X != 0).multiply(noisy.raw.X == 0)
    assert dropped.sum() == before - noisy.raw.X.count_nonzero()  # only stored values were zeroed


def test_augmented_multitask_training_records_it(small_pbmc, tmp_path):
    model = train(small_pbmc, tmp_path, epochs=1, augment=2, augment_dropout=0.2, generation_task=True)
    meta = model.metadata
    assert meta["augment"] == 2 and meta["augment_dropout"] == 0.2 and meta["generation_task"]


def test_per_example_loss_weighs_examples_equally():
    from sctranscoder.models._train import IGNORE_INDEX, per_example_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, 3, 4], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 6]])
    logp = torch.log_softmax(logits, dim=-1)
    first = -(logp[0, 0, 1] + logp[0, 1, 2] + logp[0, 2, 3] + logp[0, 3, 4]) / 4
    second = -logp[1, 3, 6]
    expected = (first + second) / 2
    torch.testing.assert_close(per_example_loss({"logits": logits}, labels), expected)
