"""The harvest loop: tokenized documents in, MLP inputs/outputs per token into a store.

Documents are processed in fixed chunks (``chunk_size`` documents each, one shard
per chunk), so the rows of a chunk never depend on what ran before: a resumed or
multi-process harvest gives the same rows as one uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .._distributed import barrier, rank_and_world
from .._progress import progress_bar
from ._architectures import mlp_sites
from ._hooks import MLPCapture
from ._store import METADATA, ActivationStore, MemoryStore, _torch_dtype, shard_tensors

logger = logging.getLogger(__name__)


@dataclass
class Documents:
    """Tokenized documents of one chunk.

    Attributes
    ----------
    input_ids
        One integer array per document.
    token_gene
        Per document and token: the index of the gene (or any span: a word, a
        field) the token belongs to, -1 outside spans. ``None``: no spans.
    span_ids
        Per document: for each span, its identity in a shared list (the gene's
        index in the store's gene list). ``None``: spans have no identity.
    special
        Per document and token: True for tokens ``drop_special`` removes (BOS and
        other special tokens). ``None``: none are special.
    """

    input_ids: list
    token_gene: list | None = None
    span_ids: list | None = None
    special: list | None = None


def last_of_span(token_gene: np.ndarray) -> np.ndarray:
    """Per token: it belongs to a span and the next token does not belong to the same span."""
    following = np.append(token_gene[1:], -1)
    return (token_gene >= 0) & (following != token_gene)


class _StopForward(Exception):
    """Raised by a hook once the last harvested layer has run, to skip the rest of the model."""


def _open_store(store, layers, widths, dtype, info, rank):
    if isinstance(store, MemoryStore):
        return store
    if rank == 0:
        opened = ActivationStore.create(store, layers, *widths, dtype=dtype, info=info)
        removed = opened.remove_partial_files()
        if removed:
            logger.info("Removed %d partial shard files left by an interrupted harvest.", removed)
    barrier()
    return opened if rank == 0 else ActivationStore(store)


def _widths(model, layers):
    width = int(model.config.hidden_size)  # every supported MLP maps the residual width to itself
    return {layer: width for layer in layers}, {layer: width for layer in layers}


def pad_ids(ids_list, device):
    """Token id lists as one right-padded batch: ``(input_ids, attention_mask)`` on ``device``."""
    import torch

    width = max(len(ids) for ids in ids_list)
    ids = torch.zeros((len(ids_list), width), dtype=torch.long)
    mask = torch.zeros((len(ids_list), width), dtype=torch.long)
    for i, row in enumerate(ids_list):
        ids[i, : len(row)] = torch.as_tensor(np.asarray(row, dtype=np.int64))
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def token_filter(only_spans: bool, drop_special: bool):
    """``keep(gene, special)``: which tokens of a document to keep."""
    def keep(gene, special):
        mask = np.ones(gene.size, bool)
        if drop_special:
            mask &= ~special
        if only_spans:
            mask &= gene >= 0
        return mask

    return keep


def _row_metadata(docs: Documents, first_document: int, keep_mask, rng, subsample: float) -> tuple[list, dict]:
    """Which tokens of each document to keep, and their metadata columns."""
    keep, columns = [], {k: [] for k in METADATA}
    for i, ids in enumerate(docs.input_ids):
        ids = np.asarray(ids)
        gene = np.asarray(docs.token_gene[i]) if docs.token_gene is not None else np.full(ids.size, -1)
        special = np.asarray(docs.special[i], bool) if docs.special is not None else np.zeros(ids.size, bool)
        mask = keep_mask(gene, special)
        if subsample < 1.0:
            mask &= rng.random(ids.size) < subsample
        positions = np.flatnonzero(mask)
        keep.append(positions)
        columns["document"].append(np.full(positions.size, first_document + i, np.int64))
        columns["position"].append(positions.astype(np.int32))
        columns["gene"].append(gene[positions].astype(np.int32))
        ids_of_spans = np.asarray(docs.span_ids[i]) if docs.span_ids is not None else None
        gene_id = np.full(positions.size, -1, np.int32)
        if ids_of_spans is not None:
            spanned = gene[positions] >= 0
            gene_id[spanned] = ids_of_spans[gene[positions][spanned]]
        columns["gene_id"].append(gene_id)
        columns["last_of_gene"].append(last_of_span(gene)[positions])
        columns["token_id"].append(ids[positions].astype(np.int32))
    return keep, {k: np.concatenate(v) for k, v in columns.items()}


def harvest(
    model,
    encode: Callable[[int, int], Documents],
    n_documents: int,
    store,
    layers=None,
    *,
    chunk_size: int = 256,
    batch_size: int = 16,
    dtype: str = "float16",
    only_spans: bool = False,
    drop_special: bool = True,
    subsample: float = 1.0,
    seed: int = 0,
    info: dict | None = None,
    progress: bool = True,
):
    """Run ``model`` over documents and store each kept token's MLP inputs and outputs.

    Parameters
    ----------
    model
        A Hugging Face causal LM or BERT-style encoder of a supported architecture, in eval mode.
    encode
        ``encode(start, stop)`` returns the :class:`Documents` ``start..stop-1``.
    n_documents
        How many documents there are.
    store
        A folder (an :class:`ActivationStore` is made there, or resumed) or a :class:`MemoryStore`.
    layers
        Layers to harvest (all when None).
    chunk_size
        Documents per shard.
    batch_size
        Documents per forward pass.
    dtype
        Stored float type: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    only_spans
        Keep only tokens inside a span (gene tokens); drop prompt and answer tokens.
    drop_special
        Drop special tokens (BOS, ...). Padding is never stored.
    subsample
        Keep each remaining token with this probability (seeded per chunk by ``seed``).
    info
        Recorded in the store (model name, prompt settings); a resumed harvest must match it.
    progress
        Show a progress bar with tokens/s.

    Returns
    -------
    The store. Under ``torch.distributed`` each rank harvests every ``world_size``-th
    chunk into the same store folder.
    """
    import torch

    if not 0.0 < subsample <= 1.0:
        raise ValueError(f"subsample={subsample} must be in (0, 1].")
    if chunk_size < 1 or batch_size < 1:
        raise ValueError("chunk_size and batch_size must be at least 1.")
    sites = mlp_sites(model, layers)
    layer_list = list(sites)
    rank, world = rank_and_world()
    settings = {"chunk_size": chunk_size, "batch_size": batch_size, "only_spans": only_spans,
                "drop_special": drop_special, "subsample": subsample, "seed": seed, "n_documents": int(n_documents)}
    store = _open_store(store, layer_list, _widths(model, layer_list), dtype, {**(info or {}), "harvest": settings}, rank)
    n_chunks = -(-n_documents // chunk_size)
    todo = [c for c in range(rank, n_chunks, world) if not store.has_chunk(c)]
    skipped = len(range(rank, n_chunks, world)) - len(todo)
    if skipped:
        logger.info("Resuming: %d of this process's chunks are already in the store.", skipped)

    keep_mask = token_filter(only_spans, drop_special)
    device = next(model.parameters()).device
    stored = _torch_dtype(dtype)
    last_layer = layer_list[-1]
    n_todo = sum(min(chunk_size, n_documents - c * chunk_size) for c in todo)
    bar = progress_bar(total=n_todo, unit="docs", desc=f"harvest (rank {rank})" if world > 1 else "harvest",
                       enabled=progress)
    tokens, started = 0, time.perf_counter()
    writer = ThreadPoolExecutor(max_workers=1)  # the next chunk's forward runs while this one is written
    pending = stop_handle = None
    try:
        with MLPCapture(model, layer_list) as capture, torch.no_grad():
            # registered after the capture's hooks, so it runs after they have read the last layer
            stop_handle = sites[last_layer].modules[-1].register_forward_hook(_stop_after)
            for chunk in todo:
                start, stop = chunk * chunk_size, min(n_documents, (chunk + 1) * chunk_size)
                docs = encode(start, stop)
                if len(docs.input_ids) != stop - start:
                    raise ValueError(f"encode({start}, {stop}) returned {len(docs.input_ids)} documents.")
                rng = np.random.default_rng([seed, chunk])
                keep, metadata = _row_metadata(docs, start, keep_mask, rng, subsample)
                mlp_in = {layer: [] for layer in layer_list}
                mlp_out = {layer: [] for layer in layer_list}
                for b in range(0, len(docs.input_ids), batch_size):
                    ids, mask = pad_ids(docs.input_ids[b : b + batch_size], device)
                    rows = torch.cat([torch.as_tensor(k, dtype=torch.long) + j * ids.shape[1]
                                      for j, k in enumerate(keep[b : b + batch_size])]).to(device)
                    try:
                        model(input_ids=ids, attention_mask=mask, use_cache=False)
                    except _StopForward:
                        pass
                    for layer in layer_list:  # kept in the stored dtype: half the memory for float16
                        mlp_in[layer].append(capture.inputs[layer].flatten(0, 1)[rows].to("cpu", stored))
                        mlp_out[layer].append(capture.outputs[layer].flatten(0, 1)[rows].to("cpu", stored))
                    capture.clear()  # let the allocator reuse the batch's activations at once
                    tokens += int(mask.sum())
                    bar.update(ids.shape[0])
                    bar.set_postfix_str(f"{tokens / (time.perf_counter() - started):,.0f} tok/s", refresh=False)
                tensors = shard_tensors(layer_list, {k: torch.cat(v) for k, v in mlp_in.items()},
                                        {k: torch.cat(v) for k, v in mlp_out.items()}, metadata, dtype)
                if pending is not None:
                    pending.result()
                pending = writer.submit(store.write_shard, chunk, tensors)
            if pending is not None:
                pending.result()
    finally:
        if stop_handle is not None:
            stop_handle.remove()
        writer.shutdown(wait=True)
        bar.close()
    barrier()
    if rank == 0:
        store.finish(n_chunks)
    barrier()
    return store if rank == 0 or isinstance(store, MemoryStore) else ActivationStore(store.path)


def _stop_after(module, args, output):
    raise _StopForward
