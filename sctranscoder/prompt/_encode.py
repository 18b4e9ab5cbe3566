"""Cells' prompts tokenized once: token ids, which gene each token spells, where the answer starts."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd


@dataclass
class EncodedCells:
    """The prompts of a set of cells, tokenized once and passed to every step that reads them.

    Harvesting, prediction, transcoder evaluation, feature activity and circuits all
    take it (``encoded=``), so a set of cells is tokenized once per task.

    Attributes
    ----------
    input_ids
        Per cell: the prompt's token ids, followed by the answer's and EOS when
        ``label_key`` was given.
    token_gene
        Per cell and token: the gene's position in the cell's sentence, -1 outside genes.
    span_ids
        Per cell: for each sentence position, the gene's index in ``genes``.
    special
        Per cell and token: a special token (BOS, EOS).
    prompt_lengths
        Tokens of each prompt; the answer (if any) starts there.
    genes
        The gene names ``span_ids`` index.
    obs_names
        The cells, in order.
    settings
        The :class:`sctranscoder.pp.PromptSettings` the prompts were made with.
    label_key, labels
        The ``obs`` column whose answers follow the prompts, and those labels (``None``: prompts only).
    """

    input_ids: list
    token_gene: list
    span_ids: list
    special: list
    prompt_lengths: np.ndarray
    genes: np.ndarray
    obs_names: pd.Index
    settings: object
    label_key: str | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_tokens(self) -> int:
        return int(sum(len(ids) for ids in self.input_ids))

    def prompt_ids(self) -> list[np.ndarray]:
        """Per cell: the prompt's token ids alone (what prediction reads)."""
        return [ids[:n] for ids, n in zip(self.input_ids, self.prompt_lengths)]

    def answer_masks(self) -> list[np.ndarray]:
        """Per cell and token: the token is part of the answer (or its EOS), the tokens C2S models learn."""
        if self.label_key is None:
            raise ValueError("These prompts carry no answers; encode the cells with label_key=<obs column>.")
        return [np.arange(len(ids)) >= n for ids, n in zip(self.input_ids, self.prompt_lengths)]

    def subset(self, index) -> EncodedCells:
        """The cells at ``index`` (positions or a boolean mask), in that order."""
        index = np.arange(len(self))[np.asarray(index)] if np.asarray(index).dtype == bool else np.asarray(index)
        pick = [int(i) for i in np.atleast_1d(index)]
        return replace(self, input_ids=[self.input_ids[i] for i in pick],
                       token_gene=[self.token_gene[i] for i in pick], span_ids=[self.span_ids[i] for i in pick],
                       special=[self.special[i] for i in pick], prompt_lengths=self.prompt_lengths[pick],
                       obs_names=self.obs_names[pick], labels=None if self.labels is None else self.labels[pick])

    def documents(self, start: int, stop: int):
        """Cells ``start..stop-1`` as :class:`sctranscoder.harvest.Documents` (the harvest core's input)."""
        from ..harvest import Documents

        return Documents(self.input_ids[start:stop], self.token_gene[start:stop], self.span_ids[start:stop],
                         self.special[start:stop])

    def matches(self, adata, label_key: str | None = None) -> None:
        """Raise unless these encodings are of ``adata``'s cells (and carry ``label_key``'s answers when given)."""
        if not self.obs_names.equals(adata.obs_names):
            raise ValueError(f"encoded holds {len(self)} cells that are not adata's {adata.n_obs} cells in order; "
                             "encode these cells with sct.tl.encode_cells(adata, model).")
        if label_key is not None and label_key != self.label_key:
            raise ValueError(f"encoded carries answers from {self.label_key!r}, this call needs {label_key!r}; "
                             f"encode again with label_key={label_key!r}.")


