"""Every layer's transcoder trained from one shared forward pass per batch of documents, with no store on disk.

The model runs once per ``documents_per_pass`` documents; hooks capture every requested layer's MLP input and
output into per-layer shuffle buffers (:func:`sctranscoder.harvest.stream_layers`), and each layer's
:class:`TranscoderTrainer` steps on its batch of those rows, all layers in lockstep. Per-layer live training
ran the model once per layer; this runs it once.

Under ``torch.distributed`` layers are spread over processes, and so are documents: each process runs the model
on its share of a pass's documents and sends each layer's rows to the process that owns that layer's
transcoder, which trains it alone on whole batches (no gradient all-reduce). Why that split rather than
splitting batches: the forward pass is shared out either way, but with batches split every process would hold
every layer's transcoder and Adam state and all-reduce all their gradients every step (at Pythia-410m shape,
24 layers x 2 x 1024 x 16,384 x 4 bytes = 3.2 GB of gradients a step); owning layers sends only the
activations each layer needs once (24 x 2 x 1024 x 4 bytes = 196 KB a token) and divides the transcoders'
memory by the number of processes. This is how sparsify spreads hookpoints over GPUs. The rows a layer is
trained on are those one process would see, in the same order, so the result equals one process's up to the
model's floating-point differences between batch shapes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch

from .._distributed import rank_and_world
from .._progress import progress_bar
from ._config import TranscoderConfig
from ._convergence import FINAL_ROWS
from ._io import load
from ._trainer import TranscoderTrainer

logger = logging.getLogger(__name__)

__all__ = ["live_memory", "owners_of", "resolve_precision", "train_live"]


def resolve_precision(precision: str, device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``"auto"``: bfloat16 on a GPU that supports it, else full
    float32); None means no autocast."""
    if precision not in ("auto", "bfloat16", "float32"):
        raise ValueError(f"precision={precision!r} must be 'auto', 'bfloat16' or 'float32'.")
    device = torch.device(device)
    if precision == "auto":
        supported = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if supported else None
    return torch.bfloat16 if precision == "bfloat16" else None


def owners_of(layers, world: int) -> dict[int, int]:
    """Which process trains which layer: round robin over ``world`` processes."""
    return {layer: i % world for i, layer in enumerate(layers)}


