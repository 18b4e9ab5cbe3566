"""In-silico gene knockouts: rebuild a cell's sentence without a gene and re-score every candidate label.

A knockout is the experiment behind a gene attribution: the model reads the
cell again with the gene gone, and every candidate answer is scored as
:func:`sctranscoder.tl.predict_cell_types` scores it.

- ``mode="zero"``: the gene's expression is set to 0 and the sentence is re-ranked
  from the expression matrix with the prompt settings the sentences were made
  with (same tie-break, seed, gene count, row index). The gene's stored entry is
  kept as an explicit zero, so the tie-break order of the other genes does not
  move: the gene leaves, the genes after it move up, and the next expressed gene
  enters at the end.
- ``mode="remove"``: the gene is deleted from the existing sentence; the genes
  after it move up and the sentence is one gene shorter.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from .._obs import require_obs_column
from .._progress import progress_bar

MODES = ("zero", "remove")


# -- which cells, genes and labels ----------------------------------------------------------------------------
def cell_positions(adata, cells) -> np.ndarray:
    """Row positions of ``cells`` (obs names, integer positions or a boolean mask; ``None``: every cell)."""
    if cells is None:
        return np.arange(adata.n_obs)
    values = np.atleast_1d(np.asarray(cells))
    if values.dtype == bool:
        if values.size != adata.n_obs:
            raise ValueError(f"cells is a boolean mask of {values.size} entries; adata has {adata.n_obs} cells.")
        return np.flatnonzero(values)
    if values.dtype.kind in "iu":
        bad = values[(values < 0) | (values >= adata.n_obs)]
        if bad.size:
            raise IndexError(f"cells holds positions {bad[:5].tolist()} outside 0..{adata.n_obs - 1}.")
        return values.astype(np.int64)
    index = adata.obs_names.get_indexer(values.astype(str))
    missing = values[index < 0]
    if missing.size:
        raise KeyError(f"cells {', '.join(map(repr, missing[:5].tolist()))} are not in adata.obs_names "
                       f"(e.g. {', '.join(map(repr, adata.obs_names[:3].tolist()))}); pass obs names or positions.")
    return index.astype(np.int64)


def gene_indices(names, genes) -> np.ndarray:
    """Indices of ``genes`` among the sentence gene ``names`` (case-insensitive, as sentences are uppercased)."""
    lookup = {str(n).upper(): i for i, n in enumerate(names)}
    wanted = [genes] if isinstance(genes, str) else list(genes)
    if not wanted:
        raise ValueError("genes is empty; name at least one gene to knock out.")
    found, unknown = [], []
    for gene in wanted:
        i = lookup.get(str(gene).upper())
        (unknown if i is None else found).append(gene if i is None else i)
    if unknown:
        hints = {g: difflib.get_close_matches(str(g).upper(), list(lookup), n=3) for g in unknown[:5]}
        said = "; ".join(f"{g!r} (close: {', '.join(c) or 'none'})" for g, c in hints.items())
        raise KeyError(f"{len(unknown)} genes are not among the {len(names)} genes sentences are built from: "
                       f"{said}. Use names from adata.var_names (or the gene_symbols column the model reads).")
    return np.asarray(found, np.int64)


def check_label(label, candidates) -> None:
    if label not in (None, "all") and label not in candidates:
        raise ValueError(f"label={label!r} is not among the candidate labels ({', '.join(candidates)}).")


def knockout_genes(adata, model, genes=None, *, cells=None, mode: str = "zero", label_key: str | None = None,
                   label: str | None = None, candidates=None, encoded=None, batch_size: int = 64,
                   progress: bool = True) -> pd.DataFrame:
    """Knock genes out of cells, one at a time, and re-score every candidate label with the model.

    Parameters
    ----------
    adata
        Cells; sentences are built with the model's prompt settings when missing.
    model
        A :class:`sctranscoder.models.C2SModel`.
    genes
        Gene names to knock out, each on its own. ``None``: every gene of each cell's sentence.
    cells
        Which cells (obs names, positions, or a boolean mask); default all.
    mode
        ``"zero"``: expression set to 0 and the sentence re-ranked from the matrix with
        the same prompt settings (tie-break, seed, gene count); ``"remove"``: the gene
        deleted from the existing sentence, the genes after it moving up.
    label_key
        ``adata.obs`` column with each cell's label, whose probability is reported
        (default: the model's training label key when ``adata`` has it, else the predicted call).
    label
        Report this label for every cell instead, or ``"all"``: one row per candidate label.
    candidates
        Labels scored (default: the model's training labels), as in :func:`predict_cell_types`.
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`).
    batch_size
        Most prompts per scoring pass. A cell's knockouts are batched by where they leave its own prompt, and
        each batch's unchanged start is run once (:func:`sctranscoder.models.score_variants`).

    Returns
    -------
    A tidy DataFrame, one row per cell, gene (and label): ``cell``, ``gene``,
    ``label``, ``in_sentence``, ``rank`` (1-based position in the sentence, 0 when
    absent), ``changed`` (the knockout changed the sentence), ``logp_before``,
    ``logp_after``, ``delta_logp`` (log P(label) over the candidates, as
    :func:`predict_cell_types`' probabilities), ``delta_logodds`` (of the same
    probability; it does not saturate for confident calls), ``call_before``, ``call_after``,
    ``call_changed`` and ``delta_logp_call`` (the change of log P of the call made
    before the knockout). ``attrs`` hold ``n_prompts`` and ``n_passes`` (scoring work).
    A knockout that leaves the sentence unchanged (the gene not expressed, or below
    the sentence's cut in ``"zero"`` mode) is not scored: its change is exactly 0.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be one of {MODES}.")
    rows, encoded, per_cell_genes, reported, candidates = _prepare(adata, model, genes, cells, label_key, label,
                                                                   candidates, encoded)
    return score_knockouts(adata, model, rows, encoded, encoded.settings, per_cell_genes, mode, reported,
                           candidates, batch_size=batch_size, progress=progress)


def _prepare(adata, model, genes, cells, label_key, label, candidates, encoded):
    """The cells (rows, encoded), genes (indices), reported labels and candidates of a knockout call."""
    from ..prompt import resolve_cells

    candidates = list(candidates) if candidates is not None else list(model.labels or [])
    if len(candidates) < 2:
        raise ValueError("Knockouts compare candidate labels: pass candidates=[...] (at least two).")
    check_label(label, candidates)
    if label_key is not None:
        require_obs_column(adata, label_key)
    if label is None and label_key is None:
        default = (model.metadata or {}).get("label_key")
        label_key = default if default in adata.obs else None
    rows = cell_positions(adata, cells)
    encoded = resolve_cells(adata, model, encoded, rows=rows, label_key=label_key, progress=False)
    names = np.asarray(encoded.genes, dtype=object)
    truth = None
    if label_key is not None:
        truth = adata.obs[label_key].astype(str).to_numpy()[rows]
        unknown = sorted(set(truth) - set(candidates))
        if unknown and label is None:
            raise ValueError(f"Cells carry labels that are not candidates ({', '.join(map(repr, unknown[:5]))}); "
                             "pass candidates= that include them, or label= to report one candidate.")
    per_cell_genes = None if genes is None else gene_indices(names, genes)
    reported = label if label is not None else truth if label_key is not None else None
    return rows, encoded, per_cell_genes, reported, candidates


def score_knockouts(adata, model, rows, encoded, settings, genes, mode: str, labels, candidates, *,
                    batch_size: int = 64, progress: bool = True) -> pd.DataFrame:
    """:func:`knockout_genes` on cells ``rows`` of ``adata`` (``encoded``: those cells), genes as indices
    (``None``: each cell's sentence; a list of arrays: each cell its own); ``labels``: per cell, ``"all"``,
    one label, or ``None`` (the call)."""
    from ..circuits import candidate_log_probabilities, log_odds
    from ..models import score_variants
    from ..pp import knockout_sentences, prompt_text

    names = np.asarray(encoded.genes, dtype=object)
    sentences = [np.asarray(sentence, np.int64) for sentence in encoded.span_ids]
    per_cell_genes = genes
    tokenizer, base_ids = model.tokenizer, encoded.prompt_ids()

    records, n_prompts, n_passes = [], 0, 0
    for i in progress_bar(range(len(rows)), desc="knockouts", unit="cells", enabled=progress):
        sentence = sentences[i]
        knocked = (sentence if per_cell_genes is None else per_cell_genes[i] if isinstance(per_cell_genes, list)
                   else per_cell_genes)
        variants = knockout_sentences(adata, settings, rows[i:i + 1], [sentence], knocked, mode)[0]
        texts = [prompt_text(settings, names[v].tolist()) for v in variants if v is not None]
        ids = tokenizer(texts, add_special_tokens=settings.add_special_tokens)["input_ids"] if texts else []
        prompts = [list(map(int, base_ids[i]))] + ids
        if mode == "zero" and per_cell_genes is None and len(prompts) - 1 != len(knocked):
            raise RuntimeError("A gene of the sentence did not change it when knocked out.")  # cannot happen
        scores, passes = score_variants(model, prompts[0], prompts[1:], candidates, batch_size=batch_size)
        n_prompts += len(prompts)
        n_passes += passes
        logp = candidate_log_probabilities(scores)
        after = iter(logp[1:])
        before, call = logp[0], int(np.argmax(logp[0]))
        wanted = labels[i] if labels is not None and not isinstance(labels, str) else labels
        reported = (list(range(len(candidates))) if wanted == "all" else [call] if wanted is None
                    else [candidates.index(wanted)])
        cell = str(encoded.obs_names[i])
        for g, variant in zip(knocked, variants):
            now = before if variant is None else next(after)
            rank = np.flatnonzero(sentence == g)
            common = {"cell": cell, "gene": str(names[g]), "in_sentence": bool(rank.size),
                      "rank": int(rank[0]) + 1 if rank.size else 0, "changed": variant is not None,
                      "call_before": candidates[call], "call_after": candidates[int(np.argmax(now))],
                      "delta_logp_call": float(now[call] - before[call])}
            for j in reported:
                records.append({**common, "label": candidates[j], "logp_before": float(before[j]),
                                "logp_after": float(now[j]), "delta_logp": float(now[j] - before[j]),
                                "delta_logodds": float(log_odds(now[j]) - log_odds(before[j]))})
    columns = ["cell", "gene", "label", "in_sentence", "rank", "changed", "logp_before", "logp_after", "delta_logp",
               "delta_logodds", "call_before", "call_after", "call_changed", "delta_logp_call"]
    table = pd.DataFrame(records)
    if table.empty:
        table = pd.DataFrame(columns=columns)
    else:
        table["call_changed"] = table.call_before != table.call_after
        table = table[columns]
    table.attrs.update(n_prompts=n_prompts, n_passes=n_passes, mode=mode)
    return table
