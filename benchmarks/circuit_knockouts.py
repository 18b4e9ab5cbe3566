"""Circuit attributions against in-silico gene knockouts on the default C2S model.

For each of the five largest ``bulk_labels`` types, on a sample of held-out
cells of that type: trace the circuit (today's greedy trace, its token-contrast
target), then knock every gene of those cells' sentences out (expression 0,
sentence re-ranked, every candidate re-scored by the real model) and compare:

- Spearman between the circuit's gene attribution and the knockout effect (the
  drop in log P(cell type) over all candidates, mean over the traced cells),
  over the circuit's 10 genes with the largest absolute attribution;
- top-5 sign agreement: of the 5 genes with the largest absolute attribution,
  the share whose knockout moves P(cell type) the way the sign says;
- the share of the label's log-odds that the circuit's features carry alone
  (replacement model, every other feature zero-ablated, errors held), for the
  circuit grown until it carries ``--min-feature-share`` of it and for the
  standard circuit (circuit-tracer's pruning, node 0.8 / edge 0.98), with each
  one's size in features (of those active, and over the node budget);
- the same two figures for a second attribution on the real model with the
  knockouts' own target: the attention-mask gradient of log P(cell type)
  (``sct.circuits.attention_mask_gradients``, one forward and backward pass per cell);
- the genes ranked by measured knockout effect, with the circuit features each feeds;
- in-silico steering: the circuit's features switched off (every position) in
  held-out cells of the type, and the change of P(type) and of the calls;
- the cost: prompts scored, scoring passes and seconds, against one scoring pass
  over the same cells (``predict_cell_types``' work).

    python benchmarks/circuit_knockouts.py --transcoders /tmp/default_tc --n-cells 6

``--target logprob`` traces log P(cell type) instead of its log-odds (the
knockouts' own target); ``--min-feature-share 0`` keeps the standard circuits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import sctranscoder as sct
from sctranscoder._atomic import atomic_path


def one_pass_seconds(held_out, model, cells) -> float:
    """Seconds of one scoring pass over the traced cells (what predict_cell_types does for them)."""
    from sctranscoder.models._scoring import score_candidates

    encoded = sct.tl.encode_cells(held_out[cells], model, progress=False)
    start = time.perf_counter()
    score_candidates(model, encoded.prompt_ids(), model.labels, batch_size=64, progress=False)
    return time.perf_counter() - start


def _percent(values) -> str:
    return ", ".join(f"{v:.0%}" for v in values)


def _circuit_sizes(result) -> dict | None:
    """Per traced cell: the grown circuit's share and size, and the standard circuit's (complete graphs)."""
    scores = result.scores
    if scores is None or "feature_share" not in scores:
        return None
    return {"share": scores.feature_share.tolist(), "reached": int(scores.feature_share_reached.sum()),
            "features": scores.n_circuit_features.astype(int).tolist(),
            "over_budget": scores.n_features_over_budget.astype(int).tolist(),
            "active": scores.n_active.astype(int).tolist(), "share_pruned": scores.feature_share_pruned.tolist(),
            "features_pruned": scores.n_features_pruned.astype(int).tolist(),
            "share_all": scores.feature_share_all.tolist(), "checks": scores.feature_share_checks.astype(int).tolist(),
            "grow_seconds": [round(float(v), 1) for v in scores.grow_seconds],
            "trace_seconds": [round(float(v), 1) for v in scores.seconds],
            "replacement_pruned": scores.replacement_pruned.tolist(),
            "completeness_pruned": scores.completeness_pruned.tolist(),
            "replacement_grown": scores.replacement_grown.tolist(),
            "completeness_grown": scores.completeness_grown.tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transcoders", type=Path, required=True, help="folder of layer{L}/ transcoders")
    parser.add_argument("--n-types", type=int, default=5)
    parser.add_argument("--n-cells", type=int, default=6)
    parser.add_argument("--max-nodes", type=int, default=60)
    parser.add_argument("--top-genes", type=int, default=10)
    parser.add_argument("--ablation", choices=("zero", "mean"), default="zero")
    parser.add_argument("--target", choices=("logodds", "logprob"), default="logodds")
    parser.add_argument("--min-feature-share", type=float, default=0.8, help="0: keep the standard circuits")
    parser.add_argument("--types", nargs="*", default=None, help="these cell types instead of the largest")
    parser.add_argument("--steer-cells", type=int, default=10,
                        help="switch the circuit's features off in this many held-out cells of the type")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    args = parser.parse_args()

    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    label_key = model.metadata["label_key"]
    transcoders = sct.tc.load_layers(args.transcoders)
    held_out = adata[adata.obs_names.isin(model.metadata["held_out_cells"])].copy()
    types = args.types or adata.obs[label_key].value_counts().index[: args.n_types]
    summary = {}
    for cell_type in types:
        start = time.perf_counter()
        result = sct.tl.cell_type_circuit(held_out, model, transcoders, cell_type, n_cells=args.n_cells,
                                          max_nodes=args.max_nodes, target=args.target, progress=False,
                                          min_feature_share=args.min_feature_share or None)
        trace_seconds = time.perf_counter() - start
        start = time.perf_counter()
        validation = sct.tl.validate_circuit(held_out, model, transcoders, result, top_genes=args.top_genes,
                                             ablation=args.ablation,
                                             knockouts=sct.tl.Knockouts(rank="sentence"))
        knockout_seconds = time.perf_counter() - start
        forward = one_pass_seconds(held_out, model, result.cells)
        steer = held_out.obs_names[held_out.obs[label_key].astype(str) == cell_type][: args.steer_cells]
        start = time.perf_counter()
        if len(steer):
            shift = sct.tl.perturb_features(held_out, model, transcoders, result, scale=0.0, cells=list(steer),
                                            progress=False)
            before = shift.attrs["before"]
            after = before + shift
        steer_seconds = time.perf_counter() - start
        measured = result.genes_by_knockout
        every = measured[measured.n_cells > 0]
        spearman_all = float(np.corrcoef(every.attribution.rank(), every.knockout_effect.rank())[0, 1])
        gradient = validation["gradient"]
        s = summary[cell_type] = {
            "target": result.target, "cells": len(result.cells),
            "spearman": validation["spearman"], "sign_agreement_top5": validation["sign_agreement_top5"],
            "gradient_spearman": gradient["spearman"], "gradient_sign_agreement_top5": gradient["sign_agreement_top5"],
            "gradient_genes": gradient["genes"].to_dict("list"),
            "spearman_all_genes": spearman_all, "feature_share_median": validation["feature_share"],
            "ablation": validation["ablation"],
            "attributed": validation["genes"].to_dict("list"),
            "measured_top": measured.head(10)[["gene", "knockout_effect", "attribution", "features"]].to_dict("list"),
            "knockout_prompts": validation["n_prompts"], "knockout_passes": validation["n_passes"],
            "steering": {"cells": len(steer), "features": len(sct.tl._perturb.feature_list(result)),
                         "p_before": float(before[cell_type].mean()), "p_after": float(after[cell_type].mean()),
                         "calls_changed": int((before.idxmax(axis=1) != after.idxmax(axis=1)).sum()),
                         "top_gain": str(shift.mean().drop(cell_type).idxmax()), "seconds": steer_seconds}
            if len(steer) else None,
            "circuit": _circuit_sizes(result),
            "trace_seconds": trace_seconds, "validate_seconds": knockout_seconds, "one_pass_seconds": forward,
            **{f"{k}_seconds": v for k, v in validation["seconds"].items()},
        }
        print(f"\n{cell_type}: {s['cells']} cells; target {result.target['prefix']!r} + {result.target['token']!r} "
              f"vs {result.target['rivals']}")
        print(f"  attribution vs knockout (top {args.top_genes} attributed genes): Spearman {s['spearman']:+.2f}, "
              f"top-5 sign agreement {s['sign_agreement_top5']:.0%}; over all {len(every)} sentence genes: "
              f"Spearman {spearman_all:+.2f}")
        print(f"  attention-mask gradient of log P (top {args.top_genes} genes): Spearman {s['gradient_spearman']:+.2f}, "
              f"top-5 sign agreement {s['gradient_sign_agreement_top5']:.0%}: " + ", ".join(
                  f"{g} ({a:+.2g} / KO {k:+.2g})" for g, a, k in zip(gradient["genes"].gene, gradient["genes"].attribution,
                                                                  gradient["genes"].knockout_effect)))
        print("  attributed: " + ", ".join(f"{g} ({a:+.3f} / KO {k:+.2g})" for g, a, k in zip(
            validation["genes"].gene, validation["genes"].attribution, validation["genes"].knockout_effect)))
        print("  measured (drop in log P): " + ", ".join(
            f"{g} ({k:+.2g})" for g, k in zip(measured.gene[:10], measured.knockout_effect[:10])))
        print(f"  circuit features alone carry {s['feature_share_median']:.1%} of the label's log-odds "
              f"(median over cells, {args.ablation}-ablation of all other features)")
        c = s["circuit"]
        if c:
            print(f"  grown circuit: share per cell {_percent(c['share'])} with {c['features']} features "
                  f"({c['over_budget']} over the node budget) of {c['active']} active; reached in "
                  f"{c['reached']} of {len(c['share'])} cells; standard circuit (node 0.8): {_percent(c['share_pruned'])} "
                  f"with {c['features_pruned']} features; grow {c['grow_seconds']} s, {c['checks']} passes per cell")
        st = s["steering"]
        if st:
            print(f"  steering: the circuit's {st['features']} features off (everywhere) in {st['cells']} cells: mean "
                  f"P({cell_type}) {st['p_before']:.3f} -> {st['p_after']:.3f}, {st['calls_changed']} calls changed, "
                  f"largest gain {st['top_gain']!r} ({steer_seconds:.0f} s)")
        print(f"  cost: trace {trace_seconds:.0f} s; knockouts {s['knockout_prompts']} prompts in "
              f"{s['knockout_passes']} passes, {s['knockouts_seconds']:.0f} s = {s['knockouts_seconds'] / forward:.0f}x "
              f"one scoring pass over these cells ({forward:.2f} s); attention-mask gradients "
              f"{s['gradients_seconds']:.1f} s = {s['gradients_seconds'] / forward:.1f}x; feature share "
              f"{s['feature_share_seconds']:.0f} s", flush=True)
        if args.out is not None:  # after every type: a partial run still leaves its numbers
            with atomic_path(args.out) as tmp:
                Path(tmp).write_text(json.dumps(summary, default=str, indent=1))
    keys = ("spearman", "sign_agreement_top5", "gradient_spearman", "gradient_sign_agreement_top5",
            "spearman_all_genes", "feature_share_median")
    means = {k: float(np.nanmean([s[k] for s in summary.values()])) for k in keys}
    print("\nmean over types: " + ", ".join(f"{k} {v:+.3f}" for k, v in means.items()))
    summary["mean"] = means
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(summary, default=str, indent=1))
    print(json.dumps(means))


if __name__ == "__main__":
    main()
