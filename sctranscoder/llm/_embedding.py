"""Sentence embeddings of an encoder (mean pooling over real tokens, then L2 normalization, as
sentence-transformers does for all-MiniLM-L6-v2), and how well they survive MLPs replaced by transcoders."""

from __future__ import annotations

import numpy as np
import torch


def _last_hidden(output):
    last = getattr(output, "last_hidden_state", None)
    return last if last is not None else output.hidden_states[-1]


@torch.no_grad()
def pooled_embeddings(model, batches, replacements: dict | None = None, *, positions=None) -> torch.Tensor:
    """``(texts, d)`` unit-norm mean-pooled last hidden states over ``(input_ids, attention_mask, _)`` batches,
    with MLPs replaced by ``replacements`` at ``positions`` (see :func:`sctranscoder.tc.spliced_cross_entropy`)."""
    from ..harvest import replace_mlp

    parts, chosen = [], {}
    with replace_mlp(model, replacements or {}, where=lambda: chosen.get("mask")):
        for ids, mask, _ in batches:
            if positions is not None:
                chosen["mask"] = positions(ids)
            hidden = _last_hidden(model(input_ids=ids, attention_mask=mask, output_hidden_states=True)).float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(parts)


def _pairwise(embeddings: torch.Tensor) -> np.ndarray:
    """Cosine similarity of every pair of texts (the upper triangle of the similarity matrix)."""
    sims = (embeddings @ embeddings.T).cpu().numpy()
    return sims[np.triu_indices(len(sims), k=1)]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if a.size > 1 else float("nan")


@torch.no_grad()
def embedding_faithfulness(model, transcoders: dict, batches, *, each_layer: bool = True, positions=None) -> dict:
    """How much of the sentence embeddings survives the MLPs replaced by transcoders, against zero- and
    mean-ablation of the same MLPs (at ``positions``, ``input_ids -> bool (batch, tokens)``, default
    everywhere; elsewhere the MLPs keep their own output).

    Returns
    -------
    ``{"all": {...}, "layers": {layer: {...}}}``, where each ``{...}`` holds
    ``cosine`` (mean cosine between each text's clean and spliced embedding),
    ``cosine_zero`` / ``cosine_mean`` (the same with the MLPs zero- or mean-ablated),
    ``cosine_recovered_mean`` (the fraction of mean-ablation's cosine loss the
    transcoders win back: ``(cosine - cosine_mean) / (1 - cosine_mean)``), and
    ``similarity_spearman`` / ``similarity_spearman_mean`` (Spearman correlation of
    all pairwise text similarities, clean against spliced / mean-ablated).
    """
    from ..tc import as_replacements, mlp_output_means

    model.eval()
    layers = sorted(transcoders)
    means = mlp_output_means(model, batches, layers, positions=positions)
    clean = pooled_embeddings(model, batches)
    clean_pairs = _pairwise(clean)

    def compare(replacements):
        spliced = pooled_embeddings(model, batches, replacements, positions=positions)
        return float((spliced * clean).sum(-1).mean()), _spearman(clean_pairs, _pairwise(spliced))

    def summary(keys):
        cosine, spearman = compare(as_replacements({k: transcoders[k] for k in keys}))
        cosine_zero, _ = compare({k: (lambda x: torch.zeros_like(x)) for k in keys})
        cosine_mean, spearman_mean = compare({k: (lambda x, m=means[k]: m.to(x.dtype).expand_as(x)) for k in keys})
        lost = 1.0 - cosine_mean
        return {"cosine": cosine, "cosine_zero": cosine_zero, "cosine_mean": cosine_mean,
                "cosine_recovered_mean": (cosine - cosine_mean) / lost if lost > 0 else float("nan"),
                "similarity_spearman": spearman, "similarity_spearman_mean": spearman_mean}

    report = {"all": summary(layers)}
    if each_layer:
        report["layers"] = {layer: summary([layer]) for layer in layers}
    return report


def sentence_embeddings(model, tokenizer, texts, *, transcoders: dict | None = None, text_column: str = "text",
                        max_length: int = 256, batch_size: int = 32, drop_special: bool = True) -> np.ndarray:
    """Sentence embeddings of an encoder: attention-masked mean of the last hidden states, L2-normalized (as
    sentence-transformers computes them for all-MiniLM-L6-v2); with ``transcoders`` ({layer: Transcoder})
    spliced in place of those layers' MLPs (on text tokens only when ``drop_special``: [CLS] and [SEP]
    keep their own MLP output, as the transcoders were not trained on them). Returns ``(texts, d)`` float32."""
    from ..harvest import layout_of
    from ..tc import as_replacements
    from ._text import model_batches, text_positions

    if not layout_of(model).encoder:
        raise TypeError(f"{model.config.model_type!r} is a causal LM; sentence embeddings are for encoders (BERT).")
    batches = model_batches(model, tokenizer, texts, text_column=text_column, max_length=max_length,
                            prepend_bos=None, batch_size=batch_size)
    positions = text_positions(tokenizer) if drop_special else None
    return pooled_embeddings(model, batches, as_replacements(transcoders or {}), positions=positions).cpu().numpy()
