"""Faithfulness of transcoders: reconstruction and sparsity on held-out rows, and next-token loss with the
transcoders spliced into the model in place of its MLPs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate(transcoder, batches, *, dense_threshold: float | None = None) -> dict:
    """Reconstruction and sparsity over held-out ``(mlp_in, mlp_out)`` batches.

    Returns
    -------
    ``fvu`` (squared error over the held-out outputs' total variance), ``l0`` (mean
    active features per token), ``dead_fraction`` (features that never fire on these
    rows), ``dense_fraction`` (features firing on more than ``dense_threshold`` of
    them; default from the config), ``n_tokens``.
    """
    transcoder.eval()
    dense_threshold = transcoder.cfg.dense_threshold if dense_threshold is None else dense_threshold
    fires = torch.zeros(transcoder.cfg.d_hidden, dtype=torch.long, device=transcoder.device)
    n, sq_error, y_sum, y_sq, active = 0, 0.0, None, 0.0, 0.0
    for x, y in batches:
        x, y = x.to(transcoder.device, torch.float32), y.to(transcoder.device, torch.float32)
        out = transcoder(x)
        if out.indices is not None:
            on = out.values > 0
            fires.index_add_(0, out.indices[on], torch.ones_like(out.indices[on]))
            active += float(on.sum())
        else:
            on = out.features > 0
            fires += on.sum(0)
            active += float(on.sum())
        sq_error += float((out.output - y).pow(2).sum())
        y_sum = y.sum(0) if y_sum is None else y_sum + y.sum(0)
        y_sq += float(y.pow(2).sum())
        n += len(x)
    if n == 0:
        raise ValueError("No held-out rows to evaluate on.")
    total_variance = y_sq - float(y_sum.pow(2).sum()) / n
    frequency = fires.float() / n
    return {"fvu": sq_error / total_variance, "l0": active / n, "dead_fraction": float((fires == 0).float().mean()),
            "dense_fraction": float((frequency > dense_threshold).float().mean()), "n_tokens": n}


def _token_losses(model, ids, mask, loss_mask):
    """Summed next-token loss over the tokens ``loss_mask`` marks (each predicted from the one before) and their
    count, with logits only where they predict a marked token (a C2S prompt's answer: a few positions of many)."""
    keep = loss_mask[:, 1:].bool()
    columns = torch.nonzero(keep.any(0)).flatten()
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=columns).logits.float()
    losses = F.cross_entropy(logits.transpose(1, 2), ids[:, columns + 1], reduction="none")
    keep = keep[:, columns]
    return float(losses[keep].sum()), int(keep.sum())


@torch.no_grad()
def mlp_output_means(model, batches, layers, *, positions=None) -> dict:
    """Mean MLP output per layer over the real tokens of the batches (for mean ablation); with
    ``positions`` (``input_ids -> bool (batch, tokens)``), over the chosen ones among them."""
    return _clean_pass(model, batches, layers, positions, with_loss=False)[0]


@torch.no_grad()
def _clean_pass(model, batches, layers, positions, *, with_loss: bool = True) -> tuple[dict, float]:
    """:func:`mlp_output_means` and the clean next-token loss over the loss masks (``nan`` without
    ``with_loss``), from one pass."""
    from ..harvest import MLPCapture

    sums, count, loss, n_loss = {}, 0, 0.0, 0
    with MLPCapture(model, layers) as capture:
        for ids, mask, loss_mask in batches:
            if with_loss:
                s, c = _token_losses(model, ids, mask, loss_mask)
                loss, n_loss = loss + s, n_loss + c
            else:
                model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)  # MLPs read only
            real = mask.bool() if positions is None else mask.bool() & positions(ids).to(mask.device, torch.bool)
            for layer in capture.layers:
                total = capture.outputs[layer][real].sum(0)
                sums[layer] = total if layer not in sums else sums[layer] + total
            count += int(real.sum())
    return {layer: total / count for layer, total in sums.items()}, loss / n_loss if n_loss else float("nan")


