"""Cell-type prediction with a C2S model: candidate scoring, or free generation."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def _prompt_settings(adata, model, n_genes, organism):
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


def score_candidates(model, prompts: list[str], candidates: list[str], *, batch_size: int = 32,
                     progress: bool = True) -> np.ndarray:
    """Log-likelihood of each candidate answer (``"{label}."`` + EOS) after each prompt.

    Each batch of prompts runs once; its key/value cache is then repeated for the
    candidates, so an answer costs only its own few tokens.

    Returns
    -------
    ``(n_prompts, n_candidates)`` array of summed log-probabilities.
    """
    import torch

    tok, lm = model.tokenizer, model.model
    device = model.device
    answers = _answer_tokens(tok, candidates)
    n_cand = len(candidates)
    width = max(len(a) for a in answers)
    answer_ids = torch.full((n_cand, width), tok.pad_token_id, dtype=torch.long)
    answer_mask = torch.zeros((n_cand, width), dtype=torch.long)
    for j, a in enumerate(answers):
        answer_ids[j, : len(a)] = torch.tensor(a)
        answer_mask[j, : len(a)] = 1
    scores = np.zeros((len(prompts), n_cand))
    padding_side = tok.padding_side
    tok.padding_side = "left"
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="scoring", disable=not progress):
            batch = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
            b = batch["input_ids"].shape[0]
            prompt_positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
            with torch.no_grad():
                out = lm(**batch, position_ids=prompt_positions, use_cache=True)
                first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (b, vocab)
                cache = _cache_of(out)
                cache.batch_repeat_interleave(n_cand)
                ids = answer_ids.to(device).repeat(b, 1)  # (b * n_cand, width)
                mask = torch.cat([batch["attention_mask"].repeat_interleave(n_cand, dim=0),
                                  answer_mask.to(device).repeat(b, 1)], dim=1)
                positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, -width:]
                cont = lm(input_ids=ids, attention_mask=mask, position_ids=positions, **{_cache_argument(lm): cache})
                logp = torch.log_softmax(cont.logits.float(), dim=-1)
            # token 0 of each answer is scored by the prompt's last position, token t>0 by answer position t-1
            first_scores = first.repeat_interleave(n_cand, dim=0).gather(1, ids[:, :1]).squeeze(1)
            rest = logp[:, :-1].gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1) * answer_mask.to(device).repeat(b, 1)[:, 1:]
            total = (first_scores + rest.sum(dim=1)).view(b, n_cand)
            scores[start : start + b] = total.cpu().numpy()
    finally:
        tok.padding_side = padding_side
    return scores


def generate_answers(model, prompts: list[str], *, batch_size: int = 32, max_new_tokens: int = 16,
                     progress: bool = True) -> list[str]:
    """Greedy answers to each prompt, cut at the first period, newline or EOS."""
    import torch

    tok, lm = model.tokenizer, model.model
    answers = []
    padding_side = tok.padding_side
    tok.padding_side = "left"
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generating", disable=not progress):
            batch = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = lm.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            texts = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            answers.extend(parse_answer(t) for t in texts)
    finally:
        tok.padding_side = padding_side
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
    n_genes, organism = _prompt_settings(adata, model, n_genes, organism)
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
