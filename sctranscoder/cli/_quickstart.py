"""``sctranscoder quickstart``: the whole pipeline on the bundled PBMC data and the bundled default model."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .._atomic import atomic_path
from .._runconfig import RUN_FILE, write_run_config
from .._workers import Workers, worker_count
from ..pp._sentences import RANKS_KEY
from ..report._from_adata import flag_reason, signable_headlines
from ..report._steering import steering_sentence
from ._commands import (
    UsageError,
    check_circuit_options,
    circuit_line,
    genes_line,
    run_circuits,
    transcoder_settings,
    write_circuits,
)
from ._controls_io import write_controls
from ._readable_io import steering_matrix_line

_SECTIONS = {
    "sentences": ("n_genes", "tie_break", "seed", "chunk_size"),
    "train": ("layers", "activation", "k", "d_hidden", "skip", "steps", "batch_size", "lr", "transcoder_seed",
              "subsample", "train_cells", "eval_cells"),
    "circuits": ("cell_types", "n_largest", "n_cells", "method", "target", "max_feature_nodes", "max_nodes",
                 "node_threshold", "edge_threshold", "min_feature_share", "validate_cells", "knockout_cells", "knockout_genes",
                 "knockout_draws", "knockout_fdr", "steer_cells", "steer_into", "n_top_genes"),
}


def _run_sections(args) -> dict:
    sections = {name: {key: getattr(args, key) for key in keys} for name, keys in _SECTIONS.items()}
    # the quickstart section repeats everything, so `quickstart --config run.yaml` reruns it exactly
    sections["quickstart"] = {k: v for section in sections.values() for k, v in section.items()}
    return sections


def _sample(adata, mask, n: int, label_key: str, seed: int):
    """At most ``n`` of the cells in ``mask``, drawn in proportion to their labels (seeded)."""
    import numpy as np

    chosen = np.flatnonzero(mask)
    if n is None or n >= chosen.size:
        return chosen
    rng = np.random.default_rng(seed)
    labels = adata.obs[label_key].astype(str).to_numpy()[chosen]
    order = rng.permutation(chosen.size)
    # round-robin over labels in a random order, so small cell types are not left out
    rank = np.empty(chosen.size, int)
    for label in np.unique(labels):
        members = order[labels[order] == label]
        rank[members] = np.arange(members.size)
    keep = np.lexsort((order.argsort(), rank))[:n]
    return np.sort(chosen[keep])


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def cmd_quickstart(args) -> None:
    import sctranscoder as sct

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    check_circuit_options(args)
    out.mkdir(parents=True, exist_ok=True)
    write_run_config(out / RUN_FILE, _run_sections(args))
    clock = time.perf_counter()
    timings = {}

    # 1. cell sentences, prompts and the inverse transform
    adata = sct.datasets.pbmc68k_reduced()
    sct.pp.cell_sentences(adata, n_genes=args.n_genes, tie_break=args.tie_break, seed=args.seed,
                          chunk_size=args.chunk_size)
    sentences_path = sct.pp.write_sentences(
        adata, out / "sentences.parquet", obs_columns=["bulk_labels", "louvain"], n_genes=args.n_genes,
        tie_break=args.tie_break, seed=args.seed, chunk_size=args.chunk_size, progress=False,
    )
    fit = sct.pp.fit_rank_expression(adata, inplace=False)
    # the model reads sentences made with its own prompt settings: the spine builds them on a fresh copy
    model = sct.models.default()
    label_key = model.metadata["label_key"]
    adata = sct.datasets.pbmc68k_reduced()
    settings = sct.tl.prompt_settings(adata, model, label_key=label_key)
    prompts = sct.pp.prompts(adata, label_key=label_key, **settings.prompt_options())
    with atomic_path(out / "prompts.parquet") as tmp:
        prompts.to_parquet(tmp)
    _write_text(out / "rank_expression_fit.json", json.dumps(fit, indent=2))
    timings["sentences"] = time.perf_counter() - clock

    # 2. transcoders on every layer of the default model, from one harvest of a sample of the training cells' tokens
    start = time.perf_counter()
    held_out = sct.tl.held_out_mask(adata, model)
    train_cells = _sample(adata, ~held_out, args.train_cells, label_key, args.transcoder_seed)
    store = sct.tl.harvest(adata[train_cells].copy(), model, args.layers, None, label_key=label_key,
                           subsample=args.subsample, seed=args.transcoder_seed)
    transcoders = sct.tl.train_transcoders(
        adata, model, args.layers, out / "transcoders", store=store, held_out=held_out, label_key=label_key,
        **transcoder_settings(args))
    timings["transcoders"] = time.perf_counter() - start

    # 3-5. faithfulness on the model's held-out cells, the circuits behind the largest cell types and what the
    # features mean beside their controls: independent steps, side by side where that is faster (a small model on CPU)
    start = time.perf_counter()
    test_cells = adata[_sample(adata, held_out, args.eval_cells, label_key, args.transcoder_seed)].copy()
    if settings.tie_key == "row":  # a model from before name-keyed ties: its sentences depend on the row
        test_cells.obsm.pop(RANKS_KEY, None)  # so they are made on the subset itself, where knockouts re-rank
    with Workers(worker_count(model, args.workers)) as workers:
        quality = workers.submit(sct.tl.evaluate_transcoders, test_cells, model, transcoders,
                                 cells=test_cells.obs_names, label_key=label_key)
        meanings = workers.submit(feature_meanings, test_cells, model, transcoders, args.transcoder_seed)
        # circuits traced on held-out cells and knocked out in up to --knockout-cells held-out cells of each type
        # (more than the sample above holds)
        circuits = run_circuits(test_cells, model, transcoders, args, label_key, ranked_by=adata, workers=workers,
                                knockout_pool=adata[held_out].copy() if settings.tie_key != "row" else None)
        quality, (features, feature_enrichment, controls) = quality.result(), meanings.result()
    for key, result in features.items():  # every layer's, so the report can show a card for every circuit feature
        test_cells.obsm[key], test_cells.uns[key] = result["cells"], result["uns"]
    with atomic_path(out / "transcoder_quality.csv") as tmp:
        quality.to_csv(tmp)
    write_circuits(circuits, out / "circuits")
    with atomic_path(out / "feature_enrichment.csv") as tmp:
        feature_enrichment.to_csv(tmp, index=False)
    write_controls(controls, out)  # `sctranscoder report` reads it back
    timings["evaluate, circuits and feature controls"] = time.perf_counter() - start

    # the circuits' genes against the bundled libraries, each circuit beside random lists matched in expression in
    # its cell type and the type's own DE genes
    start = time.perf_counter()
    circuit_enrichment = sct.tl.enrich_circuit(
        {name: result.input_genes(args.n_top_genes)[name] for name, result in circuits.items()},
        adata=adata, model=model, max_fdr=0.05, label_key=label_key, seed=args.transcoder_seed)
    with atomic_path(out / "circuit_enrichment.csv") as tmp:
        circuit_enrichment.to_csv(tmp, index=False)
    timings["circuit enrichment"] = time.perf_counter() - start

    # 6. one self-contained HTML report
    start = time.perf_counter()
    report = _report(sct, test_cells, label_key, quality, feature_enrichment, controls, circuit_enrichment, circuits,
                     args, out, model, transcoders, adata.n_obs, int(held_out.sum()))
    timings["report"] = time.perf_counter() - start

    total = time.perf_counter() - clock
    _write_text(out / "timings.json", json.dumps({**timings, "total": total}, indent=2))
    _summary(out, adata, sentences_path, fit, quality, circuits, circuit_enrichment, report, total,
             sct.tl.gene_families(model=model, genes=adata.var_names))
    print("  features against random directions: " + sct.tl.control_headline(controls, max(transcoders)))


def feature_meanings(cells, model, transcoders, seed: int) -> tuple[dict, object, object]:
    """Every layer's feature activity (``{key: feature_activity's result}``: the last layer's under ``features``,
    the others under ``features_layer{n}``), the last layer's features' enriched sets (tested against the
    hypergeometric FDR and against random lists that keep gene-name families: spelling) and, beside them, every
    layer's enriched share against random directions that fire as often (:func:`sctranscoder.tl.feature_controls`,
    reading the same activity; the untrained-model control trains a transcoder per layer, too slow for a first
    run). The controls use the same spelling null (200 lists), so their trained rows are this table's."""
    import sctranscoder as sct

    keys = _feature_keys(transcoders)
    features = {key: sct.tl.feature_activity(cells, model, transcoders, layer, progress=False, key_added=key)
                for layer, key in keys.items()}
    enrichment = sct.tl.enrich_beyond_spelling(cells, model=model)
    controls = sct.tl.feature_controls(cells, model, transcoders, untrained=False, seed=seed, n_null=200,
                                       progress=False, activity_keys=keys)
    return features, enrichment, controls


