"""Side by side: the quickstart's independent steps in worker processes vs one process.

    python benchmarks/bench_workers.py --transcoders quickstart_out/transcoders

The quickstart's middle (the transcoders' evaluation on 64 held-out cells, every layer's feature activity and
enrichment, the feature controls, and the five largest types' circuits with their knockouts and steering, at the
quickstart's settings) with ``--workers`` processes of one torch thread each (``sctranscoder._workers``), and in
one process with every core's thread (the reference, what the quickstart ran before). Each side runs in a fresh
process. Prints the speed-up, whether the results agree, and peak memory (the side's process; for the workers,
also the largest worker's).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
from _memory import in_fresh_process, peak_rss_mib  # benchmarks/ is on the path when a script runs


def _setup(transcoders: Path):
    import sctranscoder as sct
    from sctranscoder.cli._commands import _load_transcoders

    return sct.models.default(), sct.datasets.pbmc68k_reduced(), _load_transcoders(transcoders)


def _summary(quality, circuits) -> dict:
    """What the two sides should agree on."""
    return {"quality": quality.select_dtypes("number").to_numpy(float),
            "steering": {t: c.steering.attrs.get("fraction_moved") for t, c in circuits.items()
                         if c.steering is not None},
            "effects": {t: c.supernodes.measured_effect.to_numpy(float) for t, c in circuits.items()},
            "genes": {t: list(c.genes.gene.head(10)) for t, c in circuits.items()}}


def workers_side(n_workers: int, transcoders: Path, queue) -> None:
    import sctranscoder as sct
    from sctranscoder._workers import Workers
    from sctranscoder.cli import _parse
    from sctranscoder.cli._commands import run_circuits
    from sctranscoder.cli._quickstart import _sample, feature_meanings

    model, adata, transcoders = _setup(transcoders)
    args = _parse(["quickstart"])  # the quickstart's settings
    label_key = model.metadata["label_key"]
    held_out = sct.tl.held_out_mask(adata, model)
    cells = adata[_sample(adata, held_out, args.eval_cells, label_key, args.transcoder_seed)].copy()
    start = time.perf_counter()
    with Workers(n_workers) as workers:
        quality = workers.submit(sct.tl.evaluate_transcoders, cells, model, transcoders, cells=cells.obs_names,
                                 label_key=label_key, progress=False)
        meanings = workers.submit(feature_meanings, cells, model, transcoders, args.transcoder_seed)
        circuits = run_circuits(cells, model, transcoders, args, label_key, progress=False, ranked_by=adata,
                                workers=workers, knockout_pool=adata[held_out].copy())
        quality, _ = quality.result(), meanings.result()
    seconds = time.perf_counter() - start
    largest_worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put((seconds, _summary(quality, circuits), peak_rss_mib(), largest_worker))


def main() -> None:
    from sctranscoder._workers import available_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcoders", type=Path, default=Path("quickstart_out/transcoders"),
                        help="the quickstart's transcoders (README command 1 writes them)")
    parser.add_argument("--workers", type=int, default=available_cores())
    args = parser.parse_args()
    if not (args.transcoders / "layer0").is_dir():
        parser.error(f"--transcoders {args.transcoders} holds no layer0/: run the quickstart first "
                     "(sctranscoder quickstart --out quickstart_out) or point it at its transcoders/ folder")

    fast, summary, memory, worker = in_fresh_process(workers_side, args.workers, args.transcoders)
    slow, reference, memory_reference, _ = in_fresh_process(workers_side, 1, args.transcoders)
    effects = max(np.abs(summary["effects"][t] - reference["effects"][t]).max()
                  if summary["effects"][t].shape == reference["effects"][t].shape else np.inf  # other supernodes
                  for t in reference["effects"])
    print(f"quickstart's evaluation, circuits and controls: {args.workers} workers {fast:.1f} s, one process "
          f"{slow:.1f} s, speed-up {slow / fast:.2f}x; peak {memory:.0f} MiB here + {worker:.0f} MiB the largest "
          f"worker, vs {memory_reference:.0f} MiB")
    print(f"  same steering: {summary['steering'] == reference['steering']}; same top-10 genes: "
          f"{summary['genes'] == reference['genes']}; supernode effects max |diff| {effects:.1e}; transcoder "
          f"quality max |diff| {np.nanmax(np.abs(summary['quality'] - reference['quality'])):.1e} (the same cells "
          f"undefined: {np.array_equal(np.isnan(summary['quality']), np.isnan(reference['quality']))})")


if __name__ == "__main__":
    main()
