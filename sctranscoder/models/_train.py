"""Train (or fine-tune) a causal LM on C2S cell-type prediction prompts, loss on the answer only."""

from __future__ import annotations

import warnings
from dataclasses import fields, replace

from .._progress import honours_progress
from ._config import config_for as _config_for  # noqa: F401  (older imports)
from ._config import default_config  # noqa: F401  (sct.models.default_config)
from ._examples import IGNORE_INDEX, encode_examples, held_out_split, pad_batch, per_example_loss  # noqa: F401
from ._examples import dropout_copy as _dropout_copy  # noqa: F401
from ._load import C2SModel
from ._recipe import MIN_STEPS, TrainConfig  # noqa: F401  (MIN_STEPS: older imports)
from ._trainer import CHECKPOINTS, C2STrainer  # noqa: F401


def training_prompt_settings(settings, *, seed: int, **overrides):
    """``settings`` (default :class:`~sctranscoder.pp.PromptSettings` with the sentence seed ``seed``) with the
    given keyword arguments (those not ``None``) in place of its fields."""
    from ..pp._settings import PromptSettings

    # the sentence seed followed the training seed before settings were one object; keep that by default
    return (settings if settings is not None else PromptSettings(seed=seed)).updated(**overrides)


PROMPT_KEYWORDS = ("n_genes", "organism", "tie_break", "layer", "use_raw")
"""Keywords of train_c2s before the config object that set prompt settings (now ``settings=``)."""


def _legacy_keywords(legacy: dict) -> tuple[dict, dict]:
    """Split train_c2s's keywords from before :class:`TrainConfig` into prompt and config fields, with a
    DeprecationWarning naming the new spelling."""
    config_fields = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(legacy) - config_fields - set(PROMPT_KEYWORDS))
    if unknown:
        raise TypeError(f"train_c2s() got unexpected keyword arguments {unknown}.")
    prompt = {k: v for k, v in legacy.items() if k in PROMPT_KEYWORDS}
    config = {k: v for k, v in legacy.items() if k in config_fields}
    said = []
    if config:
        said.append("train_config=sct.models.TrainConfig(" + ", ".join(f"{k}={v!r}" for k, v in config.items()) + ")")
    if prompt:
        said.append("settings=sct.pp.PromptSettings(" + ", ".join(f"{k}={v!r}" for k, v in prompt.items()) + ")")
    warnings.warn(f"train_c2s's keywords {sorted(legacy)} are deprecated and will be removed in the next release; "
                  f"pass {' and '.join(said)}.", DeprecationWarning, stacklevel=4)
    return prompt, config


@honours_progress  # transformers' own bars and messages follow progress=
def train_c2s(
    adata,
    label_key: str,
    out_dir,
    *,
    settings=None,
    train_config: TrainConfig | None = None,
    base_model=None,
    config=None,
    resume: bool = True,
    callbacks=None,
    progress: bool = True,
    **deprecated,
) -> C2SModel:
    """Train a causal LM to answer C2S cell-type prediction prompts.

    The loss is on the answer (``"{cell_type}."`` and EOS) only. Cells are split
    into training and held-out sets, stratified by label; the held-out cells are
    recorded in ``sctranscoder.json`` beside the model so evaluation never sees
    training cells. With a validation split of the training cells, the best epoch is
    kept and training stops when it stops improving (``train_config.patience``). At
    the end the held-out cells are scored (candidate scoring, as
    :func:`sctranscoder.tl.predict_cell_types`) next to a logistic regression on the
    same split, both recorded (``"held_out_evaluation"``); a model more than 10
    points below the regression raises a ``UserWarning`` saying what to try. Every
    choice of the recipe is logged (``logging``, level INFO) and recorded.

    Parameters
    ----------
    adata
        Cells to train on; cell sentences are computed from it (a copy). When
        ``adata`` already carries cell sentences (:func:`sctranscoder.pp.cell_sentences`),
        the model is trained on sentences made the same way (tie-break, seed, source),
        so it later reads them; ``settings`` that say otherwise are an error before
        any training.
    label_key
        ``adata.obs`` column with the cell types.
    out_dir
        Folder for the model (Hugging Face layout), its tokenizer, metadata and
        ``checkpoints/`` (one per epoch, resumable).
    settings
        A :class:`sctranscoder.pp.PromptSettings`: how each cell becomes a prompt,
        recorded with the model (``"prompt"`` in ``sctranscoder.json``) for every
        later use. ``None``: the settings of ``adata``'s sentences where it has
        them, else the defaults with the tie-break seeded by ``train_config.seed``;
        and, for a model trained from scratch on fewer than 500 training cells, 50
        genes per prompt.
    train_config
        A :class:`TrainConfig`: the split, the tokenizer and the optimisation.
        ``None``: ``TrainConfig()``, whose open choices scale with the data.
    base_model
        ``None`` trains from scratch (a new tokenizer on the sentences, see
        ``TrainConfig.tokenizer``, and ``config``); a folder, Hub id or
        :class:`C2SModel` is fine-tuned with its own tokenizer.
    config
        For a model trained from scratch: a transformers config (its vocabulary is
        set to the new tokenizer's), or a dict of :func:`default_config` arguments.
        ``None``: :func:`default_config`'s, narrower (``hidden_size=64``, 2 layers)
        below 500 training cells, where it overfits less and trains faster.
    resume
        Continue from the last checkpoint in ``out_dir`` when there is one.
    callbacks
        ``transformers.TrainerCallback`` objects (logging, early stopping, ...).
    progress
        Show progress bars.
    **deprecated
        The keywords of earlier releases, each a field of :class:`TrainConfig`
        (``epochs``, ``seed``, ``vocab_size``, ...) or of the prompt settings
        (``n_genes``, ``organism``, ``tie_break``, ``layer``, ``use_raw``, which
        override ``settings``). They work for one more release, with a ``DeprecationWarning``.

    Returns
    -------
    The trained :class:`C2SModel`, also saved in ``out_dir``. Its ``sctranscoder.json``
    records the prompt settings, the config as given and as resolved, the held-out (and
    validation) cells, the genes its training sentences use (``"genes"``, counted in
    ``"n_genes_seen"``; the data's own gene count is ``"n_genes_in_data"``) and the
    held-out evaluation.
    """
    prompt_overrides, config_overrides = _legacy_keywords(deprecated) if deprecated else ({}, {})
    train_config = replace(train_config or TrainConfig(), **config_overrides)
    genes_from_recipe = prompt_overrides.get("n_genes") is None and settings is None and base_model is None
    # prompt fields the caller chose: where adata's sentences differ in one of these, that is an error
    chosen = ({f for f in settings.to_dict()} if settings is not None else set()) | {
        k for k, v in prompt_overrides.items() if v is not None}
    settings = training_prompt_settings(settings, seed=train_config.seed, **prompt_overrides)
    trainer = C2STrainer(adata, label_key, out_dir, settings, train_config, base_model=base_model, config=config,
                         resume=resume, callbacks=callbacks, progress=progress, genes_from_recipe=genes_from_recipe,
                         chosen_settings=chosen)
    return trainer.run()
