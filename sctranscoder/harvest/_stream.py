"""Activations harvested on the fly into a shuffle buffer, for training without a store on disk.

One forward pass serves every requested layer: each layer's rows go into its own buffer, and all buffers are
shuffled with the same permutation, so a batch of layer 3 holds the same tokens as the batch of layer 0 drawn
with it. Which tokens those are depends only on the seed and the documents' lengths, never on the activations:
that is what lets a run restarted from a checkpoint replay the row order without running the model again (rows
are followed by their ``(document, position)`` key) and fill the buffer with only the documents still in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from itertools import count

import numpy as np

from .._distributed import rank_and_world
from ._architectures import mlp_sites
from ._config import StreamConfig
from ._harvest import Documents, _row_metadata, _stop_after, _StopForward, pad_ids, token_filter
from ._hooks import MLPCapture

logger = logging.getLogger(__name__)


def stream(model, encode: Callable[[int, int], Documents], n_documents: int, layer: int, *, batch_size: int = 4096,
           buffer_rows: int = 65_536, documents_per_pass: int = 16, only_spans: bool = False,
           drop_special: bool = True, seed: int = 0, epochs: int | None = None, max_batches: int | None = None):
    """Endless shuffled ``(mlp_in, mlp_out)`` batches of one layer, harvested while they are consumed.

    Documents are visited in a seeded random order (a new one each epoch), run
    through the model ``documents_per_pass`` at a time, and their tokens' rows go
    into a buffer of ``buffer_rows``; batches are drawn at random from a full
    buffer, which is refilled when half empty. Memory stays at one buffer,
    whatever ``n_documents``. ``epochs=None`` cycles forever; ``max_batches`` stops after that many batches.
    (:func:`stream_layers` does the same for several layers from one forward pass.)
    """
    (layer, _), = mlp_sites(model, [layer]).items()
    for batch in stream_layers(model, encode, n_documents, [layer], batch_size=batch_size, buffer_rows=buffer_rows,
                               documents_per_pass=documents_per_pass, only_spans=only_spans,
                               drop_special=drop_special, seed=seed, epochs=epochs, max_batches=max_batches,
                               split_documents=False):
        yield batch[layer]


def buffer_bytes(n_layers: int, width: int, buffer_rows: int, pass_rows: int, dtype_bytes: int = 4) -> int:
    """The most bytes the shuffle buffers of :func:`stream_layers` hold: ``buffer_rows`` plus one pass's rows
    (added before a full buffer is drained), times the layers, times MLP input and output, plus the row keys."""
    rows = buffer_rows + pass_rows
    return rows * (n_layers * 2 * width * dtype_bytes + 16)


def stream_layers(model, encode: Callable[[int, int], Documents], n_documents: int, layers=None,
                  cfg: StreamConfig | None = None, *, owners: dict | None = None, **settings):
    """Shuffled batches of several layers' ``(mlp_in, mlp_out)`` rows, all from one forward pass per
    ``documents_per_pass`` documents: yields ``{layer: (x, y)}``, the same tokens in every layer.

    Parameters
    ----------
    model, encode, n_documents
        As for :func:`sctranscoder.harvest.harvest`.
    layers
        Layers to capture (all when None).
    cfg
        A :class:`StreamConfig`; ``settings`` change single fields of it (``batch_size``, ``buffer_rows``,
        ``documents_per_pass``, ``only_spans``, ``drop_special``, ``seed``, ``epochs`` as for :func:`stream`,
        and those below).
    skip_batches
        Start after this many batches, as if they had been drawn (to resume training): the row order is
        replayed from the documents' lengths alone, and only the documents whose rows are still in the buffer
        at that point run through the model.
    max_batches
        Stop after this many batches in all (skipped ones included): once the buffer holds the rows still
        needed, they are shuffled and drawn without reading more documents, so a run of one epoch runs the
        model over each document once rather than over the next epoch's first documents to keep the buffer full.
    owners
        Under ``torch.distributed``: ``{layer: rank}``, the process that trains each layer. Every process
        runs the model on its share of each pass's documents (``split_documents``) and sends each layer's
        rows to that layer's owner; a process is yielded only the layers it owns. Default: every layer on
        every process.
    autocast_dtype
        Run the model under ``torch.autocast`` in this dtype (``torch.bfloat16``), None for full precision.
    buffer_dtype, buffer_device
        Where the buffers live (default: float32, on the model's device, so a GPU never copies rows back).

    Memory: at most :func:`buffer_bytes` for the layers this process owns, plus one forward pass.
    """
    import torch

    cfg = StreamConfig.build(cfg, **settings)
    batch_size, buffer_rows, documents_per_pass = cfg.batch_size, cfg.buffer_rows, cfg.documents_per_pass
    only_spans, drop_special, seed, epochs = cfg.only_spans, cfg.drop_special, cfg.seed, cfg.epochs
    skip_batches, max_batches, split_documents = cfg.skip_batches, cfg.max_batches, cfg.split_documents
    autocast_dtype, buffer_dtype, buffer_device = cfg.autocast_dtype, cfg.buffer_dtype, cfg.buffer_device
    sites = mlp_sites(model, layers)
    layer_list = list(sites)
    rank, world = rank_and_world()
    owners = dict(owners) if owners is not None else {layer: rank for layer in layer_list}
    mine = [layer for layer in layer_list if owners[layer] == rank]
    device = next(model.parameters()).device
    buffer_device = torch.device(buffer_device) if buffer_device is not None else device
    buffer_dtype = buffer_dtype or torch.float32
    rng = np.random.default_rng(seed)
    keep_mask = token_filter(only_spans, drop_special)
    split = split_documents and world > 1

    def kept_positions(picked):
        docs = [encode(int(i), int(i) + 1) for i in picked]
        merged = Documents([d.input_ids[0] for d in docs],
                           None if docs[0].token_gene is None else [d.token_gene[0] for d in docs],
                           None, None if docs[0].special is None else [d.special[0] for d in docs])
        keep, _ = _row_metadata(merged, 0, keep_mask, rng, 1.0)  # no subsampling: the rng is not drawn from
        return merged.input_ids, keep

    def keys_of(picked, keep, pass_id):
        """Each row's ``(pass, document, position)``: what it is, and which forward pass made it."""
        return np.concatenate([np.stack([np.full(k.size, pass_id), np.full(k.size, d), k], 1)
                               for d, k in zip(picked, keep)]).astype(np.int64)

    def forward_rows(picked, ids_list, keep) -> dict:
        """This process's layers' rows of the documents ``picked`` (every kept token, in document order)."""
        shares = np.array_split(np.arange(len(picked)), world) if split else [np.arange(len(picked))]
        share = shares[rank] if split else shares[0]
        if len(share):
            ids, mask = pad_ids([ids_list[j] for j in share], device)
            flat = torch.cat([torch.as_tensor(keep[j], dtype=torch.long) + n * ids.shape[1]
                              for n, j in enumerate(share)]).to(device)
            amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
            with torch.no_grad(), amp:
                try:
                    model(input_ids=ids, attention_mask=mask, use_cache=False)
                except _StopForward:  # the layers after the last captured one, and the LM head, are not needed
                    pass
            local = {layer: (capture.inputs[layer].flatten(0, 1)[flat], capture.outputs[layer].flatten(0, 1)[flat])
                     for layer in layer_list}
            capture.clear()
        else:
            local = {layer: None for layer in layer_list}
        if not split:
            return {layer: tuple(t.to(buffer_device, buffer_dtype) for t in local[layer]) for layer in mine}
        counts = [sum(len(keep[j]) for j in s) for s in shares]
        return _gather_to_owners(local, counts, owners, rank, world, width, buffer_dtype, buffer_device)

    width = int(model.config.hidden_size)
    buffer: dict = {layer: ([], []) for layer in mine}
    key_parts: list = []
    held = 0
    to_skip = skip_batches
    drawn = 0  # batches yielded or skipped
    live = to_skip == 0  # rows carry activations (False: only their keys, while replaying up to skip_batches)

    passes: dict = {}  # pass -> its documents, for the passes with rows in the buffer

    n_passes = 0

    def fill(picked):
        nonlocal held, n_passes
        ids_list, keep = kept_positions(picked)
        passes[n_passes] = picked
        key_parts.append(keys_of(picked, keep, n_passes))
        n_passes += 1
        held += len(key_parts[-1])
        if live:
            for layer, (x, y) in forward_rows(picked, ids_list, keep).items():
                buffer[layer][0].append(x)
                buffer[layer][1].append(y)

    def materialize(keys):
        """The buffer's activations for rows ``keys``, from the same forward passes that first made them (the same
        documents padded together, so the same numbers to the last bit)."""
        if not len(keys):
            return {layer: (torch.empty(0, width, dtype=buffer_dtype, device=buffer_device),) * 2 for layer in mine}
        found = {layer: ([], []) for layer in mine}
        place = {}
        offset = 0
        for pass_id in np.unique(keys[:, 0]):
            picked = passes[int(pass_id)]
            ids_list, keep = kept_positions(picked)
            for d, k in zip(picked, keep):
                place.update({(int(pass_id), int(d), int(p)): offset + n for n, p in enumerate(k)})
                offset += k.size
            for layer, (x, y) in forward_rows(picked, ids_list, keep).items():
                found[layer][0].append(x)
                found[layer][1].append(y)
        index = torch.as_tensor([place[tuple(map(int, key))] for key in keys], dtype=torch.long,
                                device=buffer_device)
        return {layer: (torch.cat(xs)[index], torch.cat(ys)[index]) for layer, (xs, ys) in found.items()}

    def rows_still_needed():
        return None if max_batches is None else (max_batches - drawn) * batch_size

    def drain(minimum):
        nonlocal held, to_skip, live, drawn
        keys = np.concatenate(key_parts)
        order = rng.permutation(len(keys))
        keys = keys[order]
        if live:
            index = torch.from_numpy(order).to(buffer_device)
            data = {layer: (torch.cat(xs)[index], torch.cat(ys)[index]) for layer, (xs, ys) in buffer.items()}
        while len(keys) - batch_size >= minimum and (max_batches is None or drawn < max_batches):
            drawn += 1
            if not live:
                to_skip -= 1
                keys = keys[batch_size:]
                if to_skip == 0:
                    live = True
                    logger.info("Resumed the live stream after %d batches; rebuilding its buffer of %d rows.",
                                skip_batches, len(keys))
                    data = materialize(keys)
                continue
            yield {layer: (x[:batch_size], y[:batch_size]) for layer, (x, y) in data.items()}
            data = {layer: (x[batch_size:], y[batch_size:]) for layer, (x, y) in data.items()}
            keys = keys[batch_size:]
        key_parts[:] = [keys]
        held = len(keys)
        for pass_id in set(passes) - set(np.unique(keys[:, 0]).tolist()):
            del passes[pass_id]
        for layer in mine:
            buffer[layer] = ([data[layer][0]], [data[layer][1]]) if live else ([], [])

    model.eval()
    with MLPCapture(model, layer_list) as capture, _stop_after_layer(sites[layer_list[-1]]):
        for _ in count() if epochs is None else range(epochs):
            order = rng.permutation(n_documents)
            for start in range(0, n_documents, documents_per_pass):
                fill(np.sort(order[start : start + documents_per_pass]))
                needed = rows_still_needed()
                if needed is not None and held >= needed:
                    yield from drain(0)
                    return
                if held >= buffer_rows:
                    yield from drain(buffer_rows // 2)
        if held:
            yield from drain(0)


@contextmanager
def _stop_after_layer(site):
    # registered after the capture's hooks, so it runs after they have read the last layer
    handle = site.modules[-1].register_forward_hook(_stop_after)
    try:
        yield
    finally:
        handle.remove()


def _gather_to_owners(local, counts, owners, rank, world, width, dtype, device) -> dict:
    """Send each layer's rows to the process that owns it; the owner receives every process's rows in rank
    order (the documents' order, as each process ran a consecutive share of them)."""
    import torch
    import torch.distributed as dist

    most = max(counts)
    received = {}
    for layer, owner in owners.items():
        part = local[layer]
        padded = torch.zeros(most, 2 * width, dtype=dtype, device=device)
        if part is not None and len(part[0]):
            padded[: len(part[0])] = torch.cat(part, 1).to(device, dtype)
        gathered = [torch.empty_like(padded) for _ in range(world)] if rank == owner else None
        dist.gather(padded, gathered, dst=owner)
        if rank == owner:
            rows = torch.cat([g[:n] for g, n in zip(gathered, counts)])
            received[layer] = (rows[:, :width].contiguous(), rows[:, width:].contiguous())
    return received
