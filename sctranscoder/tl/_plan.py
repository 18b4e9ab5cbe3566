"""A run planned before it starts, on an AnnData's cells (the sizes, probes and timing live in
:mod:`sctranscoder.harvest` and :mod:`sctranscoder.tc`)."""

from __future__ import annotations

from pathlib import Path

from ..harvest import (  # noqa: F401  (older imports of these names from here)
    DTYPE_BYTES,
    HEADROOM,
    METADATA_BYTES,
    Plan,
    available_memory_bytes,
    free_disk_bytes,
)
from ..models import TrainingPlan, plan_training  # noqa: F401  (training a model is planned here too)


def stored_rows(encoded, only_genes: bool = False, drop_special: bool = True):
    """Rows a harvest stores per cell (:func:`sctranscoder.harvest.stored_rows` of the cells' tokens)."""
    from ..harvest import stored_rows as rows_of

    return rows_of(encoded.token_gene, encoded.special, only_genes, drop_special)


def plan(adata, model, layers=None, *, out_dir=None, label_key: str | None = None, encoded=None, cfg=None,
         dtype: str = "float16", only_genes: bool = False, drop_special: bool = True, measure_cells: int = 8,
         batch_size: int = 16, documents_per_pass: int = 16, progress: bool = True, **settings) -> Plan:
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
    from ..harvest import forward_seconds, mlp_sites, recommend, store_bytes, warm_up
    from ..prompt import resolve_cells
    from ..tc import config_for_width, live_memory, step_seconds

    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype={dtype!r} must be one of {tuple(DTYPE_BYTES)}.")
    layers = list(mlp_sites(model.model, layers))
    encoded = resolve_cells(adata, model, encoded, label_key=label_key, with_answers=True, progress=progress)
    rows = stored_rows(encoded, only_genes, drop_special)
    n_rows = int(rows.sum())
    width = int(model.model.config.hidden_size)
    cfg = config_for_width(width, cfg, **settings).resolve(n_rows)
    buffer_rows = max(16 * cfg.batch_size, 65_536)
    pass_rows = documents_per_pass * int(rows.max(initial=1))
    live = live_memory(cfg, len(layers), buffer_rows=buffer_rows, pass_rows=pass_rows)
    live["model"] = sum(p.numel() * p.element_size() for p in model.model.parameters())
    disk_free, disk_path = free_disk_bytes(out_dir if out_dir is not None else Path.cwd())
    result = Plan(n_cells=adata.n_obs, layers=layers, width=width,
                  tokens_per_cell={"mean": float(rows.mean()) if rows.size else 0.0, "min": int(rows.min()) if rows.size else 0,
                                   "max": int(rows.max(initial=0))},
                  n_rows=n_rows, store_bytes=store_bytes(n_rows, width, len(layers)), live_bytes=live,
                  disk_free=disk_free, disk_path=disk_path, memory_available=available_memory_bytes(), dtype=dtype)
    if measure_cells and adata.n_obs:
        n_cells = min(measure_cells, adata.n_obs)
        model.model.eval()
        timing = dict(n_documents=n_cells, batch_size=batch_size, device=model.device)
        warm_up(model.model, encoded.input_ids, model.device)
        forward = forward_seconds(model.model, encoded.input_ids, layers, capture=False, **timing)
        harvest = forward_seconds(model.model, encoded.input_ids, layers, capture=True, **timing)
        train = step_seconds(cfg, model.device) * cfg.n_steps * len(layers)
        result.seconds = {"forward": forward, "harvest": harvest, "train_stored": train,
                          "train_live": harvest * max(1, cfg.n_steps * cfg.batch_size / max(n_rows, 1)) + train}
    recommend(result)
    return result


def check_store_fits(adata, model, layers, out_dir, *, encoded, dtype: str, only_genes: bool,
                     drop_special: bool, label_key=None, subsample: float = 1.0) -> None:
    """Stop a harvest before it starts when its store would not fit on the disk, with the plan as the message."""
    from ..harvest import mlp_sites, size_text

    layers = list(mlp_sites(model.model, layers))
    rows = int(stored_rows(encoded, only_genes, drop_special).sum())
    width = int(model.model.config.hidden_size)
    needed = (len(layers) * rows * 2 * width * DTYPE_BYTES[dtype] + rows * METADATA_BYTES) * subsample
    present = sum(f.stat().st_size for f in Path(out_dir).glob("*.safetensors")) if Path(out_dir).is_dir() else 0
    free, _ = free_disk_bytes(out_dir)
    if needed - present <= HEADROOM * free:  # a resumed harvest needs only what is not on disk yet
        return
    laid_out = plan(adata, model, layers, out_dir=out_dir, label_key=label_key, encoded=encoded, dtype=dtype,
                    only_genes=only_genes, drop_special=drop_special, measure_cells=0, progress=False)
    raise OSError(f"The activation store would not fit: it needs {size_text(needed - present)} more at {out_dir}, "
                  f"and {size_text(free)} is free (at most {HEADROOM:.0%} of it is planned).\n{laid_out}")