def encode_cells(adata, model, *, settings=None, label_key: str | None = None, chunk_size: int = 1024,
                 progress: bool = True, **overrides) -> EncodedCells:
    """Tokenize every cell's prompt once, with each token's gene.

    Parameters
    ----------
    adata
        Cells; their sentences are built with the model's prompt settings when
        missing, and checked against them when present.
    model
        A :class:`sctranscoder.models.C2SModel` (its tokenizer must be a fast one: gene
        spans come from character offsets).
    settings
        :class:`sctranscoder.pp.PromptSettings`; default: the model's (``overrides``,
        e.g. ``n_genes=100``, change single fields).
    label_key
        ``adata.obs`` column: append each cell's answer (``"{label}."`` and EOS), as in training.
    chunk_size
        Cells tokenized at a time.

    Returns
    -------
    :class:`EncodedCells`. Prompts are never truncated: one longer than the model's context
    (``max_position_embeddings``) is refused with a ``ValueError`` naming the number of genes that fits when
    the model's positions are a learned table (GPT-2), and logged as a warning with that advice when they are
    rotary (GPT-NeoX, Llama, Gemma: they run past it, on positions never trained on).
    """
    from ..pp._read import stored_genes
    from ._context import check_context
    from ._settings import prompt_settings

    settings = settings if settings is not None else prompt_settings(adata, model, label_key=label_key,
                                                                      progress=progress, **overrides)
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("Encoding cells needs a fast tokenizer (character offsets give the gene spans).")
    genes = np.asarray(stored_genes(adata), dtype=object)
    parts = [_encode_chunk(adata[start:start + chunk_size], tokenizer, settings, label_key, genes)
             for start in range(0, adata.n_obs, chunk_size)]
    columns = [sum((part[i] for part in parts), []) for i in range(5)]
    check_context(model, columns[0], columns[1], [len(spans) for spans in columns[2]], adata.obs_names)
    labels = adata.obs[label_key].astype(str).to_numpy() if label_key is not None else None
    return EncodedCells(*columns[:4], np.asarray(columns[4], np.int64), genes, adata.obs_names.copy(), settings,
                        label_key, labels)


def _encode_chunk(cells, tokenizer, settings, label_key, genes):
    from .. import pp
    from ..models._spans import spans_from_offsets
    from ..pp._read import ranked_genes

    name_lengths = np.char.str_len(np.asarray(genes, dtype=str)).astype(np.int64)
    special_ids = np.asarray(sorted(set(tokenizer.all_special_ids)), np.int64)
    table = pp.prompts(cells, label_key=label_key, **settings.prompt_options())
    if (table.sentence_start < 0).any():
        raise ValueError("The prompt template has no {cell_sentence} field; gene spans need the sentence.")
    indptr, ordered = ranked_genes(cells, settings.n_genes)
    encoded = tokenizer(list(table.prompt), return_offsets_mapping=True,
                        add_special_tokens=settings.add_special_tokens)
    answers = tokenizer(list(table.response), add_special_tokens=False)["input_ids"] if label_key else None
    ids_list, genes_list, spans_list, special_list, prompt_lengths = [], [], [], [], []
    for i in range(cells.n_obs):
        cell_genes = ordered[indptr[i]:indptr[i + 1]]
        step = name_lengths[cell_genes] + 1
        starts = table.sentence_start.iat[i] + np.cumsum(step) - step
        token_gene = spans_from_offsets(encoded["offset_mapping"][i],
                                        np.stack([starts, starts + name_lengths[cell_genes]], axis=1))
        found = np.unique(token_gene[token_gene >= 0])
        if found.size != cell_genes.size:
            raise ValueError(f"Cell {cells.obs_names[i]!r}: {cell_genes.size - found.size} of its genes got no token.")
        ids = np.asarray(encoded["input_ids"][i], np.int64)
        prompt_lengths.append(ids.size)
        if answers is not None:
            answer = np.asarray(answers[i] + [tokenizer.eos_token_id], np.int64)
            ids = np.concatenate([ids, answer])
            token_gene = np.concatenate([token_gene, np.full(answer.size, -1)])
        ids_list.append(ids)
        genes_list.append(token_gene)
        spans_list.append(cell_genes)
        special_list.append(np.isin(ids, special_ids))
    return ids_list, genes_list, spans_list, special_list, prompt_lengths
