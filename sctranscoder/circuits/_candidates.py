"""Candidate answers compared: where two answers part, each candidate's probability over the candidates, and
the log-odds of one of them (the numbers ``predict_cell_types``, knockouts and circuits all speak in)."""

from __future__ import annotations

import numpy as np


def shared_prefix_length(a, b) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def candidate_log_probabilities(scores) -> np.ndarray:
    """Log-probabilities over candidates (last axis) from their summed answer log-likelihoods: a log-softmax."""
    scores = np.asarray(scores, dtype=float)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_odds(logp):
    """``log(p / (1 - p))`` from ``log p``, exact near p = 1 (where log p saturates and log-odds does not)."""
    return logp - np.log(-np.expm1(np.minimum(logp, -1e-300)))


def answer_contrast(answers: dict, label) -> tuple[list[int], int, list[int]]:
    """Where ``label``'s answer parts from the others: (shared prefix, its next token, the others' next tokens).

    ``answers``: ``{label: answer token ids}``. Answers that begin alike (``CD4+/CD45RA+...`` and
    ``CD4+/CD45RO+...``) are told apart at their first differing token; the model is fed the shared prefix and
    the target contrasts ``label``'s next token with its closest rivals' next tokens.
    """
    mine = list(answers[label])
    others = [list(a) for name, a in answers.items() if name != label]
    if not others:
        raise ValueError("A cell-type circuit needs at least two candidate labels.")
    depth = max(shared_prefix_length(mine, other) for other in others)
    if depth >= len(mine):
        raise ValueError(f"The answer for {label!r} is a prefix of another label's answer; they cannot be contrasted.")
    rivals = sorted({o[depth] for o in others if len(o) > depth and o[:depth] == mine[:depth] and o[depth] != mine[depth]})
    return mine[:depth], mine[depth], rivals
