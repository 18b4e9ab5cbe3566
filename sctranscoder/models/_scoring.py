"""Scoring candidate answers and greedy generation after C2S prompts, batched over prompts of any length."""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import numpy as np

from .._progress import progress_bar
from ._answer_trie import AnswerTrie, trie_pass


def answer_tokens(tokenizer, candidates):
    ids = tokenizer([f"{c}." for c in candidates], add_special_tokens=False)["input_ids"]
    return [a + [tokenizer.eos_token_id] for a in ids]


def prompt_token_ids(tokenizer, prompts) -> list:
    """Token ids of each prompt: strings are tokenized (no special tokens added), token-id sequences pass
    through (prompts encoded once, e.g. by :func:`sctranscoder.tl.encode_cells`)."""
    prompts = list(prompts)
    if prompts and not isinstance(prompts[0], str):
        return [list(map(int, p)) for p in prompts]
    return tokenizer(prompts, add_special_tokens=False)["input_ids"]


def _cache_of(output):
    """The key/value cache of a forward pass (``cache`` in transformers 5, ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _cache_argument(lm) -> str:
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _length_batches(lengths, batch_size: int):
    """Prompt indices sorted by token length, cut into batches (little padding within a batch)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _right_padded(ids, pad_id: int, device):
    """Right-pad token lists into one tensor. A causal model's outputs at real tokens never see the
    padding after them, so the prompt pass needs no attention mask (SDPA keeps its causal fast path)."""
    import torch

    width = max(len(i) for i in ids)
    batch = torch.full((len(ids), width), pad_id, dtype=torch.long)
    for row, i in enumerate(ids):
        batch[row, : len(i)] = torch.tensor(i)
    return batch.to(device)


@contextmanager
def _last_mlp_only_at(lm, positions):
    """Run the last block's MLP only at ``positions`` (one per batch row), zeros elsewhere.

    After the last block nothing reads across positions, so the last MLP's output
    matters only where logits are read; its keys and values (the cache) come
    before it. The other positions' hidden states are then wrong, and unused.
    """
    import torch

    from ..harvest import mlp_sites

    try:
        (site,) = mlp_sites(lm, [-1]).values()
    except ValueError:  # an architecture sctranscoder has no layout for: run it whole
        yield
        return
    mlp = site.modules[0]
    full = mlp.forward
    patched_before = mlp.__dict__.get("forward")  # someone else's patch, put back afterwards
    rows = torch.arange(len(positions), device=positions.device)

    def at_positions(hidden, *args, **kwargs):
        out = full(hidden[rows, positions][:, None], *args, **kwargs)
        return out.new_zeros(hidden.shape[:-1] + out.shape[-1:]).index_put_((rows, positions), out[:, 0])

    mlp.forward = at_positions
    try:
        yield
    finally:
        if patched_before is None:
            del mlp.forward
        else:
            mlp.forward = patched_before


def _prompt_pass(lm, input_ids, lengths, cache=None):
    """One causal pass over right-padded prompts: the next-token log-probabilities after each prompt's
    last real token, and the key/value cache. ``cache``: the keys and values of tokens every row shares before
    ``input_ids`` (``lengths`` count only the tokens given here)."""
    import torch

    last = lengths - 1
    keep, where = torch.unique(last, return_inverse=True)  # sorted batches have few distinct lengths
    shared = {} if cache is None else {_cache_argument(lm): cache}
    with _last_mlp_only_at(lm, last):
        out = lm(input_ids=input_ids, use_cache=True, logits_to_keep=keep, **shared)
    logits = out.logits[torch.arange(len(lengths), device=input_ids.device), where]
    return torch.log_softmax(logits.float(), dim=-1), _cache_of(out)


def score_candidates(model, prompts: list[str], candidates: list[str], *, batch_size: int = 32,
                     progress: bool = True) -> np.ndarray:
    """Log-likelihood of each candidate answer (``"{label}."`` + EOS) after each prompt.

    Prompts are sorted by token length and batched right-padded, so the prompt pass
    runs causal attention without a mask. Then one more pass scores every
    candidate at once: the candidates' answer tokens, as a trie (shared leading
    tokens fed once), follow the prompt's key/value cache side by side, each at its
    own place in the sequence and seeing only the prompt's real tokens and its own
    answer's earlier tokens.

    Returns
    -------
    ``(n_prompts, n_candidates)`` array of summed log-probabilities.
    """
    import torch

    tok, lm = model.tokenizer, model.model
    device = model.device
    read = answer_reader(model, candidates)
    prompt_ids = prompt_token_ids(tok, prompts)
    lengths_all = np.array([len(p) for p in prompt_ids])
    scores = np.zeros((len(prompts), len(candidates)))
    with torch.inference_mode():
        for rows in progress_bar(_length_batches(lengths_all, batch_size), desc="scoring", unit="batches",
                                 enabled=progress):
            lengths = torch.as_tensor(lengths_all[rows], device=device)
            input_ids = _right_padded([prompt_ids[r] for r in rows], tok.pad_token_id, device)
            first, cache = _prompt_pass(lm, input_ids, lengths)
            scores[rows] = read(first, cache, lengths, input_ids.shape[1])
    return scores


