"""Cell-type prediction with a C2S model: candidate scoring, or free generation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..models._scoring import generate_answers, score_candidates

logger = logging.getLogger(__name__)


def _prompt_settings(model, n_genes, organism):
    meta = model.metadata
    n_genes = n_genes if n_genes is not None else meta.get("n_genes", 200)
    organism = organism if organism is not None else meta.get("organism", "Homo sapiens")
    return n_genes, organism


def predict_cell_types(
    adata,
    model,
    *,
    key_added: str = "c2s_prediction",
    candidates=None,
    mode: str = "score",
    n_genes: int | None = None,
    organism: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
):
    """Predict each cell's type with a C2S model.

    Parameters
    ----------
    adata
        Cells to predict; cell sentences are computed when missing.
    model
        A :class:`sctranscoder.models.C2SModel`.
    key_added
        ``adata.obs[key_added]`` gets the predicted label; in ``"score"`` mode
        ``adata.obsm[key_added + "_probabilities"]`` gets a cells x candidates table.
    candidates
        Labels to choose from (score mode); default: the labels the model was trained on. In
        ``"generate"`` mode they only speed decoding up (answers that follow them are read off
        one pass); the answers are the model's free greedy generations either way.
    mode
        ``"score"``: the log-likelihood of each candidate answer, softmaxed over
        candidates. ``"generate"``: greedy generation, answer parsed from the text.
    n_genes, organism
        Prompt settings; default: those the model was trained with.
    batch_size
        Prompts per forward pass.
    progress
        Show a progress bar.

    Returns
    -------
    ``None``; writes into ``adata``.
    """
    from .. import pp
    from ..pp._sentences import RANKS_KEY

    if mode not in ("score", "generate"):
        raise ValueError(f"mode={mode!r} must be 'score' or 'generate'.")
    n_genes, organism = _prompt_settings(model, n_genes, organism)
    if RANKS_KEY not in adata.obsm:
        pp.cell_sentences(adata, n_genes=n_genes, progress=progress)
    prompts = list(pp.prompts(adata, n_genes=n_genes, organism=organism, template=0).prompt)
    if mode == "generate":
        expected = list(candidates) if candidates is not None else model.labels
        adata.obs[key_added] = pd.Categorical(generate_answers(model, prompts, batch_size=batch_size,
                                                               candidates=expected, progress=progress))
        return None
    candidates = list(candidates) if candidates is not None else model.labels
    if not candidates:
        raise ValueError("The model records no training labels; pass candidates=[...] or use mode='generate'.")
    scores = score_candidates(model, prompts, candidates, batch_size=batch_size, progress=progress)
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    adata.obsm[f"{key_added}_probabilities"] = pd.DataFrame(probabilities, index=adata.obs_names, columns=candidates)
    adata.obs[key_added] = pd.Categorical(np.asarray(candidates)[probabilities.argmax(axis=1)], categories=candidates)
    return None
