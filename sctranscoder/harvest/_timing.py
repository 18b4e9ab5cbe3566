"""Seconds a forward pass over documents takes, measured on a few and scaled, as a harvest runs them."""

from __future__ import annotations

import time
from contextlib import nullcontext

from ._harvest import _StopForward, pad_ids
from ._stream import _stop_after_layer


def forward_seconds(model, input_ids, layers, *, n_documents: int, batch_size: int, device,
                    capture: bool = True) -> float:
    """Seconds to run ``model`` over every document, from its first ``n_documents`` (scaled by tokens).

    With ``capture``, the MLPs of ``layers`` are captured and copied to the CPU as float16, and the model stops
    after the last of them (a harvest and the live path never run the LM head); else a whole forward pass.
    """
    import torch

    from ._architectures import mlp_sites
    from ._hooks import MLPCapture

    ids = input_ids[:n_documents]
    tokens = sum(len(i) for i in ids)
    scale = sum(len(i) for i in input_ids) / max(tokens, 1)
    stop = _stop_after_layer(mlp_sites(model, [max(layers)])[max(layers)]) if capture else nullcontext()
    with torch.no_grad(), MLPCapture(model, layers if capture else []) as hooks, stop:
        start = time.perf_counter()
        for b in range(0, n_documents, batch_size):
            batch, mask = pad_ids(ids[b : b + batch_size], device)
            try:
                model(input_ids=batch, attention_mask=mask, use_cache=False)
            except _StopForward:
                pass
            for layer in hooks.layers:  # what a harvest does with each layer's rows, less the disk write
                hooks.inputs[layer].to("cpu", torch.float16)
                hooks.outputs[layer].to("cpu", torch.float16)
            hooks.clear()
        return (time.perf_counter() - start) * scale


def warm_up(model, input_ids, device) -> None:
    """One short pass, so that the timed passes do not pay for first-call setup."""
    import torch

    with torch.no_grad():
        model(input_ids=pad_ids(input_ids[:1], device)[0][:, :8], use_cache=False)
