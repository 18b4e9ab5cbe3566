"""Texts in, token ids out: a list of strings or a ``datasets.Dataset`` column, tokenized with truncation
and an optional BOS, as :class:`sctranscoder.harvest.Documents` for the harvest core."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


class TextSource:
    """Random access to texts by index: a list/tuple of strings, or a column of a ``datasets.Dataset``.

    A dataset is read a slice at a time (``dataset[start:stop][column]``), never loaded whole.
    """

    def __init__(self, texts, text_column: str = "text"):
        if isinstance(texts, str):
            raise TypeError("texts is one string; pass a list of strings (one per document) or a datasets.Dataset.")
        self.column = text_column
        if hasattr(texts, "column_names"):  # a datasets.Dataset (duck-typed: datasets is imported lazily)
            if text_column not in texts.column_names:
                raise KeyError(f"text_column={text_column!r} is not a column of the dataset; it has "
                               f"{texts.column_names}. Pass text_column=<the column holding the texts>.")
            self.texts, self.is_dataset = texts, True
        else:
            try:
                self.texts = list(texts)
            except TypeError:
                raise TypeError(f"texts must be a list of strings or a datasets.Dataset, not "
                                f"{type(texts).__name__}.") from None
            self.is_dataset = False
        if len(self) == 0:
            raise ValueError("texts is empty; pass at least one text.")

    def __len__(self) -> int:
        return len(self.texts)

    def slice(self, start: int, stop: int) -> list[str]:
        chunk = self.texts[start:stop][self.column] if self.is_dataset else self.texts[start:stop]
        for i, text in enumerate(chunk):
            if not isinstance(text, str):
                raise TypeError(f"Text {start + i} is a {type(text).__name__}, not a string.")
        return list(chunk)

    def fingerprint(self) -> str:
        """A short identity of the texts, so a resumed harvest cannot silently switch corpora."""
        if self.is_dataset and getattr(self.texts, "_fingerprint", None):
            return f"dataset:{self.texts._fingerprint}:{self.column}"
        digest = hashlib.sha1()
        for start in range(0, len(self), 4096):
            for text in self.slice(start, min(len(self), start + 4096)):
                digest.update(text.encode())
                digest.update(b"\0")
        return digest.hexdigest()[:16]


@dataclass
class TokenizedTexts:
    """Token ids of some texts, with which positions hold special tokens (BOS, [CLS], [SEP])."""

    input_ids: list
    """One int64 array per text."""
    special: list
    """One boolean array per text: True where the token is special (not stored by default)."""


def resolve_bos(tokenizer, prepend_bos: bool | None, encoder: bool) -> bool:
    """Whether to put a BOS token first: encoders use their tokenizer's own specials ([CLS] ... [SEP]);
    causal LMs get a BOS when the tokenizer has one (as TransformerLens does) unless told otherwise."""
    if encoder:
        if prepend_bos:
            raise ValueError("prepend_bos is for causal LMs; an encoder's tokenizer adds its own [CLS] and [SEP].")
        return False
    has_bos = getattr(tokenizer, "bos_token_id", None) is not None
    if prepend_bos is None:
        return has_bos
    if prepend_bos and not has_bos:
        raise ValueError("prepend_bos=True, but the tokenizer has no BOS token; pass prepend_bos=False.")
    return bool(prepend_bos)


def tokenize(tokenizer, texts: list[str], *, max_length: int, prepend_bos: bool, encoder: bool,
             first_index: int = 0) -> TokenizedTexts:
    """Tokenize with truncation to ``max_length`` tokens in all (BOS or [CLS]/[SEP] included)."""
    if max_length < 2:
        raise ValueError(f"max_length={max_length} must be at least 2.")
    special_ids = np.asarray(sorted(set(getattr(tokenizer, "all_special_ids", []))), np.int64)
    if encoder:
        encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length)
    else:
        encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length - int(prepend_bos))
    ids_list, special_list = [], []
    for i, ids in enumerate(encoded["input_ids"]):
        ids = np.asarray(ids, np.int64)
        if prepend_bos:
            ids = np.concatenate([[tokenizer.bos_token_id], ids]).astype(np.int64)
        special = np.isin(ids, special_ids)
        if prepend_bos:
            special[0] = True
        if special.all():
            raise ValueError(f"Text {first_index + i} is empty (no tokens); drop empty texts first, e.g. "
                             "[t for t in texts if t.strip()] or dataset.filter(lambda row: row['text'].strip()).")
        ids_list.append(ids)
        special_list.append(special)
    return TokenizedTexts(ids_list, special_list)


def text_encoder(source: TextSource, tokenizer, *, max_length: int, prepend_bos: bool, encoder: bool):
    """``encode(start, stop)`` for :func:`sctranscoder.harvest.harvest`: texts ``start..stop-1`` as Documents
    (no spans: every token is its own unit, so the store's gene columns stay -1)."""
    from ..harvest import Documents

    def encode(start: int, stop: int) -> Documents:
        tokens = tokenize(tokenizer, source.slice(start, stop), max_length=max_length, prepend_bos=prepend_bos,
                          encoder=encoder, first_index=start)
        return Documents(tokens.input_ids, special=tokens.special)

    return encode


def token_strings(tokenizer, token_ids) -> list[str]:
    """Each token id as readable text (decoded alone, so a word piece shows as itself: ``"ing"``, ``" the"``)."""
    ids = np.asarray(token_ids, np.int64).reshape(-1)
    return [tokenizer.decode([int(i)]) for i in ids]


def document_tokens(tokenizer, texts, document: int, *, model=None, max_length: int = 128,
                    prepend_bos: bool | None = None, text_column: str = "text", encoder: bool | None = None):
    """The tokens of one text exactly as :func:`sctranscoder.llm.harvest` fed them to the model: a table with
    ``position``, ``token_id``, ``token`` (string) and ``special``; the map from a store row's
    ``(document, position)`` back to the input text, which circuits need.

    Pass the ``model`` (or ``encoder=True/False``) so BOS and special tokens are added as in the harvest.
    """
    import pandas as pd

    if encoder is None:
        if model is None:
            raise ValueError("Pass model= (or encoder=True/False) so the text is tokenized as in the harvest.")
        from ..harvest import layout_of

        encoder = layout_of(model).encoder
    source = TextSource(texts, text_column)
    if not 0 <= document < len(source):
        raise IndexError(f"document={document} is out of range; there are {len(source)} texts.")
    bos = resolve_bos(tokenizer, prepend_bos, encoder)
    tokens = tokenize(tokenizer, source.slice(document, document + 1), max_length=max_length, prepend_bos=bos,
                      encoder=encoder, first_index=document)
    ids = tokens.input_ids[0]
    return pd.DataFrame({"position": np.arange(ids.size), "token_id": ids, "token": token_strings(tokenizer, ids),
                         "special": tokens.special[0]})


def model_batches(model, tokenizer, texts, *, text_column, max_length, prepend_bos, batch_size):
    """Texts tokenized as in the harvest, as right-padded ``(input_ids, attention_mask, loss_mask)`` batches
    on the model's device."""
    from ..harvest import layout_of
    from ..tc import token_batches

    encoder = layout_of(model).encoder
    source = TextSource(texts, text_column)
    bos = resolve_bos(tokenizer, prepend_bos, encoder)
    tokens = tokenize(tokenizer, source.slice(0, len(source)), max_length=max_length, prepend_bos=bos,
                      encoder=encoder)
    device = next(model.parameters()).device
    return token_batches(tokens.input_ids, batch_size=batch_size, device=device)


def text_positions(tokenizer):
    """``input_ids -> bool (batch, tokens)``: True on text tokens, False on special ones (BOS, [CLS],
    [SEP], padding): where transcoders trained with ``drop_special`` stand in for the MLPs."""
    import torch

    special = torch.as_tensor(sorted(set(getattr(tokenizer, "all_special_ids", []))), dtype=torch.long)

    def positions(input_ids):
        return ~torch.isin(input_ids, special.to(input_ids.device))

    return positions
