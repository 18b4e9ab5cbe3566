"""Knockout scoring: each cell's knockouts with their shared start run once (score_variants) vs every prompt whole.

    python benchmarks/bench_knockouts.py --cells 8

Both sides score the same prompts on the bundled default model: for each of --cells held-out cells, its own
prompt and one knockout per gene (expression set to 0, the sentence re-ranked, as ``knockout_genes(mode="zero")``
builds them), for two panels: every gene of the sentence, and the sentence's first 40 genes (the genes circuits
rank highest sit there, where a knockout leaves the least of the prompt unchanged). The reference scores every
prompt whole in batches of 64 (``score_candidates``, what knockouts ran before). Each side runs in a fresh
process, best of --repeats; peak memory is that process's peak resident set. Prints the speed-up, the largest
score difference and peak memory.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _memory import in_fresh_process, peak_rss_mib  # benchmarks/ is on the path when a script runs

PANEL_TOP = 40


def knockout_prompts(n_cells: int, panel: str):
    """The model, and per cell its prompt's ids and the ids of its knockouts."""
    import sctranscoder as sct
    from sctranscoder.pp import knockout_sentences, prompt_text
    from sctranscoder.prompt import resolve_cells

    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    rows = np.flatnonzero(sct.tl.held_out_mask(adata, model))[:n_cells]
    encoded = resolve_cells(adata, model, None, rows=rows, progress=False)
    names = np.asarray(encoded.genes, dtype=object)
    cells = []
    for i, row in enumerate(rows):
        sentence = np.asarray(encoded.span_ids[i], np.int64)
        genes = sentence if panel == "every" else sentence[:PANEL_TOP]
        variants = knockout_sentences(adata, encoded.settings, rows[i:i + 1], [sentence], genes, "zero")[0]
        texts = [prompt_text(encoded.settings, names[v].tolist()) for v in variants if v is not None]
        ids = model.tokenizer(texts, add_special_tokens=encoded.settings.add_special_tokens)["input_ids"]
        cells.append(([int(t) for t in encoded.prompt_ids()[i]], ids))
    return model, cells


def side(name: str, n_cells: int, panel: str, repeats: int, queue) -> None:
    from sctranscoder.models import score_candidates, score_variants

    model, cells = knockout_prompts(n_cells, panel)
    candidates = list(model.labels)
    best, scores = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        if name == "ours":
            scores = [score_variants(model, base, ids, candidates)[0] for base, ids in cells]
        else:
            scores = [np.concatenate([score_candidates(model, prompts[s:s + 64], candidates, batch_size=64,
                                                       progress=False) for s in range(0, len(prompts), 64)])
                      for prompts in ([base, *ids] for base, ids in cells)]
        best = min(best, time.perf_counter() - start)
    queue.put((best, np.concatenate(scores), sum(len(ids) for _, ids in cells), peak_rss_mib()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{'panel':<22} {'knockouts':>9} {'ours s':>7} {'whole s':>8} {'speed-up':>8} {'max |diff|':>10} "
          f"{'peak MiB ours / whole':>22}")
    for panel in ("every", "top"):
        ours, scores, n, memory = in_fresh_process(side, "ours", args.cells, panel, args.repeats)
        whole, reference, _, memory_reference = in_fresh_process(side, "whole", args.cells, panel, args.repeats)
        label = "every sentence gene" if panel == "every" else f"first {PANEL_TOP} genes"
        print(f"{label:<22} {n:>9} {ours:>7.2f} {whole:>8.2f} {whole / ours:>7.2f}x "
              f"{np.abs(scores - reference).max():>10.1e} {memory:>10.0f} / {memory_reference:.0f}")


if __name__ == "__main__":
    main()
