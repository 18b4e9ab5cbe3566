"""Which tokens of a tokenized prompt belong to which gene of its cell sentence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GeneSpans:
    """Token-to-gene mapping of one tokenized prompt.

    Attributes
    ----------
    input_ids
        The prompt's token ids.
    genes
        The sentence's gene names, in sentence order.
    token_gene
        Per token: index into ``genes`` of the gene it spells, or -1 (prompt
        text, special tokens, answer).
    spans
        ``(n_genes, 2)`` token ranges ``[start, stop)``, one per gene.
    """

    input_ids: np.ndarray
    genes: list[str]
    token_gene: np.ndarray
    spans: np.ndarray

    @property
    def last_token_of_gene(self) -> np.ndarray:
        """Per token: whether it is the last token of its gene."""
        last = np.zeros(self.token_gene.size, bool)
        last[self.spans[:, 1] - 1] = True
        return last


def gene_char_spans(sentence: str, delimiter: str = " ", offset: int = 0) -> tuple[list[str], np.ndarray]:
    """Gene names of a sentence and their ``[start, stop)`` character ranges (shifted by ``offset``)."""
    genes = sentence.split(delimiter) if sentence else []
    starts = np.zeros(len(genes), np.int64)
    position = offset
    for i, gene in enumerate(genes):
        if not gene:
            raise ValueError(f"Empty gene name at position {i} of the sentence (doubled delimiter {delimiter!r}?).")
        starts[i] = position
        position += len(gene) + len(delimiter)
    lengths = np.array([len(g) for g in genes], np.int64)
    return genes, np.stack([starts, starts + lengths], axis=1) if genes else np.zeros((0, 2), np.int64)


def spans_from_offsets(offsets: np.ndarray, char_spans: np.ndarray) -> np.ndarray:
    """Per token, the gene whose characters it covers (-1 for none).

    ``offsets`` are the tokenizer's ``(start, stop)`` character ranges. A token
    may include the delimiter before its gene (a merged leading space) but must
    not reach into two genes.
    """
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    if len(char_spans) == 0 or len(offsets) == 0:
        return np.full(len(offsets), -1, np.int64)
    starts, stops = char_spans[:, 0], char_spans[:, 1]
    s, e = offsets[:, 0], offsets[:, 1]
    g = np.searchsorted(starts, e, side="left") - 1  # last gene starting before the token ends
    inside = (e > s) & (g >= 0)  # special tokens and padding have empty ranges
    inside &= stops[np.maximum(g, 0)] > s
    straddles = inside & (g > 0) & (stops[np.maximum(g - 1, 0)] > s)
    if straddles.any():
        t = int(np.flatnonzero(straddles)[0])
        raise ValueError(
            f"Token {t} (characters {s[t]}:{e[t]}) covers parts of two genes; this tokenizer merges across "
            "the delimiter, so tokens cannot be assigned to single genes."
        )
    return np.where(inside, g, -1)


def gene_spans(tokenizer, prompt: str, sentence: str, *, delimiter: str = " ", add_special_tokens: bool = True,
               sentence_start: int | None = None) -> GeneSpans:
    """Tokenize ``prompt`` and map its tokens to the genes of ``sentence`` inside it.

    Parameters
    ----------
    tokenizer
        A Hugging Face *fast* tokenizer (it reports character offsets).
    prompt
        The text the model reads.
    sentence
        The cell sentence, as it appears in ``prompt``.
    delimiter
        Separator between gene names in ``sentence``.
    add_special_tokens
        As in the tokenizer call (BOS tokens, for example).
    sentence_start
        Character position of ``sentence`` in ``prompt``; found by search when omitted.

    Returns
    -------
    :class:`GeneSpans`
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("gene_spans needs a fast tokenizer (character offsets); load it with use_fast=True.")
    if sentence_start is None:
        sentence_start = prompt.find(sentence)
        if sentence_start < 0:
            raise ValueError("The sentence does not occur in the prompt.")
    elif prompt[sentence_start : sentence_start + len(sentence)] != sentence:
        raise ValueError(f"The prompt does not hold the sentence at character {sentence_start}.")
    encoded = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    genes, char_spans = gene_char_spans(sentence, delimiter, sentence_start)
    return from_encoding(encoded["input_ids"], encoded["offset_mapping"], genes, char_spans)


def from_encoding(input_ids, offsets, genes: list[str], char_spans: np.ndarray) -> GeneSpans:
    """Build :class:`GeneSpans` from one encoding's ids and character offsets."""
    token_gene = spans_from_offsets(np.asarray(offsets, np.int64).reshape(-1, 2), char_spans)
    spans = np.zeros((len(genes), 2), np.int64)
    positions = np.flatnonzero(token_gene >= 0)
    owners = token_gene[positions]
    first = np.searchsorted(owners, np.arange(len(genes)), side="left")
    last = np.searchsorted(owners, np.arange(len(genes)), side="right")
    missing = np.flatnonzero(first == last)
    if missing.size:
        raise ValueError(
            f"{missing.size} genes got no token (e.g. {genes[missing[0]]!r}); the prompt may have been truncated "
            "(raise max_length) or the tokenizer drops characters."
        )
    spans[:, 0] = positions[first]
    spans[:, 1] = positions[last - 1] + 1
    return GeneSpans(np.asarray(input_ids), list(genes), token_gene, spans)
