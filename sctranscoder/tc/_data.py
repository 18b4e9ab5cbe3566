"""Training rows for the trainer: endless global batches from a store or an iterable, and the sample that
sets a new transcoder's scales."""

from __future__ import annotations

from itertools import count

import torch


def is_store(source) -> bool:
    return hasattr(source, "batches") and hasattr(source, "layers")


def training_rows(source, chunks=None) -> int | None:
    """Rows a store holds (in ``chunks``); None for an iterable, whose length is unknown."""
    if not is_store(source):
        return None
    if chunks is None:
        return len(source)
    return sum(source._rows(c) for c in chunks)  # the stores' row count per chunk, without loading it


def global_batches(source, layer: int, cfg, chunks=None):
    """Endless global batches ``(x, y)`` of ``cfg.batch_size`` rows.

    A store is read epoch after epoch, shuffled by ``(cfg.seed, epoch)``; any
    other iterable of ``(x, y)`` batches is read once, re-batched to the batch size.
    """
    if is_store(source):
        for epoch in count():
            yield from source.batches(layer, cfg.batch_size, seed=cfg.seed, epoch=epoch, chunks=chunks,
                                      drop_last=True)
        return
    xs, ys, held = [], [], 0
    for x, y in source:
        xs.append(x)
        ys.append(y)
        held += len(x)
        while held >= cfg.batch_size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            yield x_all[: cfg.batch_size], y_all[: cfg.batch_size]
            xs, ys, held = [x_all[cfg.batch_size :]], [y_all[cfg.batch_size :]], held - cfg.batch_size


def initialization_sample(source, layer, cfg, chunks, rows: int):
    """Rows to set biases and scales from: a separately shuffled pass over a store (None for an iterable,
    whose first batch serves)."""
    if not is_store(source):
        return None
    xs, ys, held = [], [], 0
    for x, y in source.batches(layer, min(rows, 8192), seed=cfg.seed + 1, chunks=chunks):
        xs.append(x)
        ys.append(y)
        held += len(x)
        if held >= rows:
            break
    return torch.cat(xs), torch.cat(ys)


def prepend(first, rest):
    yield first
    yield from rest
