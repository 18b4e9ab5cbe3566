"""Scoring candidate answers after many edits of one prompt (knockouts), each prompt's unchanged start run once.

A knockout removes one gene from a sentence: every token before it is the base prompt's, so a causal model's keys
and values there are the base prompt's too. Variants are sorted by where they leave the base prompt and cut into
batches; each batch runs the start its rows share once (batch of one), copies that cache to every row and runs
only the rest. Batches are cut where the tokens saved pay for the extra pass (see :func:`_plan_batches`).
"""

from __future__ import annotations

import numpy as np

from ._scoring import _prompt_pass, _right_padded, answer_reader, prompt_token_ids, score_candidates

# a batch's three passes (shared start, the rest, the answers) cost about this many tokens' work on top of their
# tokens (measured on the default model on CPU: ~1.5 ms of fixed cost a pass, ~15 us a token); a batch is split
# only where that saves more
PASS_COST_TOKENS = 300


def _repeat_rows(cache, n: int):
    """The key/value cache of one row, as ``n`` rows (a ``Cache`` object in place, or legacy tuples)."""
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(n)
        return cache
    return tuple(tuple(t.repeat_interleave(n, dim=0) for t in layer) for layer in cache)


def _plan_batches(starts: np.ndarray, lengths: np.ndarray, max_rows: int) -> list[np.ndarray]:
    """Rows (sorted by ``starts``, where each leaves the base) cut into batches of at most ``max_rows``, minimising
    the tokens run: each batch runs ``rows x (longest - its first row's start)`` tokens, its shared start in one
    row, and one pass's fixed cost."""
    order = np.argsort(starts, kind="stable")
    s, n = starts[order], len(order)
    best = np.full(n + 1, np.inf)
    best[0], cut = 0.0, np.zeros(n + 1, int)
    for end in range(1, n + 1):  # best[end]: the cheapest plan for the first ``end`` sorted rows
        longest = 0
        for begin in range(end - 1, max(-1, end - 1 - max_rows), -1):
            longest = max(longest, int(lengths[order[begin]]))
            cost = best[begin] + (end - begin) * (longest - s[begin]) + PASS_COST_TOKENS + s[begin]
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    batches, end = [], n
    while end > 0:
        batches.append(order[cut[end]:end])
        end = cut[end]
    return batches[::-1]


def score_variants(model, base, variants, candidates: list[str], *, batch_size: int = 64):
    """:func:`score_candidates` of ``[base] + variants`` (token ids), running each batch's shared start once.

    Equal to scoring every prompt whole up to float rounding (the shared start's keys and values are computed in a
    batch of one instead of beside the other rows). Returns the ``(1 + len(variants), n_candidates)`` scores and
    the number of batches run.
    """
    import torch

    from ..circuits._candidates import shared_prefix_length

    tok, lm, device = model.tokenizer, model.model, model.device
    prompts = prompt_token_ids(tok, [base] + list(variants))
    base_ids = prompts[0]
    scores = np.zeros((len(prompts), len(candidates)))
    scores[:1] = score_candidates(model, prompts[:1], candidates, batch_size=1, progress=False)
    rest = prompts[1:]
    if not rest:
        return scores, 1
    read = answer_reader(model, candidates)
    lengths_all = np.array([len(p) for p in rest])
    # at least one token of each prompt runs in the batch pass, where its answer is read
    starts = np.minimum([shared_prefix_length(base_ids, p) for p in rest], lengths_all - 1)
    batches = _plan_batches(starts, lengths_all, max(1, batch_size))
    with torch.inference_mode():
        for rows in batches:
            shared = int(starts[rows].min())
            lengths = torch.as_tensor(lengths_all[rows], device=device)
            suffixes = _right_padded([rest[r][shared:] for r in rows], tok.pad_token_id, device)
            cache = None
            if shared:
                _, cache = _prompt_pass(lm, torch.as_tensor([base_ids[:shared]], device=device),
                                        torch.as_tensor([shared], device=device))
                cache = _repeat_rows(cache, len(rows))
            first, cache = _prompt_pass(lm, suffixes, lengths - shared, cache=cache)
            scores[1 + rows] = read(first, cache, lengths, shared + suffixes.shape[1])
    return scores, 1 + len(batches)
