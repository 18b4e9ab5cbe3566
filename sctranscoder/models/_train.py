"""Train (or fine-tune) a causal LM on C2S cell-type prediction prompts, loss on the answer only."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from .._atomic import ordinary_file_mode
from .._progress import honours_progress, quiet_trainer
from ._load import METADATA_FILE, C2SModel, load
from ._tokenizer import train_tokenizer

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
CHECKPOINTS = "checkpoints"


def default_config(tokenizer, *, hidden_size: int = 128, layers: int = 4, heads: int = 4, max_positions: int = 1024,
                   dropout: float = 0.1):
    """A small GPT-NeoX with parallel residual, shaped like Pythia (the C2S-Pythia models)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions,
        use_parallel_residual=True,
        rotary_pct=0.25,
        hidden_dropout=dropout,
        attention_dropout=dropout,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _config_for(config, tokenizer):
    """A model config sized to ``tokenizer``: from :func:`default_config` (``config`` None or a dict of its
    keyword arguments), or a given transformers config with its vocabulary and special tokens set."""
    if config is None or isinstance(config, dict):
        return default_config(tokenizer, **(config or {}))
    config.vocab_size = len(tokenizer)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return config


def _dropout_copy(adata, fraction: float, seed: int, *, layer=None, use_raw=None):
    """A copy of ``adata`` whose expression matrix has a random ``fraction`` of stored values zeroed."""
    from scipy import sparse

    from ..pp._matrix import select_expression

    source = select_expression(adata, layer=layer, use_raw=use_raw, uppercase=False)
    matrix = sparse.csr_matrix(source.matrix, copy=True)
    rng = np.random.default_rng(seed)
    matrix.data[rng.random(matrix.data.size) < fraction] = 0
    noisy = adata.copy()
    if source.use_raw:
        import anndata as ad

        noisy.raw = ad.AnnData(matrix, obs=noisy.obs[[]], var=adata.raw.var)
    elif layer is not None:
        noisy.layers[layer] = matrix
    else:
        noisy.X = matrix
    return noisy


