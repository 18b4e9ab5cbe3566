"""Cell-type prediction with a C2S model: candidate scoring, or free generation."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def _prompt_settings(model, n_genes, organism):
    meta = model.metadata
    n_genes = n_genes if n_genes is not None else meta.get("n_genes", 200)
    organism = organism if organism is not None else meta.get("organism", "Homo sapiens")
    return n_genes, organism


def _answer_tokens(tokenizer, candidates):
    ids = tokenizer([f"{c}." for c in candidates], add_special_tokens=False)["input_ids"]
    return [a + [tokenizer.eos_token_id] for a in ids]


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


def _prompt_pass(lm, input_ids, lengths):
    """One causal pass over right-padded prompts: the next-token log-probabilities after each prompt's
    last real token, and the key/value cache."""
    import torch

    last = lengths - 1
    keep, where = torch.unique(last, return_inverse=True)  # sorted batches have few distinct lengths
    out = lm(input_ids=input_ids, use_cache=True, logits_to_keep=keep)
    logits = out.logits[torch.arange(len(lengths), device=input_ids.device), where]
    return torch.log_softmax(logits.float(), dim=-1), _cache_of(out)


def _visible(lengths, width: int, device):
    """``(b, width)`` boolean: which cached prompt columns are real tokens (not right padding)."""
    import torch

    return torch.arange(width, device=device)[None, :] < lengths[:, None]


def _additive_mask(allowed, dtype):
    """A 4D additive attention mask (0 where allowed, the dtype's minimum elsewhere) from a boolean one."""
    import torch

    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def score_candidates(model, prompts: list[str], candidates: list[str], *, batch_size: int = 32,
                     progress: bool = True) -> np.ndarray:
    """Log-likelihood of each candidate answer (``"{label}."`` + EOS) after each prompt.

    Prompts are sorted by token length and batched right-padded, so the prompt pass
    runs causal attention without a mask. Then one more pass scores every
    candidate at once: all candidates' answer tokens follow the prompt's key/value
    cache side by side, each position at its own place in the sequence and seeing
    only the prompt's real tokens and its own candidate's earlier tokens.

    Returns
    -------
    ``(n_prompts, n_candidates)`` array of summed log-probabilities.
    """
    import torch

    tok, lm = model.tokenizer, model.model
    device = model.device
    answers = _answer_tokens(tok, candidates)
    cache_argument = _cache_argument(lm)
    prompt_ids = tok(list(prompts), add_special_tokens=False)["input_ids"]
    lengths_all = np.array([len(p) for p in prompt_ids])
    scores = np.zeros((len(prompts), len(candidates)))

    # The answers' tokens after the first, laid out side by side: which candidate each belongs to,
    # its offset after the prompt, the token it feeds and the token it predicts.
    feed, target, owner, offset = [], [], [], []
    for j, answer in enumerate(answers):
        for t in range(1, len(answer)):
            feed.append(answer[t - 1])
            target.append(answer[t])
            owner.append(j)
            offset.append(t)
    n_cont = len(feed)
    feed_t = torch.tensor(feed, device=device, dtype=torch.long)
    target_t = torch.tensor(target, device=device, dtype=torch.long)
    owner_t = torch.tensor(owner, device=device, dtype=torch.long)
    offset_t = torch.tensor(offset, device=device, dtype=torch.long)
    # a continuation token sees the earlier tokens (and itself) of its own candidate only
    own = (owner_t[:, None] == owner_t[None, :]) & (offset_t[None, :] <= offset_t[:, None])
    firsts = torch.tensor([a[0] for a in answers], device=device)
    mask_dtype = lm.dtype if lm.dtype.is_floating_point else torch.float32

    batches = _length_batches(lengths_all, batch_size)
    with torch.inference_mode():
        for rows in tqdm(batches, desc="scoring", disable=not progress):
            lengths = torch.as_tensor(lengths_all[rows], device=device)
            input_ids = _right_padded([prompt_ids[r] for r in rows], tok.pad_token_id, device)
            b, width = input_ids.shape
            first, cache = _prompt_pass(lm, input_ids, lengths)
            total = first[:, firsts]
            if n_cont:
                allowed = torch.cat([_visible(lengths, width, device)[:, None, :].expand(b, n_cont, width),
                                     own[None].expand(b, -1, -1)], dim=2)
                cont = lm(input_ids=feed_t[None].expand(b, -1), position_ids=lengths[:, None] - 1 + offset_t[None],
                          attention_mask=_additive_mask(allowed, mask_dtype), use_cache=True,
                          **{cache_argument: cache})
                logp = torch.log_softmax(cont.logits.float(), dim=-1)
                picked = logp.gather(2, target_t[None, :, None].expand(b, -1, 1)).squeeze(-1)
                total = total.index_add(1, owner_t, picked)
            scores[rows] = total.double().cpu().numpy()
    return scores


def generate_answers(model, prompts: list[str], *, batch_size: int = 32, max_new_tokens: int = 16,
                     progress: bool = True) -> list[str]:
    """Greedy answers to each prompt, cut at the first period, newline or EOS.

    Prompts are sorted by token length and batched right-padded: the prompt pass
    runs causal attention without a mask, then each greedy step feeds one token per
    prompt at its own position, masking the padding. A batch stops as soon as every
    prompt has produced EOS.
    """
    import torch

    tok, lm = model.tokenizer, model.model
    device = model.device
    cache_argument = _cache_argument(lm)
    prompt_ids = tok(list(prompts), add_special_tokens=False)["input_ids"]
    lengths_all = np.array([len(p) for p in prompt_ids])
    answers = [""] * len(prompts)
    eos = tok.eos_token_id
    mask_dtype = lm.dtype if lm.dtype.is_floating_point else torch.float32
    with torch.inference_mode():
        for rows in tqdm(_length_batches(lengths_all, batch_size), desc="generating", disable=not progress):
            lengths = torch.as_tensor(lengths_all[rows], device=device)
            input_ids = _right_padded([prompt_ids[r] for r in rows], tok.pad_token_id, device)
            b, width = input_ids.shape
            logp, cache = _prompt_pass(lm, input_ids, lengths)
            visible = _visible(lengths, width, device)
            done = torch.zeros(b, dtype=torch.bool, device=device)
            generated = []
            for step in range(max_new_tokens):
                nxt = logp.argmax(dim=-1)
                nxt = torch.where(done, torch.full_like(nxt, eos if eos is not None else 0), nxt)
                generated.append(nxt)
                if eos is not None:
                    done |= nxt == eos
                if bool(done.all()) or step == max_new_tokens - 1:
                    break
                visible = torch.cat([visible, torch.ones(b, 1, dtype=torch.bool, device=device)], dim=1)
                out = lm(input_ids=nxt[:, None], position_ids=(lengths + step)[:, None],
                         attention_mask=_additive_mask(visible[:, None, :], mask_dtype), use_cache=True,
                         **{cache_argument: cache})
                cache = _cache_of(out)
                logp = out.logits[:, -1].float()
            texts = tok.batch_decode(torch.stack(generated, dim=1), skip_special_tokens=True)
            for r, text in zip(rows, texts):
                answers[r] = parse_answer(text)
    return answers


def parse_answer(text: str) -> str:
    """The cell type in a generated answer: the first line, up to the end of its first sentence."""
    text = text.strip().split("\n")[0].split(". ")[0].strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def predict_cell_types(
    adata,
    model,
    *,
    key_added: str = "c2s_prediction",
    candidates=None,
    mode: str = "score",
    n_genes: int | None = None,
    organism: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
):
    """Predict each cell's type with a C2S model.

    Parameters
    ----------
    adata
        Cells to predict; cell sentences are computed when missing.
    model
        A :class:`sctranscoder.models.C2SModel`.
    key_added
        ``adata.obs[key_added]`` gets the predicted label; in ``"score"`` mode
        ``adata.obsm[key_added + "_probabilities"]`` gets a cells x candidates table.
    candidates
        Labels to choose from (score mode); default: the labels the model was trained on.
    mode
        ``"score"``: the log-likelihood of each candidate answer, softmaxed over
        candidates. ``"generate"``: greedy generation, answer parsed from the text.
    n_genes, organism
        Prompt settings; default: those the model was trained with.
    batch_size
        Prompts per forward pass.
    progress
        Show a progress bar.

    Returns
    -------
    ``None``; writes into ``adata``.
    """
    from .. import pp
    from ..pp._sentences import RANKS_KEY

    if mode not in ("score", "generate"):
        raise ValueError(f"mode={mode!r} must be 'score' or 'generate'.")
    n_genes, organism = _prompt_settings(model, n_genes, organism)
    if RANKS_KEY not in adata.obsm:
        pp.cell_sentences(adata, n_genes=n_genes, progress=progress)
    prompts = list(pp.prompts(adata, n_genes=n_genes, organism=organism, template=0).prompt)
    if mode == "generate":
        adata.obs[key_added] = pd.Categorical(generate_answers(model, prompts, batch_size=batch_size,
                                                               progress=progress))
        return None
    candidates = list(candidates) if candidates is not None else model.labels
    if not candidates:
        raise ValueError("The model records no training labels; pass candidates=[...] or use mode='generate'.")
    scores = score_candidates(model, prompts, candidates, batch_size=batch_size, progress=progress)
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    adata.obsm[f"{key_added}_probabilities"] = pd.DataFrame(probabilities, index=adata.obs_names, columns=candidates)
    adata.obs[key_added] = pd.Categorical(np.asarray(candidates)[probabilities.argmax(axis=1)], categories=candidates)
    return None