@torch.no_grad()
def spliced_cross_entropy(model, transcoders: dict, batches, *, each_layer: bool = True, positions=None) -> dict:
    """Next-token cross-entropy with MLPs replaced, and how much of the ablation gap the transcoders recover.

    Parameters
    ----------
    model
        A Hugging Face causal LM of a supported architecture.
    transcoders
        ``{layer: Transcoder}``.
    batches
        A list of ``(input_ids, attention_mask, loss_mask)`` tensors; the loss is
        the mean over tokens whose ``loss_mask`` is 1 (predicted from the previous token).
    each_layer
        Also splice each layer alone.
    positions
        ``input_ids -> bool (batch, tokens)``: where the MLPs are replaced (by
        transcoders and by the ablations alike; the mean is taken over these
        positions too); elsewhere they keep their own output. Default: everywhere.

    Returns
    -------
    ``{"clean": ce, "all": {...}, "layers": {layer: {...}}}``, where each ``{...}``
    holds ``ce`` (spliced), ``ce_zero`` and ``ce_mean`` (the same MLPs zero- or
    mean-ablated) and ``recovered_zero`` / ``recovered_mean``:
    ``(ce_ablated - ce_spliced) / (ce_ablated - ce_clean)``.
    """
    from ..harvest import replace_mlp

    model.eval()
    layers = sorted(transcoders)
    means, clean = _clean_pass(model, batches, layers, positions)

    def ce(replacements) -> float:
        total, n, chosen = 0.0, 0, {}
        with replace_mlp(model, replacements, where=lambda: chosen.get("mask")):
            for ids, mask, loss_mask in batches:
                if positions is not None:
                    chosen["mask"] = positions(ids)
                s, c = _token_losses(model, ids, mask, loss_mask)
                total, n = total + s, n + c
        return total / max(n, 1)

    def spliced(keys):
        return {k: _as_replacement(transcoders[k]) for k in keys}

    def zero(keys):
        return {k: (lambda x: torch.zeros_like(x)) for k in keys}

    def mean(keys):
        return {k: (lambda x, m=means[k]: m.to(x.dtype).expand_as(x)) for k in keys}

    def summary(keys):
        result = {"ce": ce(spliced(keys)), "ce_zero": ce(zero(keys)), "ce_mean": ce(mean(keys))}
        for kind in ("zero", "mean"):
            gap = result[f"ce_{kind}"] - clean
            result[f"recovered_{kind}"] = (result[f"ce_{kind}"] - result["ce"]) / gap if gap > 0 else float("nan")
        return result

    report = {"clean": clean, "all": summary(layers)}
    if each_layer:
        report["layers"] = {layer: summary([layer]) for layer in layers}
    return report


def _as_replacement(transcoder):
    """The transcoder as an MLP stand-in: any leading shape, the model's dtype."""
    transcoder.eval()

    def run(x):
        flat = x.reshape(-1, x.shape[-1]).to(transcoder.W_enc.dtype)
        return transcoder(flat).output.reshape(*x.shape[:-1], -1).to(x.dtype)

    return run


def as_replacements(transcoders: dict) -> dict:
    """``{layer: callable}`` for :func:`sctranscoder.harvest.replace_mlp`."""
    return {layer: _as_replacement(t) for layer, t in transcoders.items()}


def token_batches(input_ids: list, loss_masks: list | None = None, batch_size: int = 16, device="cpu") -> list:
    """Right-padded ``(input_ids, attention_mask, loss_mask)`` batches from token id lists."""
    from ..harvest import pad_ids

    batches = []
    for start in range(0, len(input_ids), batch_size):
        ids, mask = pad_ids(input_ids[start : start + batch_size], device)
        loss = mask.clone()
        if loss_masks is not None:
            for i, row in enumerate(loss_masks[start : start + batch_size]):
                loss[i, : len(row)] = torch.as_tensor(np.asarray(row, dtype=np.int64))
        batches.append((ids, mask, loss))
    return batches
