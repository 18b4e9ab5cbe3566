"""Streaming a backed .h5ad to parquet keeps memory bounded, whatever the number of cells.

    python benchmarks/bench_backed_stream.py --cells 100000 1000000

Writes synthetic CSR files of each size (2,000 genes, 2% density), streams each
to parquet with sct.pp.write_sentences in a fresh process, and prints the
process's peak resident memory next to the file size. Bounded means the peak
stays flat as the cell count grows tenfold.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_file(path: Path, n_cells: int, n_genes: int, density: float, block: int = 100_000) -> None:
    """Build the matrix block by block so the writer itself stays small."""
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(0)
    blocks = []
    for start in range(0, n_cells, block):
        rows = min(block, n_cells - start)
        m = sparse.random(rows, n_genes, density=density, format="csr", dtype=np.float32, random_state=rng)
        m.data = np.log1p(np.ceil(m.data * 20)).astype(np.float32)
        blocks.append(m)
    matrix = sparse.vstack(blocks, format="csr")
    obs = pd.DataFrame({"label": rng.choice(["B", "T", "NK", "Mono"], n_cells)},
                       index=[f"cell{i}" for i in range(n_cells)])
    adata = ad.AnnData(matrix, obs=obs)
    adata.var_names = [f"GENE{i}" for i in range(n_genes)]
    adata.write_h5ad(path)


def stream(path: str, out: str) -> None:
    import sctranscoder as sct

    t0 = time.perf_counter()
    sct.pp.write_sentences(path, out, obs_columns=["label"], n_genes=200, progress=False)
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork + exec
    status = Path("/proc/self/status").read_text()
    peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(f"{time.perf_counter() - t0:.1f} {peak:.0f}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--stream":
        stream(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--density", type=float, default=0.02)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'cells':>10s} {'h5ad MiB':>9s} {'seconds':>8s} {'peak RSS MiB':>13s}")
        for n in args.cells:
            path = Path(tmp) / f"cells_{n}.h5ad"
            write_file(path, n, args.genes, args.density)
            result = subprocess.run([sys.executable, __file__, "--stream", str(path), str(Path(tmp) / f"{n}.parquet")],
                                    capture_output=True, text=True, check=True)
            seconds, peak = result.stdout.split()
            print(f"{n:10d} {path.stat().st_size / 2**20:9.0f} {float(seconds):8.1f} {float(peak):13.0f}")
            path.unlink()


if __name__ == "__main__":
    main()
