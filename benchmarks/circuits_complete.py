"""Old (greedy) and new (complete) circuits of the default model, side by side on the same held-out cells.

For each of the five largest ``bulk_labels`` types, the same seeded sample of
held-out cells is traced twice, each side in a fresh process (for its peak
memory):

- ``greedy``: the older trace (best-first search, 60 expansions, the first
  differing answer token against its rivals);
- ``complete``: circuit-tracer's complete attribution graph (node budget
  ``--max-feature-nodes``, pruned at node 0.8 / edge 0.98), target the call's
  log-odds over all candidates.

Printed per type and side: seconds per traced cell (and per forward pass of the
same prompt, for scale), circuit-tracer's replacement and completeness scores
(unpruned / pruned), the input groups' shares of the target (genes, prompt
template, fed answer prefix, errors), and the share of the label's log-odds over all
candidates that the circuit's features alone carry in the replacement model
(attention and norms free, errors held), with the traced sequence's other
features zero-ablated and mean-ablated (set to their mean activation over the
traced cells' tokens): the measure ``validate_circuit`` reports and
``cell_type_circuit`` grows circuits by (``min_feature_share``, 0.8 by default;
the greedy side is not grown). Last,
how both targets agree with ``predict_cell_types``' probabilities on the traced
cells.

    python benchmarks/circuits_complete.py --transcoders /tmp/default_tc --n-cells 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _forward_seconds(model, ids, repeats: int = 3) -> float:
    import torch

    with torch.no_grad():
        model.model(torch.as_tensor(ids)[None], use_cache=False)
        start = time.perf_counter()
        for _ in range(repeats):
            model.model(torch.as_tensor(ids)[None], use_cache=False)
    return (time.perf_counter() - start) / repeats


def _circuit_fractions(model, transcoders, result, cell_type, candidates, documents) -> list:
    """Per cell: (zero-ablation, mean-ablation) share of the label's log-odds the circuit's features carry alone,
    and their number: ``validate_circuit``'s measure (``sct.tl.validate_circuit``' ``feature_share``), the one
    ``cell_type_circuit`` grows circuits by, whatever the traced target."""
    from sctranscoder.models._scoring import answer_tokens
    from sctranscoder.tl._validate import circuit_features, feature_share

    answers = answer_tokens(model.tokenizer, candidates)
    index = candidates.index(cell_type)
    prompts = [[int(t) for t in ids] for ids in documents.input_ids]
    features = circuit_features(result)
    zero = feature_share(model, transcoders, prompts, features, index, answers, ablation="zero")
    mean = feature_share(model, transcoders, prompts, features, index, answers, ablation="mean")
    return [(z, m, len(f)) for z, m, f in zip(zero, mean, features)]


def run_side(args) -> dict:
    """One side (greedy or complete) over every type, in this process."""
    import torch
    from _memory import peak_rss_mib

    import sctranscoder as sct

    torch.set_num_threads(args.threads)
    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    label_key = model.metadata["label_key"]
    transcoders = sct.tc.load_layers(args.transcoders)
    held_out = adata[adata.obs_names.isin(model.metadata["held_out_cells"])].copy()
    types = list(adata.obs[label_key].value_counts().index[: args.n_types])
    encoded = sct.tl.encode_cells(held_out, model, progress=False)
    side = {}
    for cell_type in types:
        options = dict(method="greedy", target="contrast", max_nodes=60) if args.side == "greedy" else \
            dict(method="complete", target="logodds", max_feature_nodes=args.max_feature_nodes)
        start = time.perf_counter()
        result = sct.tl.cell_type_circuit(held_out, model, transcoders, cell_type, n_cells=args.n_cells,
                                          encoded=encoded, progress=False, **options)
        total = time.perf_counter() - start
        positions = np.flatnonzero(held_out.obs_names.isin(result.cells))
        documents = encoded.subset(positions)
        fractions = _circuit_fractions(model, transcoders, result, cell_type, model.labels, documents)
        scores = result.scores
        side[cell_type] = {
            "cells": result.cells, "seconds_per_cell": total / len(result.cells),
            "forward_seconds": _forward_seconds(model, documents.input_ids[0]),
            "value": scores.value.tolist(), "probability": scores.probability.tolist(),
            "logodds": scores.logodds.tolist(),
            "fraction_zero": [f[0] for f in fractions], "fraction_mean": [f[1] for f in fractions],
            "n_circuit_features": [f[2] for f in fractions],
            "top_genes": result.genes.gene.head(10).tolist(), "message": result.message,
            **{k: scores[k].tolist() for k in ("replacement", "completeness", "replacement_pruned",
                                               "completeness_pruned", "share_gene", "share_template",
                                               "share_answer", "share_error", "n_active", "n_feature_nodes")
               if k in scores},
        }
    side["peak_rss_mib"] = peak_rss_mib()
    return side


def _spearman(a, b) -> float:
    from scipy import stats

    return float(stats.spearmanr(a, b)[0])


def _predicted_agreement(args, cells_by_type) -> dict:
    """``predict_cell_types``' probability of the traced label for every traced cell, scored on the same
    held-out AnnData the traces used (c2s breaks expression ties with one seeded shuffle per cell in order,
    so a cell's sentence depends on the cells scored with it)."""
    import sctranscoder as sct

    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    held_out = adata[adata.obs_names.isin(model.metadata["held_out_cells"])].copy()
    sct.tl.predict_cell_types(held_out, model, progress=False)
    table = sct.get.prediction_probabilities(held_out)
    return {cell_type: table.loc[list(cells), cell_type].tolist() for cell_type, cells in cells_by_type.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transcoders", type=Path, required=True, help="folder of layer{L}/ transcoders")
    parser.add_argument("--n-types", type=int, default=5)
    parser.add_argument("--n-cells", type=int, default=3)
    parser.add_argument("--max-feature-nodes", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--side", choices=["greedy", "complete"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    args = parser.parse_args()
    if args.side is not None:
        print(json.dumps(run_side(args)))
        return
    sides = {}
    for side in ("greedy", "complete"):
        command = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        sides[side] = json.loads(done.stdout.strip().splitlines()[-1])
        if args.out is not None:  # each side as soon as it is done
            args.out.with_name(f"{args.out.stem}_{side}.json").write_text(json.dumps(sides[side]))
    old, new = sides["greedy"], sides["complete"]
    predicted = _predicted_agreement(args, {t: v["cells"] for t, v in new.items() if t != "peak_rss_mib"})
    print(f"complete graphs: node budget {args.max_feature_nodes}, pruned at node 0.8 / edge 0.98; greedy: 60 "
          f"expansions; {args.n_cells} held-out cells per type, {args.threads} threads")
    header = ("type", "s/cell old", "s/cell new", "new/old", "new/forward", "repl", "compl", "repl pr", "compl pr",
              "genes", "template", "answer", "errors", "kept old 0/mean", "kept new 0/mean", "features")
    print(" | ".join(header))
    all_new, all_old, values_new, values_old, probabilities = [], [], [], [], []
    for cell_type in predicted:
        o, n = old[cell_type], new[cell_type]
        print(" | ".join([
            cell_type, f"{o['seconds_per_cell']:.1f}", f"{n['seconds_per_cell']:.1f}",
            f"{n['seconds_per_cell'] / o['seconds_per_cell']:.1f}x",
            f"{n['seconds_per_cell'] / n['forward_seconds']:.0f}x",
            *(f"{np.mean(n[k]):.3f}" for k in ("replacement", "completeness", "replacement_pruned",
                                                "completeness_pruned")),
            *(f"{np.mean(n[k]):.0%}" for k in ("share_gene", "share_template", "share_answer", "share_error")),
            f"{np.median(o['fraction_zero']):.0%}/{np.median(o['fraction_mean']):.0%}",
            f"{np.median(n['fraction_zero']):.0%}/{np.median(n['fraction_mean']):.0%}",
            f"{np.mean(n['n_circuit_features']):.0f} of {np.mean(n['n_active']):.0f}"]))
        print(f"    top genes (new): {', '.join(n['top_genes'])}" + (f"  [{n['message']}]" if n["message"] else ""))
        all_new += n["fraction_zero"]
        all_old += o["fraction_zero"]
        values_new += n["value"]
        values_old += o["value"]
        probabilities += predicted[cell_type]
        np.testing.assert_allclose(n["probability"], predicted[cell_type], rtol=1e-3, atol=1e-5)
    p = np.clip(np.array(probabilities), 1e-12, 1 - 1e-12)
    logodds = np.log(p / (1 - p))
    print(f"target vs predict_cell_types (all traced cells): new log-odds target equals log p/(1-p) to "
          f"{np.max(np.abs(np.array(values_new) - logodds)):.1e}; old token contrast: Spearman "
          f"{_spearman(values_old, logodds):.2f} with it")
    print(f"circuit features alone carry (zero-ablation, median over all cells): old {np.median(all_old):.0%}, "
          f"new {np.median(all_new):.0%}")
    print(f"peak memory: greedy {old['peak_rss_mib']:.0f} MiB, complete {new['peak_rss_mib']:.0f} MiB")
    if args.out is not None:
        args.out.write_text(json.dumps({"greedy": old, "complete": new, "predicted": predicted}))


if __name__ == "__main__":
    main()
