"""Training a C2S model in named steps: setup, the epoch loop (transformers' Trainer), checkpoints, finish."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._atomic import ordinary_file_mode
from .._progress import quiet_trainer
from ._baseline import baseline_expression, compare_to_baseline, logistic_regression_accuracy
from ._config import config_for
from ._examples import dropout_copy, encode_examples, held_out_split, pad_batch, per_example_loss
from ._load import METADATA_FILE, C2SModel, load
from ._recipe import SMALL_CONFIG, SMALL_DATA_AUGMENT, TrainConfig
from ._tokenizer import train_tokenizer

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


class C2STrainer:
    """:func:`sctranscoder.models.train_c2s` in steps: :meth:`setup`, :meth:`train`, :meth:`finish`.

    ``settings`` (a :class:`sctranscoder.pp.PromptSettings`) decide every prompt;
    ``recipe`` (a :class:`TrainConfig`) the split and the optimisation. Each step leaves
    its results as attributes, so a step can be run, inspected and tested alone.
    ``chosen_settings`` names the prompt fields the caller set: sentences ``adata``
    already carries decide the others, and contradict these only with an error.
    """

    def __init__(self, adata, label_key: str, out_dir, settings, recipe: TrainConfig, *, base_model=None,
                 config=None, vocab_size: int | None = None, resume: bool = True, callbacks=None,
                 progress: bool = True, genes_from_recipe: bool = False, chosen_settings=()):
        if label_key not in adata.obs:
            raise KeyError(f"label_key={label_key!r} is not a column of adata.obs "
                           f"(columns: {list(adata.obs.columns)}).")
        self.adata, self.label_key, self.out_dir = adata, label_key, Path(out_dir)
        if vocab_size is not None:
            recipe = replace(recipe, vocab_size=int(vocab_size))
        self.settings, self.recipe = settings, recipe
        self.base_model, self.config, self.vocab_size = base_model, config, recipe.vocab_size
        self.chosen_settings = set(chosen_settings)
        self.choices = {}  # what the recipe chose and why, logged and recorded
        self.resume, self.callbacks, self.progress = resume, callbacks, progress
        self.genes_from_recipe = genes_from_recipe  # the user set no genes per prompt: the recipe may choose

    # -- setup -------------------------------------------------------------------------------------------

    def split(self) -> None:
        """Held-out cells (stratified), then a validation split of the others (so the held-out split is the
        same with or without validation)."""
        recipe = self.recipe
        self.labels = self.adata.obs[self.label_key].astype(str).to_numpy()
        self.candidates = sorted(set(self.labels))
        self.held = held_out_split(self.labels, recipe.test_size, recipe.seed)
        self.validation_size = recipe.validation_fraction(int((~self.held).sum()))
        validation = np.zeros(int((~self.held).sum()), bool)
        if self.validation_size:
            validation = held_out_split(self.labels[~self.held], self.validation_size, recipe.seed + 1)
            if not validation.any():
                raise ValueError(f"validation_size={self.validation_size} sets aside no cell (each label keeps at "
                                 "least one training cell); raise it, or pass validation_size=0 to keep the last "
                                 "epoch.")
        self.validating = bool(validation.any())
        rest = np.flatnonzero(~self.held)
        self.train_index, self.validation_index = rest[~validation], rest[validation]
        genes = self.recipe.prompt_genes(len(self.train_index)) if self.genes_from_recipe else None
        if genes is not None:
            self.settings = self.settings.updated(n_genes=genes)
            self._choose("n_genes", genes, "recipe for a model trained from scratch")
        self.match_sentences()

    def _choose(self, name: str, value, why: str) -> None:
        self.choices[name] = {"value": value, "from": why}

    def match_sentences(self) -> None:
        """Train on sentences made as ``adata``'s own (so the model reads them later), or refuse at once when
        the caller chose settings that contradict them."""
        from ..pp._sentences import PARAMS_KEY, RANKS_KEY
        from ..pp._settings import PromptSettings

        if RANKS_KEY not in self.adata.obsm or PARAMS_KEY not in self.adata.uns:
            return
        made = PromptSettings.of_sentences(self.adata)
        fields_of = {"source": ("layer", "use_raw")}
        adopted = {}
        for _ in range(4):  # one difference can hide the next (the seed shows once the tie-breaks agree)
            differences = self.settings.sentence_mismatches(self.adata)
            conflicts = {k: v for k, v in differences.items()
                         if set(fields_of.get(k, (k,))) & self.chosen_settings}
            if conflicts:
                found = ", ".join(f"{k}={v[0]!r}" for k, v in conflicts.items())
                wanted = ", ".join(f"{k}={v[1]!r}" for k, v in conflicts.items())
                raise ValueError(
                    f"adata's cell sentences were made with {found}, but train_c2s was asked to train on prompts "
                    f"made with {wanted}; the trained model would then refuse adata's sentences. Train on the "
                    f"sentences' settings (leave them out of settings=, or pass {found} in settings=), or rebuild "
                    "the sentences with the settings you want (sct.pp.cell_sentences), or delete "
                    "adata.obsm['c2s_ranks']. Nothing was trained.")
            if not differences:
                break
            step = {f: getattr(made, f) for k in differences for f in fields_of.get(k, (k,))}
            self.settings = replace(self.settings, **step)
            adopted.update(step)
        if not adopted:
            return
        for name, value in adopted.items():
            self._choose(name, value, "adata's cell sentences")
        logger.info("adata's cell sentences were made with %s: training on sentences made the same way",
                    ", ".join(f"{k}={v!r}" for k, v in adopted.items()))

    def sentences(self) -> None:
        """Sentences and prompts of the training cells (and their dropout copies) and of the validation cells."""
        settings, recipe = self.settings, self.recipe
        self.train_cells = self.adata[self.train_index].copy()
        self._build_sentences(self.train_cells, progress=self.progress)
        copies = [self.train_cells]
        self.augment = recipe.copies(self.train_cells.n_obs)
        if recipe.augment is None and self.augment:
            self._choose("augment", self.augment, "small-data recipe")
        for copy in range(self.augment):
            noisy = dropout_copy(self.train_cells, recipe.augment_dropout, recipe.seed + 1 + copy,
                                 layer=settings.layer, use_raw=settings.use_raw)
            self._build_sentences(noisy)
            copies.append(noisy)
        self.genes = sentence_genes(copies, settings.n_genes)
        self.n_genes_in_data = len(self.train_cells.uns["c2s"]["genes"])
        self.prompts, self.answers = [], []
        for cells in copies:
            table = self._prompts(cells)
            self.prompts += list(table.prompt)
            self.answers += list(table.response)
        n_cells = self.train_cells.n_obs
        if recipe.generation_task:
            table = self._prompts(self.train_cells, task="cell_type_generation")
            self.prompts += list(table.prompt)
            self.answers += list(table.response)
        self.validation_prompts = []
        if self.validating:
            self.validation_cells = self.adata[self.validation_index].copy()
            self._build_sentences(self.validation_cells)
            self.validation_prompts = list(self._prompts(self.validation_cells).prompt)
        logger.info("%d training cells (%d examples), %d validation cells, %d held out",
                    n_cells, len(self.prompts), len(self.validation_index), int(self.held.sum()))

    def _build_sentences(self, cells, progress: bool = False) -> None:
        """Sentences built afresh with the settings (any the cells carry were made for other uses)."""
        from .. import pp

        pp.cell_sentences(cells, progress=progress, **self.settings.sentence_options())

    def _prompts(self, cells, task: str = "cell_type_prediction"):
        from .. import pp

        return pp.prompts(cells, task=task, label_key=self.label_key, **self.settings.prompt_options())

    def checkpoint(self) -> Path | None:
        """The last checkpoint in ``out_dir`` to resume from (``None``: start afresh)."""
        return last_checkpoint(self.out_dir / CHECKPOINTS) if self.resume else None

    def model(self) -> None:
        """Tokenizer and model to train: the last checkpoint, the base model, or new ones (a byte-level BPE
        tokenizer learned on the training prompts, and ``config``)."""
        from transformers import AutoModelForCausalLM

        self.last = self.checkpoint()
        n_cells = self.train_cells.n_obs  # the tokenizer is learned on the real cells, not their copies
        if self.base_model is None:  # from scratch (or resuming a run that was): the recipe's tokenizer and model
            self.tokenizer_kind = self.recipe.tokenizer_kind(n_cells)
            if self.recipe.tokenizer is None:
                self._choose("tokenizer", self.tokenizer_kind, "default: one token per gene")
            self.model_config = self.recipe.model_config(self.config, n_cells)
            if self.config is None and self.model_config is not None:
                self._choose("config", dict(self.model_config), "small-data recipe")
        if self.last is not None:
            # Load the way from_pretrained does: Trainer's own resume loader misses
            # GPT-NeoX's renamed output layer (embed_out / lm_head) in transformers 5.
            logger.info("resuming from %s", self.last)
            start = load(self.last)
        elif self.base_model is not None:
            start = self.base_model if isinstance(self.base_model, C2SModel) else load(self.base_model)
        else:
            texts = self.prompts[:n_cells] + self.answers[:n_cells]
            self.tokenizer = train_tokenizer(texts, kind=self.tokenizer_kind, vocab_size=self.vocab_size)
            self.lm = AutoModelForCausalLM.from_config(config_for(self.model_config, self.tokenizer))
            return
        start.model.train()
        self.tokenizer, self.lm = start.tokenizer, start.model

    def examples(self) -> None:
        """Token ids of every training example, checked against the model's context."""
        self.train_examples = encode_examples(self.tokenizer, self.prompts, self.answers,
                                              add_special_tokens=self.settings.add_special_tokens)
        longest = max(len(e["input_ids"]) for e in self.train_examples)
        limit = getattr(self.lm.config, "max_position_embeddings", None)
        if limit is not None and longest > limit:
            raise ValueError(f"Prompts reach {longest} tokens but the model takes {limit}; lower n_genes.")
        self.epochs = self.recipe.epochs_for(len(self.train_examples))
        if self.recipe.epochs is None:
            self._choose("epochs", self.epochs, f"at least min_steps={self.recipe.min_steps} and at most "
                         f"max_steps={self.recipe.max_steps} optimizer steps, in whole epochs")

    def setup(self) -> None:
        """Split, sentences and prompts, tokenizer and model, examples."""
        from transformers import set_seed

        set_seed(self.recipe.seed)
        self.split()
        self.sentences()
        self.model()
        self.examples()
        self.log_recipe()

    def resolved_recipe(self) -> dict:
        """Every choice the run trains with (the config's open fields filled in)."""
        scratch = self.base_model is None
        config = getattr(self, "model_config", None)
        return {**self.recipe.to_dict(), "augment": int(self.augment), "epochs": int(self.epochs),
                "validation_size": float(self.validation_size), "n_genes": int(self.settings.n_genes),
                "patience": int(self.recipe.patience or 0) if self.validating else 0,
                "tokenizer": self.tokenizer_kind if scratch else None,  # None: the base model's own
                "model_config": (config if isinstance(config, dict) or config is None else config.to_dict())
                if scratch else None,
                "small_data": bool(self.recipe.small(len(self.train_index))),
                "chosen": self.choices}

    def log_recipe(self) -> None:
        """One line per choice the recipe made for this run, and the whole recipe."""
        for name, choice in self.choices.items():
            logger.info("%s=%r (%s)", name, choice["value"], choice["from"])
        recipe = self.resolved_recipe()
        logger.info("recipe: %s", ", ".join(f"{k}={v!r}" for k, v in recipe.items() if k != "chosen"))

    # -- the epoch loop ----------------------------------------------------------------------------------

    def train(self) -> None:
        """Run transformers' Trainer: an evaluation and a checkpoint after every epoch, resumed from the last
        checkpoint when there is one."""
        import torch
        from transformers import Trainer, TrainingArguments

        recipe = self.recipe
        steps_per_epoch = math.ceil(len(self.train_examples) / recipe.batch_size)
        args = TrainingArguments(
            output_dir=str(self.out_dir / CHECKPOINTS),
            num_train_epochs=self.epochs,
            per_device_train_batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            weight_decay=recipe.weight_decay,
            warmup_steps=int(recipe.warmup_ratio * steps_per_epoch * self.epochs),
            lr_scheduler_type=recipe.lr_scheduler,
            label_smoothing_factor=recipe.label_smoothing,
            save_strategy="epoch",
            save_total_limit=1,
            logging_strategy="epoch",
            report_to=[],
            seed=recipe.seed,
            data_seed=recipe.seed,
            disable_tqdm=not self.progress,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            remove_unused_columns=False,
            **(dict(eval_strategy="epoch", metric_for_best_model="accuracy", greater_is_better=True)
               if self.validating else {}),
        )
        callbacks = list(self.callbacks or [])
        if self.validating and recipe.stops_early():
            callbacks.append(patience_callback(recipe.patience, recipe.min_steps))
        trainer_class = Trainer
        if self.validating:
            trainer_class = validating_trainer(self._prompt_ids(self.validation_prompts),
                                               self.labels[self.validation_index], self.candidates)
        self.trainer = trainer_class(
            model=self.lm,
            args=args,
            train_dataset=self.train_examples,
            data_collator=lambda batch: pad_batch(batch, self.tokenizer.pad_token_id),
            callbacks=callbacks,
            processing_class=self.tokenizer,
            compute_loss_func=per_example_loss if recipe.generation_task else None,
            eval_dataset=[] if self.validating else None,
        )
        quiet_trainer(self.trainer, self.progress).train(
            resume_from_checkpoint=str(self.last) if self.last is not None else None)

    def _prompt_ids(self, prompts):
        return self.tokenizer(list(prompts), add_special_tokens=self.settings.add_special_tokens)["input_ids"]

    # -- finish --------------------------------------------------------------------------------------------

    def choose(self) -> dict:
        """Keep the epoch with the best validation accuracy (the earliest, on ties); the last one without
        validation. Returns what to record about the choice."""
        if not self.validating:
            return {}
        best = self.trainer.state.best_model_checkpoint  # HF keeps it (and the last) despite save_total_limit=1
        self.lm = load(best).model
        history = [{"epoch": round(e["epoch"]), "accuracy": e["eval_accuracy"], "answer_nll": e["eval_answer_nll"]}
                   for e in self.trainer.state.log_history if "eval_accuracy" in e]
        selected = round(checkpoint_epoch(Path(best)))
        run = history[-1]["epoch"] if history else int(self.epochs)
        stopped = run < self.epochs
        accuracy = next((h["accuracy"] for h in history if h["epoch"] == selected), float("nan"))
        if stopped:
            logger.info("stopped after epoch %d of %d: validation accuracy peaked at epoch %d (%.3f) and did not "
                        "improve for %d epochs (patience); kept epoch %d", run, self.epochs, selected, accuracy,
                        self.recipe.patience, selected)
        else:
            logger.info("trained %d epochs; kept epoch %d, the best on the validation split (%.3f)", run, selected,
                        accuracy)
        return {"validation_cells": [str(c) for c in self.adata.obs_names[self.validation_index]],
                "validation_size": float(self.validation_size),
                "validation_history": history,
                "selected_epoch": selected,
                "epochs_run": int(run),
                "stopped_early": bool(stopped)}

    def evaluate(self) -> dict:
        """Score the held-out cells' candidate answers (as :func:`sctranscoder.tl.predict_cell_types` does) and
        a logistic regression on the same split; warn when the model is far below it."""
        from ._scoring import score_candidates

        if not self.held.any() or len(self.candidates) < 2:  # nothing held out, or nothing to tell apart
            return {}
        held_cells = self.adata[self.held].copy()
        self._build_sentences(held_cells)
        ids = self._prompt_ids(self._prompts(held_cells).prompt)
        scores = score_candidates(C2SModel(self.lm, self.tokenizer, "training"), ids, self.candidates,
                                  progress=self.progress)
        truth = np.searchsorted(self.candidates, self.labels[self.held])
        model_accuracy = float((scores.argmax(axis=1) == truth).mean())
        x = baseline_expression(self.adata, self.settings, self.genes)
        baseline = logistic_regression_accuracy(x[~self.held], self.labels[~self.held], x[self.held],
                                                self.labels[self.held], seed=self.recipe.seed)
        logger.info("held-out accuracy %.3f (%d cells); logistic regression %.3f", model_accuracy,
                    int(self.held.sum()), baseline)
        return compare_to_baseline(model_accuracy, baseline, int(self.held.sum()), advice=self.advice())

    def advice(self) -> list[str]:
        """What to try when the model falls far below the regression: only what this run did not already do."""
        recipe, scratch = self.recipe, self.base_model is None
        tips = ["more cells per type"]
        if not (recipe.stops_early() and self.validating):  # early stopping already runs as long as it helps
            tips.append("more optimizer steps (TrainConfig(min_steps=..., epochs=...))")
        if not self.validating:
            tips.append("a validation split to choose the epoch (TrainConfig(validation_size=0.15))")
        if self.augment < SMALL_DATA_AUGMENT:
            tips.append(f"dropout augmentation (TrainConfig(augment={SMALL_DATA_AUGMENT}))")
        config = getattr(self, "model_config", None)
        hidden = ((config or {}).get("hidden_size", 128) if isinstance(config, dict) or config is None
                  else getattr(config, "hidden_size", 0))  # None: default_config's width
        if scratch and hidden > SMALL_CONFIG["hidden_size"]:
            tips.append("a smaller model (config={'hidden_size': 64, 'layers': 2})")
        if scratch and getattr(self, "tokenizer_kind", None) not in (None, "word"):
            tips.append("one token per gene (TrainConfig(tokenizer='word'))")
        if scratch:
            tips.append("fine-tuning a pretrained C2S model (base_model=)")
        return tips

    def metadata(self, selection: dict, evaluation: dict) -> dict:
        settings, recipe = self.settings, self.recipe
        base = self.base_model
        return {
            "task": "cell_type_prediction",
            "label_key": self.label_key,
            "labels": self.candidates,
            "prompt": settings.to_dict(),
            # the prompt settings also flat, for readers older than "prompt"
            "n_genes": settings.n_genes,
            "organism": settings.organism,
            "template": settings.template,
            "tie_break": settings.tie_break,
            "seed": settings.seed,
            "training_seed": int(recipe.seed),
            "test_size": float(recipe.test_size),
            "held_out_cells": [str(c) for c in self.adata.obs_names[self.held]],
            "n_train_cells": int(self.train_cells.n_obs),
            **selection,
            "held_out_evaluation": evaluation or None,
            "epochs": int(self.epochs),
            "train_config": recipe.to_dict(),  # as given
            "recipe": self.resolved_recipe(),  # as trained: every open choice filled in, and why
            "steps": int(self.trainer.state.global_step),
            "label_smoothing": float(recipe.label_smoothing),
            "augment": int(self.augment),
            "augment_dropout": float(recipe.augment_dropout),
            "generation_task": bool(recipe.generation_task),
            "base_model": None if base is None else str(getattr(base, "name_or_path", base)),
            "genes": self.genes,
            # one gene count, one name: the genes the model saw in its training sentences (its vocabulary of
            # genes; the length of "genes"); the expression matrix had n_genes_in_data
            "n_genes_seen": len(self.genes),
            "n_genes_in_data": int(self.n_genes_in_data),
        }

    def finish(self) -> C2SModel:
        """Choose the epoch, score the held-out cells, save the model atomically; return it loaded."""
        selection = self.choose()
        self.lm.eval()
        evaluation = self.evaluate()
        save_atomically(self.out_dir, self.lm, self.tokenizer, self.metadata(selection, evaluation))
        return load(self.out_dir)

    def run(self) -> C2SModel:
        self.setup()
        self.train()
        return self.finish()