def _feature_keys(transcoders) -> dict:
    """``{layer: key}`` of each layer's feature activity: the last layer's under ``features`` (the report's
    default), the others under ``features_layer{n}``."""
    last = max(transcoders)
    return {layer: "features" if layer == last else f"features_layer{layer}" for layer in sorted(transcoders)}


def _report(sct, cells, label_key, quality, feature_enrichment, controls, circuit_enrichment, circuits, args, out,
            model, transcoders, n_cells: int, n_held: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {name: sct.pl.circuit(result.graph, show=False).figure for name, result in circuits.items()}
    content = sct.report.from_adata(
        cells, label_key, quality=quality, enrichment=feature_enrichment, controls=controls,
        model="bundled default C2S model",
        title="sctranscoder quickstart: the default C2S model on pbmc68k", circuit_figures=figures,
        input_genes={name: result.genes for name, result in circuits.items()}, circuits=circuits,
        validations={name: result.validation for name, result in circuits.items() if result.validation is not None},
        circuit_enrichment=circuit_enrichment, c2s_model=model, transcoders=transcoders,
        feature_keys={layer: key for layer, key in _feature_keys(transcoders).items() if layer != max(transcoders)},
        marker_sets=sct.datasets.PBMC68K_MARKER_SETS,
        parameters={f"{section}.{key}": value for section, values in _run_sections(args).items()
                    if section != "quickstart" for key, value in values.items()})
    content.summary = (
        f"Everything below is measured on {cells.n_obs} of the {n_cells:,} PBMCs: held-out cells the model never "
        f"trained on ({n_held} are held out, and {cells.n_obs} of them, drawn across the cell types, keep a first "
        "run to minutes; --eval-cells takes more). " + content.summary)
    _add_circuit_views(sct, content, circuits, feature_enrichment, max(int(k) for k in quality.index if k != "all"))
    for figure in figures.values():
        plt.close(figure)
    return sct.report.write_html(out / "report.html", content)


def _add_circuit_views(sct, content, circuits, feature_enrichment, layer: int) -> None:
    """Each circuit, interactive, with its supernodes and the enriched sets the report has for its features."""
    sets: dict = {}
    if feature_enrichment is not None and len(feature_enrichment):
        for feature, rows in feature_enrichment.sort_values("P-value").groupby("List", observed=True):
            sets[(layer, int(feature))] = [f"{t} ({g}, FDR {q:.1g})" for t, g, q in
                                           zip(rows.Term, rows.Gene_set, rows["Adjusted P-value"])][:5]
    for name, result in circuits.items():
        # one grouping everywhere: the readable circuit's supernodes where they were built
        supernodes = result.supernodes if result.supernodes is not None else \
            sct.tl.circuit_supernodes(result, "immune_markers")
        section = content.section(name)
        section.circuit_view = sct.report.circuit_view(
            result, supernodes=supernodes, feature_info={k: {"sets": v} for k, v in sets.items()})
        if result.message:
            section.text = f"{section.text} {result.message}".strip()


def _summary(out, adata, sentences_path, fit, quality, circuits, circuit_enrichment, report, total,
             families) -> None:
    from ..tl import headline_sets

    layers = quality.drop(index="all")
    every = quality.loc["all"]
    print(f"\nsctranscoder quickstart: {adata.n_obs} PBMCs, done in {total / 60:.1f} min; everything is in {out}/")
    print(f"  cell sentences: {sentences_path}; inverse transform r^2 {fit['r_squared']:.3f} "
          f"(Pearson {fit['pearson_r']:.3f}, Spearman {fit['spearman_r']:.3f})")
    print("  transcoders (held-out cells): " + "; ".join(
        f"layer {layer} FVU {row.fvu:.3f}, L0 {row.l0:.0f}" for layer, row in layers.iterrows()))
    if "accuracy_kept" in quality:
        print(f"  all MLPs replaced: cell-type accuracy {every.accuracy:.3f} vs {every.accuracy_clean:.3f} "
              f"({every.accuracy_kept:.0%} kept), loss recovered {every.recovered_mean:.3f} (against mean ablation)")
    print("  circuits: top genes (measured: knockouts that beat random genes knocked out at the same rank, in the "
          "cells named), and the best gene set among them (FDR)")
    for cell_type, result in circuits.items():
        print(f"    {cell_type:<30} {genes_line(result, 6)}")
        print(f"    {'':<30} {circuit_line(result)}")
        if result.steering is not None:
            print(f"    {'':<30} {steering_sentence(result.steering)}")
        rows = circuit_enrichment[circuit_enrichment.List.astype(str) == cell_type] if len(circuit_enrichment) else []
        heads = headline_sets(rows, families=families) if len(rows) else []
        if len(heads):  # as the report: redundant sets collapsed, curated pathways first, flagged sets never named
            signable = signable_headlines(heads)
            best = signable.iloc[0] if len(signable) else heads.iloc[0]
            said = f"-> {best.Gene_set}: {best.Headline} (FDR {best['Adjusted P-value']:.1e})"
            print(f"    {'':<30} {said}" + ("" if len(signable) else f", not a headline: {flag_reason(best)}"))
    if line := steering_matrix_line(circuits, out / "circuits"):
        print("  " + line)
    print(f"  report: {report}")
