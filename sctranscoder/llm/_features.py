"""What a transcoder feature responds to: the tokens (and their contexts) where it fires most."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _layer_of(transcoder, layer):
    if layer is not None:
        return int(layer)
    recorded = getattr(transcoder, "metadata", {}).get("layer")
    if recorded is None:
        raise ValueError("This transcoder does not record its layer; pass layer=.")
    return int(recorded)


def _marked(tokenizer, left: list, token: int, right: list) -> str:
    """The context decoded as text, with the token between ⟦ ⟧ (found through the decoded prefixes, so
    word pieces and byte-level BPE spaces come out as the tokenizer writes them)."""
    before = tokenizer.decode(left)
    through = tokenizer.decode(left + [token])
    whole = tokenizer.decode(left + [token] + right)
    if through.startswith(before) and whole.startswith(through):
        return f"{before}⟦{through[len(before):]}⟧{whole[len(through):]}"
    return f"{before}⟦{tokenizer.decode([token])}⟧{tokenizer.decode(right)}"


def feature_activations(transcoder, store, layer: int, feature: int, *, batch_size: int = 4096) -> np.ndarray:
    """One feature's activation on every row of a store (store order)."""
    import torch

    parts = []
    with torch.no_grad():
        for chunk in store.chunks:
            x, _ = store.read(layer, chunks=[chunk])
            for start in range(0, len(x), batch_size):
                rows = x[start : start + batch_size].to(transcoder.device)
                parts.append(transcoder.encode(rows)[:, feature].float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def top_activations(transcoder, source, feature: int, k: int = 10, *, tokenizer, model=None, layer=None,
                    window: int = 8, text_column: str = "text", max_length: int = 128,
                    prepend_bos: bool | None = None, batch_size: int = 16):
    """The ``k`` tokens on which a feature fires most, each with its context.

    Parameters
    ----------
    transcoder
        A trained transcoder (its layer is read from its metadata unless ``layer`` is given).
    source
        An activation store (or its folder) holding that layer, or texts (a list of
        strings or a ``datasets.Dataset``), which are harvested with ``model``.
    feature
        The feature's index.
    tokenizer
        The model's tokenizer (to turn token ids back into text).
    model
        Needed when ``source`` is texts.
    window
        Tokens of context on each side (from the stored tokens of the same text:
        a store harvested with ``subsample < 1`` has gaps).

    Returns
    -------
    A DataFrame sorted by activation: ``document``, ``position``, ``activation``,
    ``token_id``, ``token`` and ``context`` (the window as text, the token between ⟦ ⟧).
    Only tokens where the feature fires (activation > 0) are listed, so there may be fewer than ``k``.
    """
    import pandas as pd

    from ._harvest import harvest
    from ._text import token_strings
    from ._transcoders import _open

    layer = _layer_of(transcoder, layer)
    if not 0 <= int(feature) < transcoder.cfg.d_hidden:
        raise IndexError(f"feature={feature} is out of range; the transcoder has {transcoder.cfg.d_hidden} features.")
    if isinstance(source, (str, Path)) or hasattr(source, "batches"):
        store = _open(source)
    else:
        if model is None:
            raise ValueError("source is texts: pass model= to harvest them.")
        store = harvest(model, tokenizer, source, [layer], None, text_column=text_column, max_length=max_length,
                        prepend_bos=prepend_bos, batch_size=batch_size, dtype="float32", progress=False)
    acts = feature_activations(transcoder, store, layer, int(feature))
    order = np.argsort(-acts, kind="stable")[:k]
    order = order[acts[order] > 0]
    meta = store.metadata()
    rows = []
    for row in order:
        doc, pos = meta["document"][row], meta["position"][row]
        same = np.flatnonzero(meta["document"] == doc)
        positions = meta["position"][same]
        ids = meta["token_id"][same][np.argsort(positions)]
        positions = np.sort(positions)
        left = ids[(positions >= pos - window) & (positions < pos)].tolist()
        right = ids[(positions > pos) & (positions <= pos + window)].tolist()
        token = int(meta["token_id"][row])
        rows.append({"document": int(doc), "position": int(pos), "activation": float(acts[row]), "token_id": token,
                     "token": token_strings(tokenizer, [token])[0],
                     "context": _marked(tokenizer, left, token, right)})
    return pd.DataFrame(rows, columns=["document", "position", "activation", "token_id", "token", "context"])
