import inspect
import logging
import warnings
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


def train(adata, out_dir, *, settings=None, n_genes=12, config=TINY, callbacks=None, base_model=None, **fields):
    # byte-level BPE as the real C2S models (gene names in several tokens), not the small-data word tokenizer
    options = dict(epochs=2, batch_size=8, vocab_size=300, seed=3, tokenizer="byte_bpe")
    options.update(fields)
    settings = (settings or sct.pp.PromptSettings(seed=options["seed"])).updated(n_genes=n_genes)
    return sct.models.train_c2s(adata, "bulk_labels", out_dir, settings=settings,
                                train_config=sct.models.TrainConfig(**options), config=config, callbacks=callbacks,
                                base_model=base_model, progress=False)


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
    # the prompt settings, as one object and flat for older readers; the sentence seed follows seed= by default
    assert meta["prompt"] == sct.pp.PromptSettings(n_genes=12, seed=3).to_dict()
    assert sct.pp.PromptSettings.of_model(trained) == sct.pp.PromptSettings(n_genes=12, seed=3)
    assert (meta["seed"], meta["tie_break"], meta["template"]) == (3, "random", 0)
    # the gene vocabulary: every gene of the training cells' sentences, and no other
    train_cells = small_pbmc[~small_pbmc.obs_names.isin(held)].copy()
    sct.pp.cell_sentences(train_cells, n_genes=12, seed=3, progress=False)
    expected = sorted({g for s in sct.get.sentences(train_cells) for g in s.split()})
    assert meta["genes"] == expected and len(expected) > 12
    # one gene count under one name: the genes seen in training sentences; the data's own count beside it
    assert meta["n_genes_seen"] == len(expected) and meta["n_genes_in_data"] == small_pbmc.raw.n_vars == 765
    # the config as given and as trained
    assert meta["train_config"] == sct.models.TrainConfig(epochs=2, batch_size=8, vocab_size=300, seed=3,
                                                          tokenizer="byte_bpe").to_dict()
    assert meta["recipe"]["tokenizer"] == "byte_bpe" and meta["recipe"]["model_config"] == TINY
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


def test_prompt_settings_and_their_overrides(small_pbmc, tmp_path):
    settings = sct.pp.PromptSettings(n_genes=30, seed=7, organism="Mus musculus", tie_break="stable")
    model = train(small_pbmc, tmp_path, settings=settings, n_genes=10, epochs=1)
    assert model.metadata["prompt"] == settings.updated(n_genes=10).to_dict()  # keywords override settings
    assert model.metadata["training_seed"] == 3 and model.metadata["seed"] == 7
    cell = small_pbmc[:1].copy()
    sct.pp.PromptSettings.of_model(model).ensure_sentences(cell, progress=False)
    prompt = sct.pp.prompts(cell, **sct.pp.PromptSettings.of_model(model).prompt_options()).prompt.iloc[0]
    assert "Mus musculus" in prompt and len(prompt.split("Cell sentence: ")[1].split(".")[0].split()) == 10