def sentence_genes(cells_list, n_genes: int) -> list[str]:
    """Sorted names of the genes that occur in any of these cells' sentences (top ``n_genes``)."""
    from ..get._sentences import ranked_genes, stored_genes

    genes = set()
    for cells in cells_list:
        _, indices = ranked_genes(cells, n_genes)
        genes.update(str(g) for g in stored_genes(cells)[np.unique(indices)])
    return sorted(genes)


def validating_trainer(prompt_ids: list, truth_labels, labels: list[str]):
    """A Trainer whose evaluation scores the validation prompts' candidate answers: accuracy and the mean
    negative log-likelihood of the true answer."""
    from transformers import Trainer

    from ._scoring import score_candidates

    truth = np.searchsorted(labels, truth_labels)  # labels are sorted

    class ValidatingTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            model = self.model
            was_training = model.training
            model.eval()
            scores = score_candidates(C2SModel(model, self.processing_class, "training"), prompt_ids, labels,
                                      progress=False)
            model.train(was_training)
            metrics = {f"{metric_key_prefix}_accuracy": float((scores.argmax(axis=1) == truth).mean()),
                       f"{metric_key_prefix}_answer_nll": float(-scores[np.arange(truth.size), truth].mean())}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return ValidatingTrainer


def patience_callback(patience: int, min_steps: int = 0):
    """A callback that stops training when the best validation accuracy is ``patience`` evaluations old,
    never before ``min_steps`` optimizer steps: a model trained from scratch sits at chance for its first
    epochs on small data, and stopping on that plateau kept chance-level models (300 planted cells, 12
    epochs of 15 steps: 0.20 held-out accuracy; the same run with no early stop: 1.00).

    It reads the trainer's log history (saved with every checkpoint), so a resumed run stops where an
    uninterrupted one would.
    """
    from transformers import TrainerCallback

    class Patience(TrainerCallback):
        def on_evaluate(self, args, state, control, **kwargs):
            history = [e["eval_accuracy"] for e in state.log_history if "eval_accuracy" in e]
            stale = history and len(history) - 1 - int(np.argmax(history)) >= patience
            if stale and state.global_step >= min_steps:
                logger.info("validation accuracy has not improved for %d epochs; stopping", patience)
                control.should_training_stop = True
            return control

    return Patience()


def checkpoint_epoch(checkpoint: Path) -> float:
    return json.loads((checkpoint / "trainer_state.json").read_text())["epoch"]


def last_checkpoint(folder: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not folder.is_dir():
        return None
    last = get_last_checkpoint(str(folder))
    return Path(last) if last else None


def save_atomically(out_dir: Path, model, tokenizer, metadata: dict) -> None:
    """Write the final model into a temporary folder, then swap its files in."""
    import tempfile

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".final-", dir=out_dir))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    for item in staging.iterdir():
        if item.is_file():
            item.chmod(ordinary_file_mode())  # transformers writes the weights private (0600); others may read them
        os.replace(item, out_dir / item.name)
    staging.rmdir()
