"""Activations harvested on the fly into a shuffle buffer, for training without a store on disk."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

import numpy as np

from ._architectures import mlp_sites
from ._harvest import Documents, _pad, _row_metadata, token_filter
from ._hooks import MLPCapture


def stream(model, encode: Callable[[int, int], Documents], n_documents: int, layer: int, *, batch_size: int = 4096,
           buffer_rows: int = 65_536, documents_per_pass: int = 16, only_spans: bool = False,
           drop_special: bool = True, seed: int = 0, epochs: int | None = None):
    """Endless shuffled ``(mlp_in, mlp_out)`` batches of one layer, harvested while they are consumed.

    Documents are visited in a seeded random order (a new one each epoch), run
    through the model ``documents_per_pass`` at a time, and their tokens' rows go
    into a buffer of ``buffer_rows``; batches are drawn at random from a full
    buffer, which is refilled when half empty. Memory stays at one buffer,
    whatever ``n_documents``. ``epochs=None`` cycles forever.
    """
    import torch

    (layer, _), = mlp_sites(model, [layer]).items()
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    x_buffer, y_buffer = [], []
    held = 0

    keep_mask = token_filter(only_spans, drop_special)

    def drain(minimum):
        nonlocal x_buffer, y_buffer, held
        x, y = torch.cat(x_buffer), torch.cat(y_buffer)
        order = torch.from_numpy(rng.permutation(len(x)))
        x, y = x[order], y[order]
        while len(x) - batch_size >= minimum:
            yield x[:batch_size], y[:batch_size]
            x, y = x[batch_size:], y[batch_size:]
        x_buffer, y_buffer, held = [x], [y], len(x)

    model.eval()
    with MLPCapture(model, [layer]) as capture:
        for epoch in count() if epochs is None else range(epochs):
            order = rng.permutation(n_documents)
            for start in range(0, n_documents, documents_per_pass):
                picked = np.sort(order[start : start + documents_per_pass])
                docs = [encode(int(i), int(i) + 1) for i in picked]
                merged = Documents([d.input_ids[0] for d in docs],
                                   None if docs[0].token_gene is None else [d.token_gene[0] for d in docs],
                                   None, None if docs[0].special is None else [d.special[0] for d in docs])
                keep, _ = _row_metadata(merged, 0, keep_mask, rng, 1.0)
                ids, mask = _pad(merged.input_ids, device)
                rows = torch.cat([torch.as_tensor(k, dtype=torch.long) + j * ids.shape[1]
                                  for j, k in enumerate(keep)]).to(device)
                with torch.no_grad():  # not around the yields: the consumer trains with gradients
                    model(input_ids=ids, attention_mask=mask, use_cache=False)
                x_buffer.append(capture.inputs[layer].flatten(0, 1)[rows].float().cpu())
                y_buffer.append(capture.outputs[layer].flatten(0, 1)[rows].float().cpu())
                capture.clear()
                held += len(rows)
                if held >= buffer_rows:
                    yield from drain(buffer_rows // 2)
        if held:
            yield from drain(0)
