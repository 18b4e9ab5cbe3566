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


def score_candidates(model, prompts: list[str], candidates: list[str], *, batch_size: int = 32,
                     progress: bool = True) -> np.ndarray:
    """Log-likelihood of each candidate answer (``"{label}."`` + EOS) after each prompt.

    Each batch of prompts runs once; every candidate then runs only its own few
    tokens on the prompts' key/value cache, which is cropped back to the prompt
    afterwards (no copies of the cache).

    Returns
    -------
    ``(n_prompts, n_candidates)`` array of summed log-probabilities.
    """
    import torch

    tok, lm = model.tokenizer, model.model
    device = model.device
    answers = _answer_tokens(tok, candidates)
    cache_argument = _cache_argument(lm)
    scores = np.zeros((len(prompts), len(candidates)))
    padding_side = tok.padding_side
    tok.padding_side = "left"
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="scoring", disable=not progress):
            batch = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
            b, width = batch["input_ids"].shape
            positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
            with torch.no_grad():
                out = lm(**batch, position_ids=positions, use_cache=True, logits_to_keep=1)
                first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # scores each answer's first token
                cache = _cache_of(out)
                for j, answer in enumerate(answers):
                    ids = torch.tensor([answer], device=device).expand(b, -1)
                    total = first[:, answer[0]].clone()
                    if len(answer) > 1:
                        mask = torch.cat([batch["attention_mask"], torch.ones_like(ids)], dim=1)
                        step_positions = positions[:, -1:] + 1 + torch.arange(len(answer) - 1, device=device)
                        cont = lm(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=step_positions,
                                  use_cache=True, **{cache_argument: cache})
                        logp = torch.log_softmax(cont.logits.float(), dim=-1)
                        total += logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1).sum(dim=1)
                        cache.crop(-(len(answer) - 1))  # back to the prompt alone
                    scores[start : start + b, j] = total.cpu().numpy()
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
