"""C2S prompts: cell-type prediction from a sentence, and sentence generation from a cell type."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._obs import require_obs_column

# The first prediction template is the canonical C2S cell-type prompt (the format
# the published C2S models were trained on); the others vary the wording only.
PREDICTION_TEMPLATES = (
    "The following is a list of {num_genes} gene names ordered by descending expression level in a "
    "{organism} cell. Your task is to give the cell type which this cell belongs to based on its gene "
    "expression.\nCell sentence: {cell_sentence}.\nThe cell type corresponding to these genes is:",
    "Here are the {num_genes} most expressed genes of a {organism} cell, from highest to lowest "
    "expression.\nCell sentence: {cell_sentence}.\nThis cell is most likely of the cell type:",
    "A {organism} cell expresses these {num_genes} genes, listed by decreasing expression.\n"
    "Cell sentence: {cell_sentence}.\nName the cell type of this cell:",
)
GENERATION_TEMPLATES = (
    "Generate a list of {num_genes} gene names in order of descending expression which represent a "
    "{organism} cell of cell type {cell_type}.\nCell sentence:",
    "List {num_genes} genes, from highest to lowest expression, that a {organism} {cell_type} cell "
    "would express.\nCell sentence:",
)
TEMPLATES = {"cell_type_prediction": PREDICTION_TEMPLATES, "cell_type_generation": GENERATION_TEMPLATES}
PREDICTION_RESPONSE = "{cell_type}."
GENERATION_RESPONSE = "{cell_sentence}."


def prompts(
    adata,
    *,
    task: str = "cell_type_prediction",
    label_key: str | None = None,
    n_genes: int | None = None,
    organism: str = "Homo sapiens",
    seed: int = 42,
    template: int | str | None = None,
) -> pd.DataFrame:
    """C2S prompts and responses for every cell.

    Parameters
    ----------
    adata
        AnnData on which :func:`sctranscoder.pp.cell_sentences` ran.
    task
        ``"cell_type_prediction"`` (sentence in, cell type out; no label needed
        for the prompt) or ``"cell_type_generation"`` (cell type in, sentence out).
    label_key
        ``adata.obs`` column with cell types. Needed for generation prompts and for
        prediction responses.
    n_genes
        Genes per sentence (``None``: every stored gene).
    organism
        Written into the prompt.
    seed
        Seed of the per-cell template choice, so prompts are reproducible.
    template
        Use one template for every cell: an index into the task's templates, or a
        format string with the same fields. ``None`` draws one per cell.

    Returns
    -------
    DataFrame indexed like ``adata.obs`` with ``prompt``, ``response`` (``None``
    where no label is known), ``template`` (the index drawn, -1 for a custom one)
    and ``sentence_start`` (character position of the cell sentence in the
    prompt, for :func:`sctranscoder.models.gene_spans`; -1 if it is not there).
    """
    from ._read import join_sentences, ranked_genes, stored_genes

    if task not in TEMPLATES:
        raise ValueError(f"task={task!r} is not one of {sorted(TEMPLATES)}.")
    if label_key is not None:
        require_obs_column(adata, label_key, role="the column whose answers follow the prompts")
    if task == "cell_type_generation" and label_key is None:
        raise ValueError("cell_type_generation prompts name the cell type: pass label_key=<obs column>.")
    templates = TEMPLATES[task]
    if template is None:
        choice = np.random.default_rng(seed).integers(len(templates), size=adata.n_obs)
    elif isinstance(template, str):
        templates, choice = (template,), np.zeros(adata.n_obs, int)
    elif 0 <= template < len(templates):
        choice = np.full(adata.n_obs, template)
    else:
        raise ValueError(f"template={template!r} must be None, a format string, or 0..{len(templates) - 1}.")
    indptr, ordered = ranked_genes(adata, n_genes)
    cell_sentences = join_sentences(indptr, ordered, stored_genes(adata))
    counts = np.diff(indptr).tolist()
    labels = adata.obs[label_key].astype(str).tolist() if label_key is not None else [None] * adata.n_obs
    prompt_text, responses, sentence_start = [], [], []
    for sentence, count, label, t in zip(cell_sentences, counts, labels, choice):
        fields = {
            "num_genes": count,
            "organism": organism,
            "cell_sentence": sentence,
            "cell_type": label,
        }
        prompt_text.append(templates[t].format(**fields))
        head, found, _ = templates[t].partition("{cell_sentence}")
        sentence_start.append(len(head.format(**fields)) if found else -1)
        if task == "cell_type_prediction":
            responses.append(None if label is None else PREDICTION_RESPONSE.format(**fields))
        else:
            responses.append(GENERATION_RESPONSE.format(**fields))
    template_index = np.full(adata.n_obs, -1) if isinstance(template, str) else choice
    return pd.DataFrame(
        {"prompt": prompt_text, "response": responses, "template": template_index,
         "sentence_start": np.asarray(sentence_start, np.int64)},
        index=adata.obs_names.copy(),
    )