def answer_reader(model, candidates):
    """``read(first, cache, lengths, width)``: each candidate's summed log-probability after a batch's prompt
    pass (``first``: its next-token log-probabilities; ``cache``: its keys and values over ``width`` columns,
    ``lengths`` of them real per row), the later answer tokens from one pass over the candidates' token trie."""
    import torch

    lm, device = model.model, model.device
    trie = AnswerTrie.build(answer_tokens(model.tokenizer, candidates))
    cache_argument = _cache_argument(lm)
    firsts = torch.tensor(trie.firsts, device=device)
    owner, node, target = (torch.tensor(column, device=device, dtype=torch.long) for column in zip(*trie.steps)) \
        if trie.steps else (None, None, None)

    def read(first, cache, lengths, width: int) -> np.ndarray:
        total = first[:, firsts]
        if trie.steps:
            logp, _ = trie_pass(lm, trie, cache, lengths, width, cache_argument)
            total = total.index_add(1, owner, logp[:, node, target])
        return total.double().cpu().numpy()

    return read


def generate_answers(model, prompts: list[str], *, batch_size: int = 32, max_new_tokens: int | None = None,
                     candidates=None, progress: bool = True) -> list[str]:
    """Greedy answers to each prompt, cut at the first period, newline or EOS.

    Prompts are sorted by token length and batched right-padded: the prompt pass
    runs causal attention without a mask. When ``candidates`` (expected answers,
    e.g. the model's training labels) are given, one pass over their token trie
    then gives the model's next token after every candidate prefix, so a greedy
    answer is read off the trie as far as it follows a candidate. From there (or
    from the prompt, without candidates) each greedy step feeds one token per prompt
    at its own position, masking the padding and the trie branches not taken. A
    batch stops as soon as every prompt has produced EOS or ``max_new_tokens`` (default: as many
    as the longest candidate answer and its EOS take, at least 16).
    """
    import torch

    tok, lm = model.tokenizer, model.model
    device = model.device
    eos = tok.eos_token_id
    expected = answer_tokens(tok, candidates) if candidates else []
    trie = AnswerTrie.build(expected) if expected and eos is not None else None
    if max_new_tokens is None:
        max_new_tokens = max([16] + [len(answer) for answer in expected])
    sees = trie.sees().to(device) if trie is not None else None
    cache_argument = _cache_argument(lm)
    prompt_ids = prompt_token_ids(tok, prompts)
    lengths_all = np.array([len(p) for p in prompt_ids])
    answers = [""] * len(prompts)
    mask_dtype = lm.dtype if lm.dtype.is_floating_point else torch.float32
    with torch.inference_mode():
        for rows in progress_bar(_length_batches(lengths_all, batch_size), desc="generating", unit="batches",
                                 enabled=progress):
            lengths = torch.as_tensor(lengths_all[rows], device=device)
            input_ids = _right_padded([prompt_ids[r] for r in rows], tok.pad_token_id, device)
            b, width = input_ids.shape
            first, cache = _prompt_pass(lm, input_ids, lengths)
            visible = torch.arange(width, device=device)[None, :] < lengths[:, None]
            paths = [[token] for token in first.argmax(dim=-1).tolist()]
            if trie is not None and len(trie):
                logp, cache = trie_pass(lm, trie, cache, lengths, width, cache_argument)
                best = logp.argmax(dim=-1).tolist()
                taken = torch.zeros(b, len(trie), dtype=torch.bool, device=device)
                for i in range(b):
                    paths[i], node = _follow_trie(trie, paths[i][0], best[i], eos, max_new_tokens)
                    if node is not None:
                        taken[i] = sees[node]
                visible = torch.cat([visible, taken], dim=1)
            active = [i for i, path in enumerate(paths) if path[-1] != eos and len(path) < max_new_tokens]
            kept = list(range(b))  # the batch rows the cache and ``visible`` hold
            while active:
                if active != kept:  # step only the unfinished prompts
                    where = torch.tensor([kept.index(i) for i in active], device=device)
                    _select_rows(cache, where)
                    visible, kept = visible[where], active
                feed = torch.tensor([paths[i][-1] for i in active], device=device)
                # each path's last token goes at its own place after its prompt
                position = lengths[active] - 1 + torch.tensor([len(paths[i]) for i in active], device=device)
                visible = torch.cat([visible, torch.ones(len(active), 1, dtype=torch.bool, device=device)], dim=1)
                mask = torch.zeros(visible.shape, dtype=mask_dtype, device=device)
                mask.masked_fill_(~visible, torch.finfo(mask_dtype).min)
                out = lm(input_ids=feed[:, None], position_ids=position[:, None], attention_mask=mask[:, None, None],
                         use_cache=True, **{cache_argument: cache})
                cache = _cache_of(out)
                for i, token in zip(active, out.logits[:, -1].argmax(dim=-1).tolist()):
                    paths[i].append(token)
                active = [i for i in active if paths[i][-1] != eos and len(paths[i]) < max_new_tokens]
            for r, path in zip(rows, paths):
                answers[r] = parse_answer(tok.decode(path, skip_special_tokens=True))
    return answers


def _select_rows(cache, rows) -> None:
    """Keep only ``rows`` of a key/value cache's batch (in place)."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(rows)
    else:
        cache.reorder_cache(rows)


def _follow_trie(trie: AnswerTrie, token: int, best: list[int], eos, max_new_tokens: int):
    """Greedy tokens from the first one along the trie (``best[i]``: node ``i``'s most likely next token),
    and the deepest node whose token was fed (``None``: none was). The path's last token is not fed yet."""
    path, node = [token], None
    while path[-1] != eos and len(path) < max_new_tokens:
        child = (trie.roots if node is None else trie.children[node]).get(path[-1])
        if child is None:
            break
        node = child
        path.append(best[node])
    return path, node


def parse_answer(text: str) -> str:
    """The cell type in a generated answer: the first line, up to the end of its first sentence."""
    text = text.strip().split("\n")[0].split(". ")[0].strip()
    return text[:-1].rstrip() if text.endswith(".") else text
