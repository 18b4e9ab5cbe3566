"""In-silico gene knockouts: rebuild a cell's sentence without a gene and re-score every candidate label.

A knockout is the experiment behind a gene attribution: the model reads the
cell again with the gene gone, and every candidate answer is scored as
:func:`sctranscoder.tl.predict_cell_types` scores it.

- ``mode="zero"``: the gene's expression is set to 0 and the sentence is re-ranked
  from the expression matrix with the prompt settings the sentences were made
  with (same tie-break, seed, gene count, tie key: the cell's name, or its row for
  sentences keyed on rows). The gene's stored entry is
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


# -- sentences ------------------------------------------------------------------------------------------------
def _row_source(adata, settings):
    from ..pp._matrix import select_expression

    return select_expression(adata, layer=settings.layer, use_raw=settings.use_raw,
                             gene_symbols=settings.gene_symbols, uppercase=settings.uppercase)


def _read_row(matrix, row: int):
    """One row as canonical CSR ``(indices, data)``, exactly as the sentence builder reads it."""
    from ..pp._matrix import iter_csr_chunks

    chunk = next(iter_csr_chunks(matrix[row:row + 1], 1))
    return np.asarray(chunk.indices).copy(), np.asarray(chunk.data).copy()


def _c2s_permutations(matrix, rows, seed) -> dict:
    """cell2sentence's tie-break permutation of each row in ``rows`` (its stream runs over every earlier row)."""
    from ..pp._matrix import iter_csr_chunks
    from ..pp._sentences import _C2SStream

    last = int(max(rows)) + 1
    counts = np.concatenate([np.diff(c.indptr) for c in iter_csr_chunks(matrix[:last], 4096)])
    indptr = np.zeros(last + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    perms = _C2SStream(seed).permutations(indptr)
    return {int(r): perms[indptr[r]:indptr[r + 1]] for r in rows}


def rerank(indices, data, settings, key, c2s_perm=None, n_vars: int = 0) -> np.ndarray:
    """The top ``settings.n_genes`` gene indices of one row, best first, with the sentence builder's kernel
    (``key``: the row's random tie-break key, see ``pp._sentences.tie_keys``)."""
    from ..pp import _ranking
    from ..pp._matrix import value_codes
    from ..pp._sentences import TIE_BREAKS, rank_dtype_for

    codes = value_codes(np.asarray(data))
    n_expressed = int((codes != 0).sum())
    k = min(n_expressed, settings.n_genes)
    out_idx, out_rank = np.empty(k, np.int32), np.empty(k, rank_dtype_for(n_vars))  # the builder's dtypes: no recompile
    perms = np.asarray(c2s_perm, np.int64) if c2s_perm is not None else np.empty(0, np.int64)
    _ranking.rank_rows(np.array([0, indices.size], np.int64), np.asarray(indices), codes,
                       TIE_BREAKS[settings.tie_break], perms, settings.seed, np.array([key], np.uint64),
                       np.array([0, k], np.int64), out_idx, out_rank)
    return out_idx.astype(np.int64)


def prompt_text(settings, names) -> str:
    """The prediction prompt around a sentence, as :func:`sctranscoder.pp.prompts` writes it."""
    from ..pp._prompts import PREDICTION_TEMPLATES

    template = settings.template if isinstance(settings.template, str) else PREDICTION_TEMPLATES[settings.template]
    return template.format(num_genes=len(names), organism=settings.organism, cell_sentence=" ".join(names),
                           cell_type=None)


def knockout_sentences(adata, settings, rows, sentences, genes, mode: str) -> list[list]:
    """Per cell: one sentence (gene indices) per knocked-out gene, ``None`` where the sentence does not change.

    ``sentences`` are the cells' stored sentences; in ``"zero"`` mode the unknocked
    re-ranking must reproduce them (else the knockouts would also move other genes).
    """
    from ..pp._sentences import tie_keys

    if mode == "remove":
        return [[s[s != g] if (s == g).any() else None for g in genes] for s in sentences]
    source = _row_source(adata, settings)
    c2s = _c2s_permutations(source.matrix, rows, settings.seed) if settings.tie_break == "c2s" else {}
    keys = tie_keys(adata.obs_names, rows, settings.tie_key)
    variants = []
    for row, key, sentence in zip(rows, keys, sentences):
        indices, data = _read_row(source.matrix, int(row))
        perm = c2s.get(int(row))
        base = rerank(indices, data, settings, key, perm, len(source.genes))
        if not np.array_equal(base, sentence):
            raise ValueError(f"Cell {adata.obs_names[row]!r}: re-ranking its expression with the recorded settings "
                             f"({settings.tie_break} tie-break, seed {settings.seed}, {settings.n_genes} genes) does "
                             "not give its stored sentence, so a knockout would also reorder other genes. "
                             + _why_not_reproduced(settings))
        cell = []
        for g in genes:
            hit = np.flatnonzero(indices == g)
            if hit.size == 0 or data[hit[0]] == 0:  # not expressed: nothing to knock out
                cell.append(None)
                continue
            knocked = data.copy()
            knocked[hit[0]] = 0  # an explicit zero: the other genes keep their tie-break order
            variant = rerank(indices, knocked, settings, key, perm, len(source.genes))
            cell.append(None if np.array_equal(variant, base) else variant)
        variants.append(cell)
    return variants


def _why_not_reproduced(settings) -> str:
    """Why a stored sentence may not re-rank to itself, and the fix, for these settings."""
    if settings.tie_break == "random" and settings.tie_key == "row":
        return ("These sentences key their random tie-break on each cell's row (tie_key='row', as models trained "
                "before name-keyed ties read them), so they were probably made before adata was subset. Pass the "
                "AnnData the sentences were made on and pick cells with cells=, or rebuild the sentences on this one "
                "(del adata.obsm['c2s_ranks']).")
    if settings.tie_break == "c2s":
        return ("The c2s tie-break runs one random stream over the cells in order, so a cell's sentence depends on "
                "the cells before it: pass the AnnData the sentences were made on and pick cells with cells=, or "
                "rebuild the sentences on this one (del adata.obsm['c2s_ranks']).")
    return ("The expression changed since the sentences were made, or they were made from other data: rebuild "
            "them (del adata.obsm['c2s_ranks']).")


# -- the tool ---------------------------------------------------------------------------------------------------
def _log_probabilities(scores: np.ndarray) -> np.ndarray:
    """Log of predict_cell_types' probabilities: the candidates' log-likelihoods softmaxed over candidates."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_odds(logp):
    """``log(p / (1 - p))`` from ``log p``, exact near p = 1 (where log p saturates and log-odds does not)."""
    return logp - np.log(-np.expm1(np.minimum(logp, -1e-300)))


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
        Most prompts per scoring pass; a cell's unknocked prompt and all its knockouts share passes.

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
    from ._encode import encode_cells
    from ._spine import prompt_settings

    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be one of {MODES}.")
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
    if encoded is None:
        settings = prompt_settings(adata, model, label_key=label_key, progress=False)
        encoded = encode_cells(adata[rows], model, settings=settings, progress=False)
    else:
        encoded.matches(adata)
        settings = encoded.settings
        encoded = encoded.subset(rows)
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
    return score_knockouts(adata, model, rows, encoded, settings, per_cell_genes, mode, reported, candidates,
                           batch_size=batch_size, progress=progress)


def score_knockouts(adata, model, rows, encoded, settings, genes, mode: str, labels, candidates, *,
                    batch_size: int = 64, progress: bool = True) -> pd.DataFrame:
    """:func:`knockout_genes` on cells ``rows`` of ``adata`` (``encoded``: those cells), genes as indices
    (``None``: each cell's sentence); ``labels``: per cell, ``"all"``, one label, or ``None`` (the call)."""
    from ..models._scoring import score_candidates

    names = np.asarray(encoded.genes, dtype=object)
    sentences = [np.asarray(sentence, np.int64) for sentence in encoded.span_ids]
    per_cell_genes = genes
    tokenizer, base_ids = model.tokenizer, encoded.prompt_ids()

    records, n_prompts, n_passes = [], 0, 0
    for i in progress_bar(range(len(rows)), desc="knockouts", unit="cells", enabled=progress):
        sentence = sentences[i]
        knocked = sentence if per_cell_genes is None else per_cell_genes
        variants = knockout_sentences(adata, settings, rows[i:i + 1], [sentence], knocked, mode)[0]
        texts = [prompt_text(settings, names[v].tolist()) for v in variants if v is not None]
        ids = tokenizer(texts, add_special_tokens=settings.add_special_tokens)["input_ids"] if texts else []
        prompts = [list(map(int, base_ids[i]))] + ids
        if mode == "zero" and per_cell_genes is None and len(prompts) - 1 != len(knocked):
            raise RuntimeError("A gene of the sentence did not change it when knocked out.")  # cannot happen
        width = max(1, batch_size)
        scores = np.concatenate([score_candidates(model, prompts[s:s + width], candidates, batch_size=width,
                                                  progress=False) for s in range(0, len(prompts), width)])
        n_prompts += len(prompts)
        n_passes += -(-len(prompts) // width)
        logp = _log_probabilities(scores)
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
