"""Circuits on text: the circuits core traced from a causal LM's next-token logit back to the input tokens."""

from __future__ import annotations


def _token_id(tokenizer, token) -> int:
    if isinstance(token, str):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{token!r} is {len(ids)} tokens for this tokenizer; pass one token (e.g. ' Paris') "
                             "or its id.")
        return int(ids[0])
    return int(token)


def trace(model, tokenizer, transcoders: dict, text: str, *, token=None, against=None, max_length: int = 128,
          prepend_bos: bool | None = None, **options):
    """The circuit behind a causal LM's next-token logit after ``text``, back to its input tokens.

    Parameters
    ----------
    model, tokenizer
        A supported causal LM (not an encoder: circuits explain a logit) and its tokenizer.
    transcoders
        ``{layer: Transcoder}`` (from :func:`sctranscoder.llm.train_transcoders`).
    text
        The prompt, tokenized as :func:`sctranscoder.llm.harvest` does (BOS first by default).
    token
        The next token whose logit is explained (a one-token string or an id); default: the model's top guess.
    against
        Token(s) to contrast with: the target becomes ``logit(token) - mean(logit(against))``.
    options
        Passed to :func:`sctranscoder.circuits.trace` (``max_nodes``, ``node_threshold``, ``n_paths`` ...).

    Returns
    -------
    The graph; its input nodes are labelled with the token strings (``"input:{position}"``).
    """
    import torch

    from ..circuits import Target
    from ..circuits import trace as trace_ids
    from ..harvest import layout_of
    from ._text import document_tokens

    if layout_of(model).encoder:
        raise ValueError("Circuits explain a next-token logit; an encoder has none. Use a causal LM.")
    tokens = document_tokens(tokenizer, [text], 0, encoder=False, max_length=max_length, prepend_bos=prepend_bos)
    ids = torch.as_tensor(tokens.token_id.to_numpy(), device=next(model.parameters()).device)
    if token is None:
        with torch.no_grad():
            token = int(model(ids[None]).logits[0, -1].argmax())
    token = _token_id(tokenizer, token)
    label = f"next token {tokenizer.decode([token])!r}"
    if against is None:
        target = Target.logit(token, label=label)
    else:
        contrast = [_token_id(tokenizer, t) for t in (against if isinstance(against, (list, tuple)) else [against])]
        target = Target.logit_difference(token, contrast, label=f"{label} vs {[tokenizer.decode([t]) for t in contrast]}")
    return trace_ids(model, transcoders, ids, target, labels=list(tokens.token), **options)
