"""Training a C2S model in named steps: setup, the epoch loop (transformers' Trainer), checkpoints, finish."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from .._atomic import ordinary_file_mode
from .._progress import quiet_trainer
from ._baseline import baseline_expression, compare_to_baseline, logistic_regression_accuracy
from ._config import config_for
from ._examples import dropout_copy, encode_examples, held_out_split, pad_batch, per_example_loss
from ._load import METADATA_FILE, C2SModel, load
from ._recipe import Recipe
from ._tokenizer import train_tokenizer

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


class C2STrainer:
    """:func:`sctranscoder.models.train_c2s` in steps: :meth:`setup`, :meth:`train`, :meth:`finish`.

    ``settings`` (a :class:`sctranscoder.pp.PromptSettings`) decide every prompt;
    ``recipe`` (a :class:`Recipe`) the split and the optimisation. Each step leaves
    its results as attributes, so a step can be run, inspected and tested alone.
    """

    def __init__(self, adata, label_key: str, out_dir, settings, recipe: Recipe, *, base_model=None, config=None,
                 vocab_size: int = 600, resume: bool = True, callbacks=None, progress: bool = True,
                 genes_from_recipe: bool = False):
        if label_key not in adata.obs:
            raise KeyError(f"label_key={label_key!r} is not a column of adata.obs "
                           f"(columns: {list(adata.obs.columns)}).")
        self.adata, self.label_key, self.out_dir = adata, label_key, Path(out_dir)
        self.settings, self.recipe = settings, recipe
        self.base_model, self.config, self.vocab_size = base_model, config, vocab_size
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
            logger.info("%d training cells: %d genes per prompt (small-data recipe)", len(self.train_index), genes)
            self.settings = self.settings.updated(n_genes=genes)

    def sentences(self) -> None:
        """Sentences and prompts of the training cells (and their dropout copies) and of the validation cells."""
        settings, recipe = self.settings, self.recipe
        self.train_cells = self.adata[self.train_index].copy()
        self._build_sentences(self.train_cells, progress=self.progress)
        copies = [self.train_cells]
        self.augment = recipe.copies(self.train_cells.n_obs)
        for copy in range(self.augment):
            noisy = dropout_copy(self.train_cells, recipe.augment_dropout, recipe.seed + 1 + copy,
                                 layer=settings.layer, use_raw=settings.use_raw)
            self._build_sentences(noisy)
            copies.append(noisy)
        self.genes = sentence_genes(copies, settings.n_genes)
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
        if self.last is not None:
            # Load the way from_pretrained does: Trainer's own resume loader misses
            # GPT-NeoX's renamed output layer (embed_out / lm_head) in transformers 5.
            logger.info("resuming from %s", self.last)
            start = load(self.last)
        elif self.base_model is not None:
            start = self.base_model if isinstance(self.base_model, C2SModel) else load(self.base_model)
        else:
            n_cells = self.train_cells.n_obs  # the tokenizer is learned on the real cells, not their copies
            texts = self.prompts[:n_cells] + self.answers[:n_cells]
            self.tokenizer = train_tokenizer(texts, kind=self.recipe.tokenizer_kind(n_cells), vocab_size=self.vocab_size)
            self.model_config = self.recipe.model_config(self.config, n_cells)
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

    def setup(self) -> None:
        """Split, sentences and prompts, tokenizer and model, examples."""
        from transformers import set_seed

        set_seed(self.recipe.seed)
        self.split()
        self.sentences()
        self.model()
        self.examples()

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
        if self.validating and recipe.patience:
            callbacks.append(patience_callback(recipe.patience))
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
        return {"validation_cells": [str(c) for c in self.adata.obs_names[self.validation_index]],
                "validation_size": float(self.validation_size),
                "validation_history": history,
                "selected_epoch": round(checkpoint_epoch(Path(best)))}

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
        return compare_to_baseline(model_accuracy, baseline, int(self.held.sum()))

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
            "recipe": {**recipe.to_dict(), "augment": int(self.augment), "epochs": int(self.epochs),
                       "validation_size": float(self.validation_size)},
            "steps": int(self.trainer.state.global_step),
            "label_smoothing": float(recipe.label_smoothing),
            "augment": int(self.augment),
            "augment_dropout": float(recipe.augment_dropout),
            "generation_task": bool(recipe.generation_task),
            "base_model": None if base is None else str(getattr(base, "name_or_path", base)),
            "genes": self.genes,
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


def patience_callback(patience: int):
    """A callback that stops training when the best validation accuracy is ``patience`` evaluations old.

    It reads the trainer's log history (saved with every checkpoint), so a resumed run stops where an
    uninterrupted one would.
    """
    from transformers import TrainerCallback

    class Patience(TrainerCallback):
        def on_evaluate(self, args, state, control, **kwargs):
            history = [e["eval_accuracy"] for e in state.log_history if "eval_accuracy" in e]
            if history and len(history) - 1 - int(np.argmax(history)) >= patience:
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
