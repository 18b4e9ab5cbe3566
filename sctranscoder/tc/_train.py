"""Training a transcoder on (MLP input, MLP output) rows: Adam, warmup and decay, revival of dead features,
atomic checkpoints that resume exactly, data parallelism over torch.distributed."""

from __future__ import annotations

import json
import logging
import math
import os
from itertools import count
from pathlib import Path

import torch

from .._atomic import atomic_path
from .._distributed import rank_and_world
from .._progress import progress_bar
from ._config import TranscoderConfig
from ._io import CONFIG, WEIGHTS, load, save
from ._model import Transcoder

logger = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.safetensors"


def learning_rate_factor(step: int, cfg: TranscoderConfig) -> float:
    """Linear warmup to 1, then cosine or linear decay to 0.1 at the last step."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "none":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(1, cfg.n_steps - cfg.warmup_steps)
    progress = min(1.0, progress)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.decay == "cosine" else 1 - progress
    return 0.1 + 0.9 * shape


def _is_store(source) -> bool:
    return hasattr(source, "batches") and hasattr(source, "layers")


def global_batches(source, layer: int, cfg: TranscoderConfig, chunks=None):
    """Endless global batches ``(x, y)`` of ``cfg.batch_size`` rows.

    A store is read epoch after epoch, shuffled by ``(cfg.seed, epoch)``; any
    other iterable of ``(x, y)`` batches is read once, re-batched to the batch size.
    """
    if _is_store(source):
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


def _initialization_sample(source, layer, cfg, chunks, rows: int):
    """Rows to set biases and scales from: a separately shuffled pass over a store, or the first batch."""
    if _is_store(source):
        xs, ys, held = [], [], 0
        for x, y in source.batches(layer, min(rows, 8192), seed=cfg.seed + 1, chunks=chunks):
            xs.append(x)
            ys.append(y)
            held += len(x)
            if held >= rows:
                break
        return torch.cat(xs), torch.cat(ys)
    return None


# -- checkpoints -----------------------------------------------------------------------------
def _save_checkpoint(path: Path, transcoder, optimizer, step: int) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in transcoder.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"step": str(step), "config": json.dumps(transcoder.cfg.to_dict())})


def _load_checkpoint(path: Path, transcoder, optimizer) -> int:
    from safetensors import safe_open

    with safe_open(path, framework="pt", device=str(transcoder.device)) as handle:
        meta = handle.metadata()
        saved = json.loads(meta["config"])
        if saved != transcoder.cfg.to_dict():
            changed = sorted(k for k in saved if saved[k] != transcoder.cfg.to_dict().get(k))
            raise ValueError(f"{path} was written with other settings ({', '.join(changed)} differ); delete it to "
                             "start over, or train with the same settings to resume.")
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    transcoder.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return int(meta["step"])


# -- revival by resampling --------------------------------------------------------------------
@torch.no_grad()
def resample_dead(transcoder: Transcoder, optimizer, x, y, output, step: int) -> int:
    """Point dead features at the worst-reconstructed rows of the batch; returns how many were resampled."""
    dead = torch.nonzero(transcoder.dead_features()).flatten()
    if dead.numel() == 0:
        return 0
    error = (y - output).pow(2).sum(-1)
    generator = torch.Generator().manual_seed(transcoder.cfg.seed * 1_000_003 + step)
    rows = torch.multinomial(error.cpu() + 1e-12, dead.numel(), replacement=dead.numel() > len(error),
                             generator=generator).to(x.device)
    residual = (y - output)[rows]
    centred = transcoder.normalized_input(x)[rows]
    alive = ~transcoder.dead_features()
    scale = transcoder.W_enc[alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0)
    transcoder.W_dec[dead] = residual / residual.norm(dim=1, keepdim=True).clamp_min(1e-8)
    transcoder.W_enc[dead] = 0.2 * scale * centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-8)
    transcoder.b_enc[dead] = 0.0
    transcoder.tokens_since_fired[dead] = 0
    for parameter in (transcoder.W_dec, transcoder.W_enc, transcoder.b_enc):
        state = optimizer.state.get(parameter, {})
        for name in ("exp_avg", "exp_avg_sq"):
            if name in state:
                state[name][dead] = 0.0
    return int(dead.numel())


# -- the loop --------------------------------------------------------------------------------
def train(
    source,
    layer: int,
    cfg: TranscoderConfig,
    *,
    out_dir=None,
    chunks=None,
    checkpoint_every: int = 200,
    init_rows: int = 65_536,
    device=None,
    model_name: str | None = None,
    hook_point: str = "mlp",
    progress: bool = True,
    stop_after: int | None = None,
) -> Transcoder:
    """Train a transcoder for one layer.

    Parameters
    ----------
    source
        An activation store (:class:`sctranscoder.harvest.ActivationStore` or
        ``MemoryStore``), read in shuffled epochs; or any iterable of ``(mlp_in,
        mlp_out)`` batches (for example :func:`sctranscoder.harvest.stream`, which
        harvests on the fly into a shuffle buffer).
    layer
        The layer whose MLP the transcoder replaces.
    cfg
        Architecture and training settings.
    out_dir
        Folder of the trained transcoder (:func:`save` layout). Checkpoints go there
        too, every ``checkpoint_every`` steps, written atomically; training started
        again with the same settings resumes from the last one and, reading a store,
        ends with the same weights as an uninterrupted run.
    chunks
        Store chunks to train on (hold the others out for evaluation).
    init_rows
        Rows used to set the input centre and scale and the output bias.
    device
        Where to train (default: CPU, or the source's tensors' device).
    stop_after
        Stop after this many steps without finishing (to test resuming).

    Under ``torch.distributed`` every process reads the same global batches and
    trains on its share of the rows; gradients are averaged, so the result
    matches one process up to floating-point summation order (BatchTopK picks its
    top activations per process, so it matches less closely).
    """
    import torch.distributed as dist

    rank, world = rank_and_world()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must divide evenly over {world} processes.")
    out_dir = Path(out_dir) if out_dir is not None else None
    checkpoint = out_dir / CHECKPOINT if out_dir is not None else None
    if out_dir is not None and (out_dir / CONFIG).exists() and not checkpoint.exists():
        logger.info("%s already holds a trained transcoder; loading it.", out_dir)
        return load(out_dir, device=device)
    device = torch.device(device or "cpu")
    transcoder = Transcoder(cfg, device=device).train()
    parameters = [p for p in transcoder.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=cfg.learning_rate, betas=(0.9, 0.999))

    start = 0
    if checkpoint is not None and checkpoint.exists():
        start = _load_checkpoint(checkpoint, transcoder, optimizer)
        logger.info("Resuming layer %d from step %d.", layer, start)
    batches = global_batches(source, layer, cfg, chunks)
    if start == 0:
        sample = _initialization_sample(source, layer, cfg, chunks, init_rows)
        if sample is None:
            first = next(batches)
            sample = first
            batches = _prepend(first, batches)
        transcoder.init_from_data(*sample)
        transcoder.normalize_decoder()
    else:
        for _ in range(start):  # the same data order as an uninterrupted run
            next(batches)

    if out_dir is not None and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    bar = progress_bar(total=cfg.n_steps, initial=start, desc=f"transcoder layer {layer}", unit="steps",
                       enabled=progress and not rank)
    running: dict[str, float] = {}
    step = start
    for step in range(start, cfg.n_steps):
        if stop_after is not None and step >= stop_after:
            break
        x, y = next(batches, (None, None))
        if x is None:
            logger.warning("The data ran out after %d of %d steps.", step, cfg.n_steps)
            break
        x, y = x[rank::world].to(device, torch.float32), y[rank::world].to(device, torch.float32)
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * learning_rate_factor(step, cfg)
        out = transcoder(x, y, dead=transcoder.dead_features())
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        transcoder.remove_parallel_gradient()
        fired = _fired(transcoder, out)
        if world > 1:
            for p in parameters:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= world
            fired = fired.to(torch.uint8)
            dist.all_reduce(fired, op=dist.ReduceOp.MAX)
            if cfg.activation == "batchtopk":
                dist.all_reduce(transcoder.threshold)
                transcoder.threshold /= world
        optimizer.step()
        transcoder.normalize_decoder()
        with torch.no_grad():
            transcoder.tokens_since_fired += cfg.batch_size
            transcoder.tokens_since_fired[fired.bool()] = 0
        if cfg.revival == "resample" and (step + 1) % max(1, cfg.dead_window // cfg.batch_size) == 0:
            resample_dead(transcoder, optimizer, x, y, out.output.detach(), step)
        _update_running(running, out, transcoder)
        bar.update(1)
        bar.set_postfix(loss=f"{running['loss']:.4f}", fvu=f"{running['fvu']:.4f}", l0=f"{running['l0']:.1f}",
                        dead=f"{running['dead']:.1%}", refresh=False)
        if checkpoint is not None and rank == 0 and (step + 1) % checkpoint_every == 0 and step + 1 < cfg.n_steps:
            _save_checkpoint(checkpoint, transcoder, optimizer, step + 1)
    else:
        step = cfg.n_steps
    bar.close()
    finished = step >= cfg.n_steps
    if checkpoint is not None and rank == 0:
        if finished:
            save(transcoder, out_dir.with_name(out_dir.name + ".final"), hook_point=hook_point, model_name=model_name,
                 layer=layer, metrics={"train": running, "steps": cfg.n_steps})
            _move_final_into_place(out_dir)
        else:
            _save_checkpoint(checkpoint, transcoder, optimizer, step)
    if world > 1:
        dist.barrier()
    transcoder.metadata = {"hook_point": hook_point, "model_name": model_name, "layer": layer,
                           "metrics": {"train": running, "steps": step}}
    return transcoder.eval()


def _prepend(first, rest):
    yield first
    yield from rest


def _fired(transcoder: Transcoder, out) -> torch.Tensor:
    if out.indices is not None:
        fired = torch.zeros(transcoder.cfg.d_hidden, dtype=torch.bool, device=out.values.device)
        fired[out.indices[out.values > 0]] = True
        return fired
    return (out.features > 0).any(0)


def _update_running(running: dict, out, transcoder, decay: float = 0.9) -> None:
    values = {"loss": float(out.loss.detach()), "fvu": float(out.fvu.detach()), "l0": float(out.l0),
              "dead": float(transcoder.dead_features().float().mean())}
    for key, value in values.items():
        running[key] = value if key not in running else decay * running[key] + (1 - decay) * value


def _move_final_into_place(out_dir: Path) -> None:
    """The finished transcoder replaces the checkpoint folder's content: weights, config, no checkpoint."""
    final = out_dir.with_name(out_dir.name + ".final")
    for name in (WEIGHTS, CONFIG):  # config last: it marks the folder as a finished transcoder
        os.replace(final / name, out_dir / name)
    final.rmdir()
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
