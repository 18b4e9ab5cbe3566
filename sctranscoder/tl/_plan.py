"""A run planned before it starts: tokens, store size per layer and dtype, time from a few measured batches,
the live path's memory, and whether to harvest a store or train live, against the disk and memory at hand."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# per stored row: document int64, position/gene/gene_id/token_id int32, last_of_gene bool (harvest.METADATA)
METADATA_BYTES = 8 + 4 * 4 + 1
HEADROOM = 0.9  # plan to use at most this share of the free disk or memory


@dataclass
class Plan:
    """What :func:`plan` found; ``str(plan)`` is the printed plan."""

    n_cells: int
    layers: list
    width: int
    tokens_per_cell: dict
    """Mean, min and max stored tokens (rows) per cell."""
    n_rows: int
    """Rows a harvest stores per layer (kept tokens of all cells)."""
    store_bytes: dict
    """``{dtype: {"per_layer": bytes, "metadata": bytes, "total": bytes}}``."""
    live_bytes: dict
    """The live path's memory besides the model, per part (:func:`sctranscoder.tc.live_memory`), and
    ``model`` (its parameters)."""
    disk_free: int
    disk_path: str
    memory_available: int
    seconds: dict = field(default_factory=dict)
    """Estimated seconds: ``forward`` (one whole pass over every cell), ``harvest`` (up to the last requested
    layer, as a harvest runs), ``train_stored``, ``train_live`` (empty when nothing was measured)."""
    dtype: str = "float16"
    recommendation: str = ""
    recommended_layers: list = field(default_factory=list)

    def store_fits(self, dtype: str | None = None, layers=None) -> bool:
        return self.store_size(dtype, layers) <= HEADROOM * self.disk_free

    def store_size(self, dtype: str | None = None, layers=None) -> int:
        sizes = self.store_bytes[dtype or self.dtype]
        n = len(self.layers if layers is None else layers)
        return n * sizes["per_layer"] + sizes["metadata"]

    def __str__(self) -> str:
        t = self.tokens_per_cell
        lines = [f"Plan for {self.n_cells:,} cells, layers {_layer_text(self.layers)} (width {self.width}):",
                 f"  tokens per cell: {t['mean']:,.0f} on average ({t['min']:,}-{t['max']:,}); "
                 f"{self.n_rows:,} in all",
                 "  activation store (a harvest): " + "; ".join(
                     f"{dtype} {_size(s['per_layer'])} a layer, {_size(self.store_size(dtype))} in all"
                     for dtype, s in self.store_bytes.items()),
                 f"  free disk at {self.disk_path}: {_size(self.disk_free)}",
                 f"  live path (no store): {_size(self.live_bytes['total'])} of buffers and transcoders besides "
                 f"the model's {_size(self.live_bytes['model'])}; memory available: {_size(self.memory_available)}"]
        if self.seconds:
            s = self.seconds
            lines.append(f"  estimated time (from measured batches): forward pass over every cell {_duration(s['forward'])}, "
                         f"harvest {_duration(s['harvest'])} then training {_duration(s['train_stored'])}; "
                         f"live training {_duration(s['train_live'])}")
        lines.append(f"  recommended: {self.recommendation}")
        return "\n".join(lines)


def _layer_text(layers) -> str:
    return f"{layers[0]}-{layers[-1]}" if len(layers) > 2 and list(layers) == list(range(layers[0], layers[-1] + 1)) \
        else ",".join(map(str, layers))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def free_disk_bytes(path) -> tuple[int, str]:
    """Free bytes on the disk that holds ``path`` (its nearest existing parent), and that folder."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free, str(path)


