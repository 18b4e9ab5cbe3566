"""How big a harvest is before it runs: rows and bytes of a store per layer and dtype, the disk and memory at
hand, and the plan that weighs a stored harvest against live training (model-agnostic: token metadata in,
numbers and words out)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._harvest import token_filter

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
        lines = [f"Plan for {self.n_cells:,} cells, layers {layer_text(self.layers)} (width {self.width}):",
                 f"  tokens per cell: {t['mean']:,.0f} on average ({t['min']:,}-{t['max']:,}); "
                 f"{self.n_rows:,} in all",
                 "  activation store (a harvest): " + "; ".join(
                     f"{dtype} {size_text(s['per_layer'])} a layer, {size_text(self.store_size(dtype))} in all"
                     for dtype, s in self.store_bytes.items()),
                 f"  free disk at {self.disk_path}: {size_text(self.disk_free)}",
                 f"  live path (no store): {size_text(self.live_bytes['total'])} of buffers and transcoders besides "
                 f"the model's {size_text(self.live_bytes['model'])}; memory available: {size_text(self.memory_available)}"]
        if self.seconds:
            s = self.seconds
            lines.append(f"  estimated time (from measured batches): forward pass over every cell {duration_text(s['forward'])}, "
                         f"harvest {duration_text(s['harvest'])} then training {duration_text(s['train_stored'])}; "
                         f"live training {duration_text(s['train_live'])}")
        lines.append(f"  recommended: {self.recommendation}")
        return "\n".join(lines)


def layer_text(layers) -> str:
    return f"{layers[0]}-{layers[-1]}" if len(layers) > 2 and list(layers) == list(range(layers[0], layers[-1] + 1)) \
        else ",".join(map(str, layers))


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def duration_text(seconds: float) -> str:
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


def stored_rows(token_gene, special, only_genes: bool = False, drop_special: bool = True) -> np.ndarray:
    """Rows a harvest stores per document: its tokens, less special ones (and those outside spans)."""
    keep = token_filter(only_genes, drop_special)
    return np.array([int(keep(np.asarray(g), np.asarray(s, bool)).sum()) for g, s in zip(token_gene, special)],
                    dtype=np.int64)


def store_bytes(n_rows: int, width: int, n_layers: int) -> dict:
    """``{dtype: {"per_layer", "metadata", "total"}}``: bytes of a store of ``n_rows`` rows (inputs and outputs of
    ``width``) over ``n_layers`` layers."""
    store = {name: {"per_layer": n_rows * 2 * width * size, "metadata": n_rows * METADATA_BYTES}
             for name, size in DTYPE_BYTES.items()}
    for sizes in store.values():
        sizes["total"] = n_layers * sizes["per_layer"] + sizes["metadata"]
    return store


def recommend(p: Plan) -> None:
    """Fill in ``p.recommendation`` and ``p.recommended_layers``: a stored harvest when its store fits in 90% of
    the free disk, else live training when the live path fits in 90% of the available memory, else the most
    layers that fit either way."""
    memory_ok = p.live_bytes["total"] + p.live_bytes["model"] <= HEADROOM * p.memory_available
    if p.store_fits():
        p.recommendation = (f"a stored harvest ({p.dtype}, {size_text(p.store_size())}) of layers "
                            f"{layer_text(p.layers)}: it fits on the disk and serves every epoch and run.")
        p.recommended_layers = list(p.layers)
        return
    if memory_ok:
        p.recommendation = (f"live training (train_transcoders(..., live=True)) of layers {layer_text(p.layers)}: "
                            f"the store ({size_text(p.store_size())}) does not fit in the free disk.")
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
                        f"(layers {layer_text(p.recommended_layers)} first, then the next ones): all "
                        f"{len(p.layers)} fit neither on the disk nor in memory.")