def test_held_out_comparison_is_recorded_and_warns_when_far_below(small_pbmc, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sctranscoder.models import score_candidates

    # one epoch of a tiny model: the label prior at best, far below a regression on 4 well-separated types
    with pytest.warns(UserWarning, match=r"points below a logistic regression.*Try: more cells"):
        model = train(small_pbmc, tmp_path, epochs=1)
    evaluation = model.metadata["held_out_evaluation"]
    held = small_pbmc.obs_names.isin(model.metadata["held_out_cells"])
    assert evaluation["n_cells"] == held.sum() == 12
    cells = small_pbmc[held].copy()
    sct.pp.cell_sentences(cells, n_genes=12, seed=3, progress=False)
    scores = score_candidates(model, list(sct.pp.prompts(cells, n_genes=12, template=0).prompt), model.labels,
                              progress=False)
    truth = np.searchsorted(model.labels, cells.obs.bulk_labels.astype(str))
    assert evaluation["c2s_accuracy"] == (scores.argmax(axis=1) == truth).mean()
    # the regression: the same split, the model's genes, .raw (log-normalized) scaled to unit variance
    genes = small_pbmc.raw.var_names.str.upper().isin(model.metadata["genes"])  # sentences write names uppercased
    x = small_pbmc.raw.X[:, np.flatnonzero(genes)]
    y = small_pbmc.obs.bulk_labels.astype(str).to_numpy()
    clf = make_pipeline(StandardScaler(with_mean=False), LogisticRegression(max_iter=2000))
    assert evaluation["logistic_regression_accuracy"] == clf.fit(x[~held], y[~held]).score(x[held], y[held])
    assert evaluation["logistic_regression_accuracy"] - evaluation["c2s_accuracy"] > 0.10
    assert evaluation["below_baseline"]


def test_the_warning_is_for_gaps_over_ten_points():
    from sctranscoder.models._baseline import compare_to_baseline

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = compare_to_baseline(0.75, 0.84, 100)  # 9 points: no warning
    assert not record["below_baseline"] and record["n_cells"] == 100
    with pytest.warns(UserWarning, match="0.700 on its 100 held-out cells, 14 points below"):
        assert compare_to_baseline(0.70, 0.84, 100)["below_baseline"]


def test_small_data_defaults():
    from sctranscoder.models._recipe import Recipe

    recipe = Recipe()
    assert recipe.validation_fraction(48) == 0  # 7 validation cells would choose an epoch by noise
    assert recipe.validation_fraction(160) == 0.15 and Recipe(validation_size=0.3).validation_fraction(48) == 0.3
    assert recipe.validation_fraction(20_000) * 20_000 == 500  # enough to choose an epoch by
    assert recipe.epochs_for(1_600) == 10  # the usual epochs while they fit in max_steps
    assert recipe.epochs_for(10_000) == 1000 // 625  # large data: whole epochs within max_steps
    assert recipe.epochs_for(100_000) == 1 and Recipe(max_steps=None).epochs_for(10_000) == 10
    steps_per_epoch = -(-136 // recipe.batch_size)
    assert recipe.epochs_for(136) == -(-recipe.min_steps // steps_per_epoch)  # small data: enough steps
    assert Recipe(epochs=3).epochs_for(136) == 3
    # a new model: one token per gene and the top 100 genes, on few cells as on many
    assert (recipe.tokenizer_kind(136), recipe.prompt_genes(136)) == ("word", 100)
    assert (recipe.tokenizer_kind(5000), recipe.prompt_genes(5000)) == ("word", 100)  # one token per gene at any size
    assert Recipe(tokenizer="sentencepiece").tokenizer_kind(136) == "sentencepiece"

    from sctranscoder.models._train import training_prompt_settings

    # the default call's prompts are the default prompts, with the sentence seed the training seed (as before)
    assert training_prompt_settings(None, seed=0) == sct.pp.PromptSettings(seed=0) and sct.pp.PromptSettings().n_genes == 200
    assert training_prompt_settings(sct.pp.PromptSettings(seed=5), seed=0, n_genes=50).seed == 5


def test_small_data_recipe_is_what_train_c2s_records(small_pbmc, tmp_path, caplog):
    # 48 training cells, no genes, settings or tokenizer given: the small-data recipe chooses, and says so
    one_epoch = sct.models.TrainConfig(epochs=1)
    with caplog.at_level(logging.INFO, logger="sctranscoder.models"):
        model = sct.models.train_c2s(small_pbmc, "bulk_labels", tmp_path, train_config=one_epoch, progress=False)
    assert model.metadata["prompt"]["n_genes"] == 100
    assert len(model.tokenizer("HLA-DRA", add_special_tokens=False)["input_ids"]) == 1  # a gene is one token
    chosen = model.metadata["recipe"]["chosen"]
    assert {k: v["from"] for k, v in chosen.items()} == {"n_genes": "recipe for a model trained from scratch", "tokenizer": "default: one token per gene",
                                                         "config": "small-data recipe"}
    assert model.metadata["recipe"]["small_data"] and model.metadata["recipe"]["model_config"] == {
        "hidden_size": 64, "layers": 2, "heads": 4}
    for line in ("n_genes=100 (recipe for a model trained from scratch)", "tokenizer='word' (default: one token per gene)",
                 "config={'hidden_size': 64, 'layers': 2, 'heads': 4} (small-data recipe)", "recipe: epochs=1"):
        assert line in caplog.text
    given = sct.models.train_c2s(small_pbmc, "bulk_labels", tmp_path / "given", settings=sct.pp.PromptSettings(n_genes=20),
                                 config=TINY, train_config=one_epoch, progress=False)
    assert given.metadata["prompt"]["n_genes"] == 20 and "n_genes" not in given.metadata["recipe"]["chosen"]


def test_patience_stops_where_the_log_says():
    from types import SimpleNamespace

    from sctranscoder.models._trainer import patience_callback

    callback = patience_callback(2)
    for history, stop in [([0.5, 0.6, 0.6], False), ([0.5, 0.6, 0.6, 0.55], True), ([0.7, 0.5, 0.6], True)]:
        state = SimpleNamespace(log_history=[{"loss": 1.0}] + [{"eval_accuracy": a} for a in history],
                                global_step=10 * len(history))
        control = SimpleNamespace(should_training_stop=False)
        assert callback.on_evaluate(None, state, control).should_training_stop is stop
    # a plateau at chance before min_steps is not a reason to stop; the same plateau after it is
    waiting = patience_callback(2, min_steps=100)
    for step, stop in [(40, False), (100, True)]:
        state = SimpleNamespace(log_history=[{"eval_accuracy": a} for a in (0.2, 0.2, 0.2, 0.2)], global_step=step)
        control = SimpleNamespace(should_training_stop=False)
        assert waiting.on_evaluate(None, state, control).should_training_stop is stop


# -- the config object, the old keywords --------------------------------------------------------------------------
def test_train_c2s_takes_a_config_object_and_few_parameters():
    parameters = inspect.signature(sct.models.train_c2s).parameters
    assert len(parameters) <= 14
    assert "train_config" in parameters and "epochs" not in parameters
    from dataclasses import fields

    documented = inspect.getsource(sct.models.TrainConfig)
    for field in fields(sct.models.TrainConfig):  # a docstring under every field
        line = next(i for i, text in enumerate(documented.splitlines()) if text.strip().startswith(f"{field.name}:"))
        assert documented.splitlines()[line + 1].strip().startswith('"""'), field.name


def test_old_keywords_still_work_with_a_deprecation_warning(small_pbmc, tmp_path):
    # one token per gene on both sides: a learned BPE vocabulary can break ties between merges differently from run
    # to run under a loaded machine, which would compare two vocabularies rather than two keyword spellings
    trained = train(small_pbmc, tmp_path / "new", tokenizer="word")
    with pytest.warns(DeprecationWarning, match=r"train_config=sct.models.TrainConfig\(epochs=2, batch_size=8.*"
                                                r"settings=sct.pp.PromptSettings\(n_genes=12\)") as record:
        old = sct.models.train_c2s(small_pbmc, "bulk_labels", tmp_path / "old", n_genes=12, config=TINY, epochs=2,
                                   batch_size=8, vocab_size=300, progress=False, seed=3, tokenizer="word")
    assert any(w.filename == __file__ for w in record if w.category is DeprecationWarning)  # points at the caller
    assert old.metadata["prompt"] == trained.metadata["prompt"]
    assert old.metadata["train_config"] == trained.metadata["train_config"]
    for (name, a), (_, b) in zip(trained.model.state_dict().items(), old.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['epoch'\\]"):
        sct.models.train_c2s(small_pbmc, "bulk_labels", tmp_path, epoch=2)


# -- the README's order: sentences first, then training --------------------------------------------------------------
def test_sentences_made_first_decide_the_training_settings(small_pbmc, tmp_path, caplog):
    """cell_sentences(tie_break="c2s") then train_c2s: trained on c2s sentences, so predict_cell_types reads them."""
    adata = small_pbmc.copy()
    sct.pp.cell_sentences(adata, tie_break="c2s", progress=False)
    with caplog.at_level(logging.INFO, logger="sctranscoder.models"):
        model = sct.models.train_c2s(adata, "bulk_labels", tmp_path, config=TINY, progress=False,
                                     train_config=sct.models.TrainConfig(epochs=1, batch_size=8, vocab_size=300))
    assert model.metadata["prompt"]["tie_break"] == "c2s" and model.metadata["prompt"]["seed"] == 42
    assert model.metadata["recipe"]["chosen"]["tie_break"] == {"value": "c2s", "from": "adata's cell sentences"}
    assert "adata's cell sentences were made with tie_break='c2s'" in caplog.text
    sct.tl.predict_cell_types(adata, model, progress=False)  # no refusal: the model reads these sentences
    assert "c2s_prediction" in adata.obs


def test_settings_that_contradict_the_sentences_are_refused_before_training(small_pbmc, tmp_path):
    adata = small_pbmc.copy()
    sct.pp.cell_sentences(adata, tie_break="c2s", progress=False)
    with pytest.raises(ValueError, match=r"made with tie_break='c2s'.*asked to train on prompts made with "
                                         r"tie_break='random'.*Nothing was trained"):
        sct.models.train_c2s(adata, "bulk_labels", tmp_path, settings=sct.pp.PromptSettings(n_genes=12),
                             train_config=sct.models.TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="tie_break='c2s'"), pytest.warns(DeprecationWarning):
        sct.models.train_c2s(adata, "bulk_labels", tmp_path, tie_break="random", epochs=1, progress=False)
    assert not (tmp_path / "checkpoints").exists()  # refused before the first step


# -- early stopping and what the run says ------------------------------------------------------------------------
def test_early_stopping_stops_keeps_the_best_epoch_and_says_so(small_pbmc, tmp_path, caplog):
    # a learning rate of 0: validation accuracy never improves on epoch 1, so patience 1 stops after epoch 2
    with caplog.at_level(logging.INFO, logger="sctranscoder.models"):
        model = train(small_pbmc, tmp_path, epochs=6, validation_size=0.25, patience=1, learning_rate=0.0,
                      min_steps=0)  # patience may stop from the first epoch
    meta = model.metadata
    assert meta["epochs"] == 6 and meta["epochs_run"] == 2 and meta["stopped_early"]
    assert meta["selected_epoch"] == 1 and [h["epoch"] for h in meta["validation_history"]] == [1, 2]
    assert meta["train_config"]["patience"] == 1 and meta["recipe"]["patience"] == 1
    assert "stopped after epoch 2 of 6" in caplog.text and "kept epoch 1" in caplog.text
    assert meta["steps"] == 2 * 5  # 36 training cells (60 less 12 held out, 12 validation): 5 steps an epoch


def test_advice_names_only_what_the_run_did_not_try():
    from types import SimpleNamespace

    from sctranscoder.models._trainer import C2STrainer

    tried = SimpleNamespace(recipe=sct.models.TrainConfig(), base_model=None, validating=True, augment=8,
                            model_config={"hidden_size": 64, "layers": 2, "heads": 4}, tokenizer_kind="word")
    advice = C2STrainer.advice(tried)
    text = "; ".join(advice)
    for used in ("validation", "augment", "smaller model", "tokenizer", "optimizer steps"):
        assert used not in text, used  # early stopping already trains as long as validation improves
    assert advice[0] == "more cells per type" and "base_model" in text
    untried = SimpleNamespace(recipe=sct.models.TrainConfig(patience=None), base_model=None, validating=False,
                              augment=0, model_config=None, tokenizer_kind="byte_bpe")
    text = "; ".join(C2STrainer.advice(untried))
    for advised in ("validation_size=0.15", "augment=8", "hidden_size", "tokenizer='word'", "min_steps"):
        assert advised in text, advised