def available_memory_bytes() -> int:
    """Memory available to a new process (MemAvailable in /proc/meminfo; else the physical memory)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def stored_rows(encoded, only_genes: bool = False, drop_special: bool = True) -> np.ndarray:
    """Rows a harvest stores per cell: its tokens, less special ones (and those outside genes)."""
    from ..harvest._harvest import token_filter

    keep = token_filter(only_genes, drop_special)
    return np.array([int(keep(np.asarray(g), np.asarray(s, bool)).sum())
                     for g, s in zip(encoded.token_gene, encoded.special)], dtype=np.int64)


def plan(adata, model, layers=None, *, out_dir=None, label_key: str | None = None, encoded=None, cfg=None,
         dtype: str = "float16", only_genes: bool = False, drop_special: bool = True, measure_cells: int = 8,
         batch_size: int = 16, documents_per_pass: int = 16, progress: bool = False, **settings) -> Plan:
    """Plan harvesting and transcoder training before running them.

    Parameters
    ----------
    adata, model
        Cells and a :class:`sctranscoder.models.C2SModel`.
    layers
        Layers to plan for (all when None).
    out_dir
        Where the store would go (the disk checked for room); default: the working directory.
    label_key
        As for :func:`sctranscoder.tl.harvest` (prompts with their answers).
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`).
    cfg, settings
        The transcoder settings (as for :func:`sctranscoder.tl.train_transcoders`), for the live path's memory
        and the training time.
    dtype
        The store dtype the recommendation is for (every dtype's size is printed).
    measure_cells
        Cells run through the model (and transcoder steps timed) to estimate the time; 0: no estimate.

    Returns
    -------
    A :class:`Plan`; ``print(plan)`` shows it. It recommends a stored harvest when its store fits in 90% of
    the free disk (a store serves many epochs and runs); else live training when the live path fits in 90%
    of the available memory; else the most layers that fit either way.
    """
    import torch

    from ..harvest import mlp_sites
    from ..tc import Transcoder, live_memory
    from ._encode import encode_cells
    from ._transcoders import _config_for

    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype={dtype!r} must be one of {tuple(DTYPE_BYTES)}.")
    layers = list(mlp_sites(model.model, layers))
    if encoded is None:
        encoded = encode_cells(adata, model, label_key=label_key, progress=progress)
    rows = stored_rows(encoded, only_genes, drop_special)
    n_rows = int(rows.sum())
    width = int(model.model.config.hidden_size)
    store = {name: {"per_layer": n_rows * 2 * width * size, "metadata": n_rows * METADATA_BYTES}
             for name, size in DTYPE_BYTES.items()}
    for sizes in store.values():
        sizes["total"] = len(layers) * sizes["per_layer"] + sizes["metadata"]
    cfg = _config_for(model, cfg, settings).resolve(n_rows)
    buffer_rows = max(16 * cfg.batch_size, 65_536)
    pass_rows = documents_per_pass * int(rows.max(initial=1))
    live = live_memory(cfg, len(layers), buffer_rows=buffer_rows, pass_rows=pass_rows)
    live["model"] = sum(p.numel() * p.element_size() for p in model.model.parameters())
    disk_free, disk_path = free_disk_bytes(out_dir if out_dir is not None else Path.cwd())
    result = Plan(n_cells=adata.n_obs, layers=layers, width=width,
                  tokens_per_cell={"mean": float(rows.mean()) if rows.size else 0.0, "min": int(rows.min()) if rows.size else 0,
                                   "max": int(rows.max(initial=0))},
                  n_rows=n_rows, store_bytes=store, live_bytes=live, disk_free=disk_free, disk_path=disk_path,
                  memory_available=available_memory_bytes(), dtype=dtype)
    if measure_cells and adata.n_obs:
        result.seconds = _measure(model, encoded, layers, cfg, n_rows, min(measure_cells, adata.n_obs),
                                  batch_size, torch, Transcoder)
    _recommend(result)
    return result


def _measure(model, encoded, layers, cfg, n_rows, n_cells, batch_size, torch, Transcoder) -> dict:
    """Seconds for the whole run, extrapolated from a few cells' forward passes and a few transcoder steps."""
    from ..harvest._harvest import _pad

    device = model.device
    model.model.eval()
    ids = encoded.input_ids[:n_cells]
    tokens = sum(len(i) for i in ids)
    scale = sum(len(i) for i in encoded.input_ids) / max(tokens, 1)

    def timed(capture: bool) -> float:
        from contextlib import nullcontext

        from ..harvest import MLPCapture, mlp_sites
        from ..harvest._harvest import _StopForward
        from ..harvest._stream import _stop_after_layer

        # a harvest and the live path stop after the last captured layer: the LM head never runs
        stop = _stop_after_layer(mlp_sites(model.model, [max(layers)])[max(layers)]) if capture else nullcontext()
        with torch.no_grad(), MLPCapture(model.model, layers if capture else []) as hooks, stop:
            start = time.perf_counter()
            for b in range(0, n_cells, batch_size):
                batch, mask = _pad(ids[b : b + batch_size], device)
                try:
                    model.model(input_ids=batch, attention_mask=mask, use_cache=False)
                except _StopForward:
                    pass
                for layer in hooks.layers:  # what a harvest does with each layer's rows, less the disk write
                    hooks.inputs[layer].to("cpu", torch.float16)
                    hooks.outputs[layer].to("cpu", torch.float16)
                hooks.clear()
            return (time.perf_counter() - start) * scale

    with torch.no_grad():
        model.model(input_ids=_pad(ids[:1], device)[0][:, :8], use_cache=False)  # warm-up
    forward, harvest = timed(False), timed(True)
    transcoder = Transcoder(cfg, device=device).train()
    optimizer = torch.optim.Adam(transcoder.parameters(), lr=1e-4)
    x = torch.randn(cfg.batch_size, cfg.d_in, device=device)
    steps = []
    for _ in range(3):
        start = time.perf_counter()
        out = transcoder(x, x)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        steps.append(time.perf_counter() - start)
    step = min(steps)
    train = step * cfg.n_steps * len(layers)
    return {"forward": forward, "harvest": harvest, "train_stored": train,
            "train_live": harvest * max(1, cfg.n_steps * cfg.batch_size / max(n_rows, 1)) + train}


def _recommend(p: Plan) -> None:
    memory_ok = p.live_bytes["total"] + p.live_bytes["model"] <= HEADROOM * p.memory_available
    if p.store_fits():
        p.recommendation = (f"a stored harvest ({p.dtype}, {_size(p.store_size())}) of layers "
                            f"{_layer_text(p.layers)}: it fits on the disk and serves every epoch and run.")
        p.recommended_layers = list(p.layers)
        return
    if memory_ok:
        p.recommendation = (f"live training (train_transcoders(..., live=True)) of layers {_layer_text(p.layers)}: "
                            f"the store ({_size(p.store_size())}) does not fit in the free disk.")
        p.recommended_layers = list(p.layers)
        return
    per_layer_live = (p.live_bytes["buffers"] + p.live_bytes["transcoders"] + p.live_bytes["final_rows"]) \
        / max(len(p.layers), 1)
    fit_memory = int((HEADROOM * p.memory_available - p.live_bytes["model"] - p.live_bytes["step"]) // per_layer_live)
    sizes = p.store_bytes[p.dtype]
    fit_disk = int((HEADROOM * p.disk_free - sizes["metadata"]) // max(sizes["per_layer"], 1))
    if max(fit_memory, fit_disk) <= 0:
        p.recommendation = ("neither fits: free disk or memory, or plan fewer cells (the store grows with the "
                            "tokens), or a smaller d_hidden / batch_size (the live path's memory).")
        return
    live_wins = fit_memory >= fit_disk
    n = min(len(p.layers), max(fit_memory, fit_disk))
    p.recommended_layers = list(p.layers[:n])
    p.recommendation = (f"{'live training' if live_wins else 'a stored harvest'} of {n} layers at a time "
                        f"(layers {_layer_text(p.recommended_layers)} first, then the next ones): all "
                        f"{len(p.layers)} fit neither on the disk nor in memory.")


def check_store_fits(adata, model, layers, store_dir, *, encoded, dtype: str, only_genes: bool,
                     drop_special: bool, label_key=None, subsample: float = 1.0) -> None:
    """Stop a harvest before it starts when its store would not fit on the disk, with the plan as the message."""
    from ..harvest import mlp_sites

    layers = list(mlp_sites(model.model, layers))
    rows = int(stored_rows(encoded, only_genes, drop_special).sum())
    width = int(model.model.config.hidden_size)
    needed = (len(layers) * rows * 2 * width * DTYPE_BYTES[dtype] + rows * METADATA_BYTES) * subsample
    present = sum(f.stat().st_size for f in Path(store_dir).glob("*.safetensors")) if Path(store_dir).is_dir() else 0
    free, _ = free_disk_bytes(store_dir)
    if needed - present <= HEADROOM * free:  # a resumed harvest needs only what is not on disk yet
        return
    laid_out = plan(adata, model, layers, out_dir=store_dir, label_key=label_key, encoded=encoded, dtype=dtype,
                    only_genes=only_genes, drop_special=drop_special, measure_cells=0)
    raise OSError(f"The activation store would not fit: it needs {_size(needed - present)} more at {store_dir}, "
                  f"and {_size(free)} is free (at most {HEADROOM:.0%} of it is planned).\n{laid_out}")
