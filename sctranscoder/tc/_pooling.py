"""Feature activity pooled from token rows: per document (max and mean over its tokens) and per span name (each
occurrence of a span is the max over its tokens; a name's activity is the mean over its occurrences, so a name
that occurs in many documents is not favoured over a rare one).

A name's *contrast* is the mean over its occurrences of the occurrence's activity minus the mean over every span
occurrence of the same document. After attention every position carries its document's context, so a direction
that tracks the document (a cell's type) is high on every gene of that cell and ranks the type's top genes first
whatever it reads; the contrast keeps only what sets a gene apart within its own cell."""

from __future__ import annotations

import numpy as np


class ActivityPool:
    """Accumulates a transcoder's feature activity over token rows, batch after batch of documents.

    Parameters
    ----------
    n_documents
        Documents (e.g. cells) rows come from.
    n_names
        Span names (e.g. genes) ``span_id`` indexes.
    d_hidden
        The transcoder's features.
    """

    def __init__(self, n_documents: int, n_names: int, d_hidden: int):
        import torch

        self.d_hidden = d_hidden
        self.sum = torch.zeros(n_documents, d_hidden)
        self.max = torch.zeros(n_documents, d_hidden)
        self.tokens = torch.zeros(n_documents)
        self.name_sum = torch.zeros(n_names, d_hidden, dtype=torch.float64)
        self.name_count = torch.zeros(n_names, dtype=torch.float64)
        self.span_sum = torch.zeros(n_documents, d_hidden, dtype=torch.float64)  # over span occurrences
        self.span_count = torch.zeros(n_documents, dtype=torch.float64)
        self.occurrence_pairs: list = []  # (document, name) of every span occurrence

    def add(self, transcoder, mlp_in, document, span_position, span_id, *, max_spans: int,
            rows_per_encode: int = 8192) -> None:
        """Encode ``mlp_in`` rows with ``transcoder`` and pool them.

        ``document``: each row's document; ``span_position``: its span's position in the document (-1 outside
        spans); ``span_id``: the span's name index; ``max_spans``: most spans a document holds. Rows of one span
        occurrence must be contiguous; they are never split between two encode batches.
        """
        import torch

        d_hidden = self.d_hidden
        occurrence_key = document * (max_spans + 1) + span_position.clamp_min(0)
        with torch.no_grad():
            row = 0
            while row < len(mlp_in):
                end = min(row + rows_per_encode, len(mlp_in))
                while end < len(mlp_in) and span_position[end] >= 0 and occurrence_key[end] == occurrence_key[end - 1]:
                    end += 1
                acts = transcoder.encode(mlp_in[row:end].to(transcoder.device)).float().cpu()
                doc = document[row:end]
                self.sum.index_add_(0, doc, acts)
                self.max.scatter_reduce_(0, doc.unsqueeze(1).expand_as(acts), acts, "amax")
                self.tokens.index_add_(0, doc, torch.ones(end - row))
                in_span = span_position[row:end] >= 0
                if in_span.any():
                    keys = occurrence_key[row:end][in_span]
                    unique_keys, occurrence, counts = torch.unique_consecutive(keys, return_inverse=True,
                                                                               return_counts=True)
                    per_occurrence = torch.zeros(len(unique_keys), d_hidden)
                    per_occurrence.scatter_reduce_(0, occurrence.unsqueeze(1).expand(-1, d_hidden), acts[in_span],
                                                   "amax", include_self=False)
                    first_row = torch.cumsum(counts, 0) - counts
                    occurrence_name = span_id[row:end][in_span][first_row]
                    self.name_sum.index_add_(0, occurrence_name, per_occurrence.double())
                    self.name_count.index_add_(0, occurrence_name, torch.ones(len(unique_keys), dtype=torch.float64))
                    occurrence_doc = doc[in_span][first_row]
                    self.span_sum.index_add_(0, occurrence_doc, per_occurrence.double())
                    self.span_count.index_add_(0, occurrence_doc, torch.ones(len(unique_keys), dtype=torch.float64))
                    self.occurrence_pairs.append(torch.stack([occurrence_doc, occurrence_name]))
                row = end

    def documents(self, pool: str = "max") -> np.ndarray:
        """Documents x features: ``"max"`` or ``"mean"`` over each document's rows."""
        if pool == "max":
            return self.max.numpy()
        return (self.sum / self.tokens.clamp_min(1).unsqueeze(1)).numpy()

    def names(self) -> np.ndarray:
        """Names x features: the mean over each name's occurrences (0 for a name that never occurred)."""
        return (self.name_sum / self.name_count.clamp_min(1).unsqueeze(1)).float().numpy()

    def name_contrast(self) -> np.ndarray:
        """Names x features: the mean over each name's occurrences of its activity minus its document's mean over
        span occurrences (0 for a name that never occurred)."""
        import torch
        from scipy import sparse

        if not self.occurrence_pairs:
            return np.zeros(tuple(self.name_sum.shape), dtype=np.float32)
        pairs = torch.cat(self.occurrence_pairs, dim=1).numpy()
        incidence = sparse.csr_matrix((np.ones(pairs.shape[1]), (pairs[1], pairs[0])),
                                      shape=(self.name_sum.shape[0], self.span_sum.shape[0]))
        document_mean = (self.span_sum / self.span_count.clamp_min(1).unsqueeze(1)).numpy()
        context = torch.from_numpy(np.asarray(incidence @ document_mean))
        return ((self.name_sum - context) / self.name_count.clamp_min(1).unsqueeze(1)).float().numpy()

    def occurrences(self) -> np.ndarray:
        return self.name_count.numpy().astype(np.int64)

    def document_tokens(self) -> np.ndarray:
        return self.tokens.numpy().astype(np.int64)
