"""Train (or fine-tune) a causal LM on C2S cell-type prediction prompts, loss on the answer only."""

from __future__ import annotations

from .._progress import honours_progress
from ._config import config_for as _config_for  # noqa: F401  (older imports)
from ._config import default_config  # noqa: F401  (sct.models.default_config)
from ._examples import IGNORE_INDEX, encode_examples, held_out_split, pad_batch, per_example_loss  # noqa: F401
from ._examples import dropout_copy as _dropout_copy  # noqa: F401
from ._load import C2SModel
from ._recipe import MIN_STEPS, Recipe
from ._trainer import CHECKPOINTS, C2STrainer  # noqa: F401


def training_prompt_settings(settings, *, seed: int, **overrides):
    """``settings`` (default :class:`~sctranscoder.pp.PromptSettings` with the sentence seed ``seed``) with the
    given keyword arguments (those not ``None``) in place of its fields."""
    from ..pp._settings import PromptSettings

    # the sentence seed followed the training seed before settings were one object; keep that by default
    return (settings if settings is not None else PromptSettings(seed=seed)).updated(**overrides)


@honours_progress  # transformers' own bars and messages follow progress=
def train_c2s(
    adata,
    label_key: str,
    out_dir,
    *,
    settings=None,
    n_genes: int | None = None,
    base_model=None,
    config=None,
    vocab_size: int = 600,
    epochs: int | None = None,
    min_steps: int = MIN_STEPS,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.05,
    lr_scheduler: str = "linear",
    label_smoothing: float = 0.0,
    test_size: float = 0.2,
    validation_size: float | None = None,
    patience: int | None = None,
    seed: int = 0,
    organism: str | None = None,
    tie_break: str | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    augment: int | None = None,
    augment_dropout: float = 0.1,
    generation_task: bool = False,
    tokenizer: str | None = None,
    resume: bool = True,
    callbacks=None,
    progress: bool = True,
) -> C2SModel:
    """Train a causal LM to answer C2S cell-type prediction prompts.

    The loss is on the answer (``"{cell_type}."`` and EOS) only. Cells are split
    into training and held-out sets, stratified by label; the held-out cells are
    recorded in ``sctranscoder.json`` beside the model so evaluation never sees
    training cells. At the end the held-out cells are scored (candidate scoring, as
    :func:`sctranscoder.tl.predict_cell_types`) next to a logistic regression on the
    same split, both recorded (``"held_out_evaluation"``); a model more than 10
    points below the regression raises a ``UserWarning`` saying what to try.

    Parameters
    ----------
    adata
        Cells to train on; cell sentences are computed from it (a copy).
    label_key
        ``adata.obs`` column with the cell types.
    out_dir
        Folder for the model (Hugging Face layout), its tokenizer, metadata and
        ``checkpoints/`` (one per epoch, resumable).
    settings
        A :class:`sctranscoder.pp.PromptSettings`: how each cell becomes a prompt,
        recorded with the model (``"prompt"`` in ``sctranscoder.json``) for every
        later use. ``None``: the defaults, with the sentences' tie-break seeded by
        ``seed``.
    n_genes
        Genes per sentence in the prompts (overrides ``settings``). ``None``: the settings' (default 200), or
        for a model trained from scratch on fewer than 500 training cells without ``settings``, 50.
    base_model
        ``None`` trains from scratch (a new tokenizer on the sentences, see
        ``tokenizer``, and ``config``, default :func:`default_config`); a folder, Hub id
        or :class:`C2SModel` is fine-tuned with its own tokenizer.
    config
        For a model trained from scratch: a transformers config (its vocabulary is
        set to the new tokenizer's), or a dict of :func:`default_config` arguments.
        ``None``: :func:`default_config`'s, narrower (``hidden_size=64``, 2 layers)
        below 500 training cells, where it overfits less and trains faster.
    vocab_size
        Vocabulary of the new tokenizer (from scratch only).
    epochs
        Passes over the training examples. ``None``: 10, or as many as reach
        ``min_steps`` optimizer steps (at most 100), so small data sets get enough
        steps.
    min_steps
        Optimizer steps that ``epochs=None`` reaches at least.
    batch_size, learning_rate, weight_decay, warmup_ratio
        Optimisation (AdamW, linear warmup then ``lr_scheduler`` decay).
    lr_scheduler
        A transformers scheduler name (``"linear"``, ``"cosine"``, ...).
    label_smoothing
        Label smoothing of the answer tokens' cross-entropy (0: none).
    test_size
        Fraction of each label held out.
    validation_size
        Fraction of each label's training cells set aside to choose the epoch: after
        every epoch their accuracy (candidate scoring) is measured, and the model of
        the best epoch is kept (the earliest, on ties). 0: keep the last epoch.
        ``None``: 0.15 when that sets aside at least 20 cells, else 0. The held-out
        cells are never looked at.
    patience
        With a validation split: stop when its accuracy has not improved for this
        many epochs. ``None``: run every epoch.
    seed
        Seed of the split, the initialisation and the data order (and of the
        sentences' tie-break when ``settings`` is ``None``).
    organism, tie_break, layer, use_raw
        As in :func:`sctranscoder.pp.prompts` and :func:`sctranscoder.pp.cell_sentences`;
        given, they override ``settings``.
    augment
        Extra copies of each training cell in which a random ``augment_dropout``
        fraction of its expressed genes is zeroed (simulated dropout, as in
        scRNA-seq capture) before its sentence is built; held-out cells are never
        augmented. ``None``: 2 when ``epochs`` is ``None`` (the steps are then
        set by ``min_steps``, so copies cost no time) and there are fewer than 500
        training cells, else 0.
    augment_dropout
        Fraction of expressed genes zeroed in each augmented copy.
    generation_task
        Also train on C2S cell-type-conditioned generation (cell type in, the
        training cell's sentence out), as the C2S models are trained multi-task.
        Each example's loss is then its mean over its answer tokens, so long
        sentences do not outweigh one-word cell types.
    tokenizer
        Kind of tokenizer learned for a model trained from scratch: ``"byte_bpe"`` (as GPT-NeoX / Pythia),
        ``"sentencepiece"`` or ``"word"`` (one token per gene). ``None``: ``"word"`` below 500 training cells,
        where a new model cannot learn which subwords make up which gene, else ``"byte_bpe"``.
    resume
        Continue from the last checkpoint in ``out_dir`` when there is one.
    callbacks
        ``transformers.TrainerCallback`` objects (logging, early stopping, ...).
    progress
        Show progress bars.

    Returns
    -------
    The trained :class:`C2SModel`, also saved in ``out_dir``. Its ``sctranscoder.json``
    records the prompt settings, the held-out (and validation) cells, the genes its
    training sentences use (``"genes"``) and the held-out evaluation.
    """
    genes_from_recipe = n_genes is None and settings is None and base_model is None
    recipe = Recipe(epochs=epochs, min_steps=min_steps, batch_size=batch_size, learning_rate=learning_rate,
                    weight_decay=weight_decay, warmup_ratio=warmup_ratio, lr_scheduler=lr_scheduler,
                    label_smoothing=label_smoothing, test_size=test_size, validation_size=validation_size,
                    patience=patience, seed=seed, augment=augment, augment_dropout=augment_dropout,
                    generation_task=generation_task, tokenizer=tokenizer)
    settings = training_prompt_settings(settings, seed=seed, n_genes=n_genes, organism=organism, tie_break=tie_break,
                               layer=layer, use_raw=use_raw)
    trainer = C2STrainer(adata, label_key, out_dir, settings, recipe, base_model=base_model, config=config,
                         vocab_size=vocab_size, resume=resume, callbacks=callbacks, progress=progress,
                         genes_from_recipe=genes_from_recipe)
    return trainer.run()