def held_out_split(labels, test_size: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out cells, stratified by label (every label keeps a training cell)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = np.zeros(labels.size, bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = int(round(test_size * members.size))
        n = min(n, members.size - 1)
        held[rng.choice(members, size=n, replace=False)] = True
    return held


def encode_examples(tokenizer, prompts, responses):
    """Token ids of prompt + answer + EOS, with labels masked on the prompt."""
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    examples = []
    for p, a in zip(prompt_ids, answer_ids):
        answer = a + [tokenizer.eos_token_id]
        examples.append({"input_ids": p + answer, "labels": [IGNORE_INDEX] * len(p) + answer})
    return examples


def per_example_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy averaged over each example's answer tokens, then over examples."""
    import torch.nn.functional as F

    logits = outputs["logits"][:, :-1].float()
    target = labels[:, 1:]
    token_loss = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none")
    counts = (target != IGNORE_INDEX).sum(dim=1).clamp(min=1)
    return (token_loss.sum(dim=1) / counts).mean()


def pad_batch(examples, pad_id: int):
    """Right-pad a list of examples into tensors (labels padded with -100)."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@honours_progress  # transformers' own bars and messages follow progress=
def train_c2s(
    adata,
    label_key: str,
    out_dir,
    *,
    n_genes: int = 100,
    base_model=None,
    config=None,
    vocab_size: int = 600,
    epochs: int = 10,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.05,
    lr_scheduler: str = "linear",
    label_smoothing: float = 0.0,
    test_size: float = 0.2,
    validation_size: float = 0.0,
    seed: int = 0,
    organism: str = "Homo sapiens",
    tie_break: str = "random",
    layer: str | None = None,
    use_raw: bool | None = None,
    augment: int = 0,
    augment_dropout: float = 0.1,
    generation_task: bool = False,
    resume: bool = True,
    callbacks=None,
    progress: bool = True,
) -> C2SModel:
    """Train a causal LM to answer C2S cell-type prediction prompts.

    The loss is on the answer (``"{cell_type}."`` and EOS) only. Cells are split
    into training and held-out sets, stratified by label; the held-out cells are
    recorded in ``sctranscoder.json`` beside the model so evaluation never sees
    training cells.

    Parameters
    ----------
    adata
        Cells to train on; cell sentences are computed from it (a copy).
    label_key
        ``adata.obs`` column with the cell types.
    out_dir
        Folder for the model (Hugging Face layout), its tokenizer, metadata and
        ``checkpoints/`` (one per epoch, resumable).
    n_genes
        Genes per sentence in the prompts.
    base_model
        ``None`` trains from scratch (a new byte-level BPE tokenizer on the
        sentences and ``config``, default :func:`default_config`); a folder, Hub id
        or :class:`C2SModel` is fine-tuned with its own tokenizer.
    config
        For a model trained from scratch: a transformers config (its vocabulary is
        set to the new tokenizer's), or a dict of :func:`default_config` arguments.
    vocab_size
        Vocabulary of the new tokenizer (from scratch only).
    epochs, batch_size, learning_rate, weight_decay, warmup_ratio
        Optimisation (AdamW, linear warmup then ``lr_scheduler`` decay).
    lr_scheduler
        A transformers scheduler name (``"linear"``, ``"cosine"``, ...).
    label_smoothing
        Label smoothing of the answer tokens' cross-entropy (0: none).
    test_size
        Fraction of each label held out.
    validation_size
        Fraction of each label's training cells set aside to choose the epoch: after
        every epoch their accuracy (candidate scoring, as
        :func:`sctranscoder.tl.predict_cell_types`) is measured, and the model of the
        best epoch is kept (the earliest, on ties). 0: keep the last epoch. The
        held-out cells are never looked at.
    seed
        Seed of the split, the initialisation and the data order.
    organism, tie_break, layer, use_raw
        As in :func:`sctranscoder.pp.prompts` and :func:`sctranscoder.pp.cell_sentences`.
    augment
        Extra copies of each training cell in which a random ``augment_dropout``
        fraction of its expressed genes is zeroed (simulated dropout, as in
        scRNA-seq capture) before its sentence is built; held-out cells are never
        augmented.
    augment_dropout
        Fraction of expressed genes zeroed in each augmented copy.
    generation_task
        Also train on C2S cell-type-conditioned generation (cell type in, the
        training cell's sentence out), as the C2S models are trained multi-task.
        Each example's loss is then its mean over its answer tokens, so long
        sentences do not outweigh one-word cell types.
    resume
        Continue from the last checkpoint in ``out_dir`` when there is one.
    callbacks
        ``transformers.TrainerCallback`` objects (logging, early stopping, ...).
    progress
        Show progress bars.

    Returns
    -------
    The trained :class:`C2SModel`, also saved in ``out_dir``.
    """
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from .. import pp

    if label_key not in adata.obs:
        raise KeyError(f"label_key={label_key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)}).")
    out_dir = Path(out_dir)
    set_seed(seed)
    labels = adata.obs[label_key].astype(str).to_numpy()
    held = held_out_split(labels, test_size, seed)
    sentence_options = dict(n_genes=n_genes, tie_break=tie_break, seed=seed, layer=layer, use_raw=use_raw)
    # a second split of the training cells, so the held-out split is the same with or without validation
    validation = held_out_split(labels[~held], validation_size, seed + 1) if validation_size else None
    if validation is not None and not validation.any():
        raise ValueError(f"validation_size={validation_size} sets aside no cell (each label keeps at least one "
                         "training cell); raise it, or pass validation_size=0 to keep the last epoch.")
    prompt_options = dict(label_key=label_key, n_genes=n_genes, organism=organism, template=0)
    if validation is not None:
        validation_cells = adata[~held][validation].copy()
        pp.cell_sentences(validation_cells, progress=False, **sentence_options)
        validation_table = pp.prompts(validation_cells, **prompt_options)
    train_cells = adata[~held][~validation].copy() if validation is not None else adata[~held].copy()
    pp.cell_sentences(train_cells, progress=progress, **sentence_options)
    table = pp.prompts(train_cells, **prompt_options)
    train_prompts, train_answers = list(table.prompt), list(table.response)
    last = _last_checkpoint(out_dir / CHECKPOINTS) if resume else None
    tokenizer, model = _starting_point(last, base_model, config, train_prompts + train_answers, vocab_size)
    for copy in range(augment):
        noisy = _dropout_copy(train_cells, augment_dropout, seed + 1 + copy, layer=layer, use_raw=use_raw)
        pp.cell_sentences(noisy, progress=False, **sentence_options)
        extra = pp.prompts(noisy, **prompt_options)
        train_prompts += list(extra.prompt)
        train_answers += list(extra.response)
    if generation_task:
        generation = pp.prompts(train_cells, **dict(prompt_options, task="cell_type_generation"))
        train_prompts += list(generation.prompt)
        train_answers += list(generation.response)
    examples = encode_examples(tokenizer, train_prompts, train_answers)
    longest = max(len(e["input_ids"]) for e in examples)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and longest > limit:
        raise ValueError(f"Prompts reach {longest} tokens but the model takes {limit}; lower n_genes.")

    args = TrainingArguments(
        output_dir=str(out_dir / CHECKPOINTS),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=int(warmup_ratio * math.ceil(len(examples) / batch_size) * epochs),
        lr_scheduler_type=lr_scheduler,
        label_smoothing_factor=label_smoothing,
        save_strategy="epoch",
        save_total_limit=1,
        logging_strategy="epoch",
        report_to=[],
        seed=seed,
        data_seed=seed,
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **(dict(eval_strategy="epoch", metric_for_best_model="accuracy", greater_is_better=True)
           if validation is not None else {}),
    )
    trainer_class = Trainer if validation is None else _validating_trainer(
        list(validation_table.prompt), validation_cells.obs[label_key].astype(str), sorted(set(labels)))
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=lambda batch: pad_batch(batch, tokenizer.pad_token_id),
        callbacks=callbacks,
        processing_class=tokenizer,
        compute_loss_func=per_example_loss if generation_task else None,
        eval_dataset=[] if validation is not None else None,
    )
    quiet_trainer(trainer, progress).train(resume_from_checkpoint=str(last) if last is not None else None)

    selection = {}
    if validation is not None:
        best = trainer.state.best_model_checkpoint  # HF keeps it (and the last) despite save_total_limit=1
        model = load(best).model
        history = [{"epoch": round(e["epoch"]), "accuracy": e["eval_accuracy"], "answer_nll": e["eval_answer_nll"]}
                   for e in trainer.state.log_history if "eval_accuracy" in e]
        selection = {"validation_cells": [str(c) for c in validation_cells.obs_names],
                     "validation_history": history,
                     "selected_epoch": round(_checkpoint_epoch(Path(best)))}
    model.eval()
    _save_atomically(out_dir, model, tokenizer, {
        "task": "cell_type_prediction",
        "label_key": label_key,
        "labels": sorted(set(labels)),
        "n_genes": int(n_genes),
        "organism": organism,
        "template": 0,
        "tie_break": tie_break,
        "seed": int(seed),
        "test_size": float(test_size),
        "held_out_cells": [str(c) for c in adata.obs_names[held]],
        "n_train_cells": int(train_cells.n_obs),
        **selection,
        "epochs": int(epochs),
        "label_smoothing": float(label_smoothing),
        "augment": int(augment),
        "augment_dropout": float(augment_dropout),
        "generation_task": bool(generation_task),
        "base_model": None if base_model is None else str(getattr(base_model, "name_or_path", base_model)),
    })
    return load(out_dir)


def _validating_trainer(prompts: list[str], truth_labels, labels: list[str]):
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
            scores = score_candidates(C2SModel(model, self.processing_class, "training"), prompts, labels,
                                      progress=False)
            model.train(was_training)
            metrics = {f"{metric_key_prefix}_accuracy": float((scores.argmax(axis=1) == truth).mean()),
                       f"{metric_key_prefix}_answer_nll": float(-scores[np.arange(truth.size), truth].mean())}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return ValidatingTrainer


def _checkpoint_epoch(checkpoint: Path) -> float:
    return json.loads((checkpoint / "trainer_state.json").read_text())["epoch"]


def _starting_point(last, base_model, config, texts, vocab_size):
    """Tokenizer and model to train: the last checkpoint, a base model, or new ones."""
    from transformers import AutoModelForCausalLM

    if last is not None:
        # Load the way from_pretrained does: Trainer's own resume loader misses
        # GPT-NeoX's renamed output layer (embed_out / lm_head) in transformers 5.
        logger.info("resuming from %s", last)
        start = load(last)
    elif base_model is not None:
        start = base_model if isinstance(base_model, C2SModel) else load(base_model)
    else:
        tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
        return tokenizer, AutoModelForCausalLM.from_config(_config_for(config, tokenizer))
    start.model.train()
    return start.tokenizer, start.model


def _last_checkpoint(folder: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not folder.is_dir():
        return None
    last = get_last_checkpoint(str(folder))
    return Path(last) if last else None


def _save_atomically(out_dir: Path, model, tokenizer, metadata: dict) -> None:
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
