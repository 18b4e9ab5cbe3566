"""Cell-type prediction with a C2S model: candidate scoring, or free generation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..models import generate_answers, score_candidates

logger = logging.getLogger(__name__)


def predict_cell_types(
    adata,
    model,
    *,
    key_added: str = "c2s_prediction",
    candidates=None,
    mode: str = "score",
    n_genes: int | None = None,
    organism: str | None = None,
    encoded=None,
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
        ``adata.obsm[key_added + "_probabilities"]`` gets a cells x candidates array and
        ``adata.uns[key_added]["candidates"]`` its column labels (an array rather than a table because labels
        such as "CD4+/CD25 T Reg" hold slashes, which zarr and h5 stores refuse as keys);
        :func:`sctranscoder.get.prediction_probabilities` reads both back as a table.
    candidates
        Labels to choose from (score mode); default: the labels the model was trained on. In
        ``"generate"`` mode they only speed decoding up (answers that follow them are read off
        one pass); the answers are the model's free greedy generations either way.
    mode
        ``"score"``: the log-likelihood of each candidate answer, softmaxed over
        candidates. ``"generate"``: greedy generation, answer parsed from the text.
    n_genes, organism
        Change single prompt settings; default: those the model was trained with
        (:class:`sctranscoder.pp.PromptSettings`).
    encoded
        These cells already tokenized (:func:`sctranscoder.tl.encode_cells`); default: tokenize them here.
    batch_size
        Prompts per forward pass.
    progress
        Show a progress bar.

    Returns
    -------
    The predictions, also written into ``adata``: in ``"score"`` mode a cells x candidates DataFrame of
    probabilities (its ``attrs["prediction"]`` the called labels); in ``"generate"`` mode the answers
    (a categorical Series).
    """
    from ..circuits import candidate_log_probabilities
    from ..prompt import resolve_cells

    if mode not in ("score", "generate"):
        raise ValueError(f"mode={mode!r} must be 'score' or 'generate'.")
    # the cells' own labels, when they have the model's label column: warned about if the model lacks them
    encoded = resolve_cells(adata, model, encoded, label_key=model.metadata.get("label_key"), progress=progress,
                            n_genes=n_genes, organism=organism)
    prompts = encoded.prompt_ids()
    if mode == "generate":
        expected = list(candidates) if candidates is not None else model.labels
        adata.obs[key_added] = pd.Categorical(generate_answers(model, prompts, batch_size=batch_size,
                                                               candidates=expected, progress=progress))
        return adata.obs[key_added].copy()
    candidates = list(candidates) if candidates is not None else model.labels
    if not candidates:
        raise ValueError("The model records no training labels; pass candidates=[...] or use mode='generate'.")
    scores = score_candidates(model, prompts, candidates, batch_size=batch_size, progress=progress)
    probabilities = np.exp(candidate_log_probabilities(scores))
    adata.obsm[f"{key_added}_probabilities"] = probabilities
    adata.uns[key_added] = {"mode": mode, "candidates": list(candidates)}
    adata.obs[key_added] = pd.Categorical(np.asarray(candidates)[probabilities.argmax(axis=1)], categories=candidates)
    table = pd.DataFrame(probabilities, index=adata.obs_names.copy(), columns=list(candidates))
    table.attrs["prediction"] = adata.obs[key_added].copy()
    return table