def live_memory(cfg: TranscoderConfig, n_layers: int, *, buffer_rows: int, pass_rows: int) -> dict[str, int]:
    """Bytes the live one-pass path holds besides the model and one forward pass, per part.

    - ``buffers``: the shuffle buffers (:func:`sctranscoder.harvest.buffer_bytes`, float32);
    - ``transcoders``: weights, gradients and Adam's two moments, float32, per layer;
    - ``final_rows``: the last training rows each layer keeps for its convergence check;
    - ``step``: one layer's training step (pre-activations and their gradient, batch x d_hidden).
    """
    from ..harvest import buffer_bytes

    params = cfg.d_hidden * (cfg.d_in + cfg.d_out + 2) + cfg.d_out + 3 * cfg.d_in + (cfg.d_in * cfg.d_out
                                                                                     if cfg.skip else 0)
    batch = cfg.batch_size or 4096
    steps = max(1, (cfg.n_tokens or 1000 * batch) // batch)
    kept = batch * max(1, min(FINAL_ROWS // batch, steps // 10))
    parts = {"buffers": buffer_bytes(n_layers, cfg.d_in, buffer_rows, pass_rows),
             "transcoders": n_layers * 4 * params * 4,
             "final_rows": n_layers * kept * (cfg.d_in + cfg.d_out) * 4,
             "step": 3 * batch * cfg.d_hidden * 4}
    parts["total"] = sum(parts.values())
    return parts


STREAM_SETTINGS = {"buffer_rows": None, "documents_per_pass": 16, "only_spans": False, "drop_special": True}
"""The stream settings :func:`train_live` takes (``**stream``), with their defaults."""


def train_live(model, encode: Callable, n_documents: int, layers, cfg: TranscoderConfig, *, out_dir=None,
               checkpoint_every: int = 200, device=None, model_name: str | None = None, precision: str = "auto",
               progress: bool = True, stop_after: int | None = None, **stream) -> dict:
    """Train one transcoder per layer from a single forward pass per batch of documents (no activation store).

    Parameters
    ----------
    model, encode, n_documents
        A Hugging Face model of a supported architecture and its documents, as for
        :func:`sctranscoder.harvest.harvest`.
    layers
        Layers to train (all when None).
    cfg
        Settings shared by every layer (a stream's length is unknown, so an automatic batch size is 4096).
    out_dir
        Folder of the transcoders, one ``layer{L}/`` each, with their checkpoints. A run started again with
        the same settings resumes every layer from its checkpoint and ends with the weights of an
        uninterrupted run: the row order is replayed from the documents' lengths, and only the documents
        still in the shuffle buffer run through the model again.
    stream
        The live stream's settings (:data:`STREAM_SETTINGS`): ``buffer_rows`` (rows of each layer's shuffle
        buffer, default ``max(16 * batch_size, 65,536)``), ``documents_per_pass`` (documents per forward pass
        over all processes, default 16), ``only_spans`` and ``drop_special`` (which tokens are rows, as in
        :func:`sctranscoder.harvest.harvest`).
    precision
        ``"auto"`` (bf16 autocast on a GPU that supports it), ``"bfloat16"`` or ``"float32"``: the model's
        forward pass and each transcoder's forward and loss run under autocast in that dtype; the
        transcoders' weights and Adam state stay float32.
    stop_after
        Stop after this many steps in all (to test resuming).

    Returns
    -------
    ``{layer: Transcoder}``. Memory beyond the model: :func:`live_memory` (logged at the start). Under
    ``torch.distributed`` each process trains the layers :func:`owners_of` gives it; with ``out_dir`` every
    process returns every layer (read back from disk), else only its own.
    """
    from ..harvest import mlp_sites

    unknown = sorted(set(stream) - set(STREAM_SETTINGS))
    if unknown:
        raise TypeError(f"train_live() got unknown settings {unknown}; it takes {sorted(STREAM_SETTINGS)}.")
    stream = {**STREAM_SETTINGS, **stream}
    buffer_rows, documents_per_pass = stream["buffer_rows"], stream["documents_per_pass"]
    only_spans, drop_special = stream["only_spans"], stream["drop_special"]
    layers = list(mlp_sites(model, layers))
    cfg = cfg.resolve()
    rank, world = rank_and_world()
    owners = owners_of(layers, world)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    autocast_dtype = resolve_precision(precision, device)
    buffer_rows = buffer_rows or max(16 * cfg.batch_size, 65_536)
    out_dir = Path(out_dir) if out_dir is not None else None
    trainers = {layer: TranscoderTrainer(None, layer, cfg, out_dir=out_dir / f"layer{layer}" if out_dir else None,
                                         checkpoint_every=checkpoint_every, device=device, model_name=model_name,
                                         progress=False, data_parallel=False, autocast_dtype=autocast_dtype)
                for layer in layers if owners[layer] == rank}
    done = {layer: load(t.out_dir, device=device) for layer, t in trainers.items() if t.already_trained}
    training = {layer: t for layer, t in trainers.items() if layer not in done}
    for trainer in training.values():
        trainer.prepare(None)
    n_steps = cfg.n_steps
    start = _agreed_minimum(min([t.completed for t in training.values()], default=n_steps))

    pass_rows = documents_per_pass * max(len(encode(0, 1).input_ids[0]), 1) if n_documents else 0
    memory = live_memory(cfg, len(training), buffer_rows=buffer_rows, pass_rows=pass_rows)
    logger.info("Live training of layers %s from one forward pass per %d documents%s: at most %.2f GiB besides "
                "the model (shuffle buffers %.2f, transcoders with Adam %.2f, final-check rows %.2f, one step "
                "%.2f)%s.", sorted(training), documents_per_pass, " (bf16 autocast)" if autocast_dtype else "",
                memory["total"] / 2**30, memory["buffers"] / 2**30, memory["transcoders"] / 2**30,
                memory["final_rows"] / 2**30, memory["step"] / 2**30,
                f", resuming at step {start}" if start else "")
    if start < n_steps:
        _run(model, encode, n_documents, layers, cfg, training, start, n_steps, owners=owners,
             buffer_rows=buffer_rows, documents_per_pass=documents_per_pass, only_spans=only_spans,
             drop_special=drop_special, autocast_dtype=autocast_dtype, checkpoint_every=checkpoint_every,
             progress=progress and rank == 0, stop_after=stop_after)
    result = dict(done)
    result.update({layer: trainer.finish() for layer, trainer in training.items()})
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if out_dir is not None and (stop_after is None or stop_after >= n_steps):
            result.update({layer: load(out_dir / f"layer{layer}", device=device)
                           for layer in layers if layer not in result})
    return dict(sorted(result.items()))


def _run(model, encode, n_documents, layers, cfg, training, start, n_steps, *, owners, buffer_rows,
         documents_per_pass, only_spans, drop_special, autocast_dtype, checkpoint_every, progress, stop_after):
    from ..harvest import stream_layers

    batches = stream_layers(model, encode, n_documents, layers, batch_size=cfg.batch_size, buffer_rows=buffer_rows,
                            documents_per_pass=documents_per_pass, only_spans=only_spans, drop_special=drop_special,
                            seed=cfg.seed, skip_batches=start, max_batches=n_steps, owners=owners,
                            autocast_dtype=autocast_dtype)
    bar = progress_bar(total=n_steps, initial=start, desc=f"transcoders ({len(layers)} layers, one pass)",
                       unit="steps", enabled=progress)
    step = start
    end = n_steps if stop_after is None else min(n_steps, stop_after)
    try:
        for batch in batches:
            for layer, trainer in training.items():
                x, y = batch[layer]
                if step == 0 and trainer.completed == 0:  # a new transcoder's scales come from the first batch, as in TranscoderTrainer.setup
                    trainer.initialize(x, y)
                if trainer.completed == step:  # a layer whose checkpoint is ahead waits for the stream
                    trainer.step(x, y)
            step += 1
            bar.update(1)
            if step >= end:
                break
            if step % checkpoint_every == 0:
                for trainer in training.values():
                    if trainer.completed == step:
                        trainer.checkpoint()
        else:
            logger.warning("The documents ran out after %d of %d steps.", step, n_steps)
    finally:
        batches.close()  # removes the capture hooks
        bar.close()


def _agreed_minimum(value: int) -> int:
    """The smallest ``value`` over all processes (the step every layer has reached)."""
    rank, world = rank_and_world()
    if world == 1:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value if math.isfinite(value) else 2**62], dtype=torch.long)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor)
