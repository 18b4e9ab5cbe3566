"""What each ``sctranscoder`` subcommand does (on the user's files)."""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import atomic_path
from .._obs import require_obs_column
from .._workers import Workers, worker_count
from ..report._steering import steering_sentence
from ._circuit_run import circuits_side_by_side
from ._readable_io import steering_matrix_line, write_steering, write_steering_matrix, write_supernodes


class UsageError(Exception):
    """A bad path or argument, reported in one line."""


def _check_output(path: Path, suffix: str, overwrite: bool) -> None:
    if path.suffix != suffix:
        raise UsageError(f"output {path} must end in {suffix}")
    if path.exists() and not overwrite:
        raise UsageError(f"output {path} exists; pass --overwrite to replace it")


def cmd_sentences(args) -> None:
    import sctranscoder as sct

    if not args.input.is_file():
        raise UsageError(f"input {args.input} is not a file")
    if args.input.suffix != ".h5ad":
        raise UsageError(f"input {args.input} must be an .h5ad file")
    _check_output(args.output, ".parquet", args.overwrite)
    columns = [c for c in args.obs_columns.split(",") if c]
    sct.pp.write_sentences(
        args.input, args.output, obs_columns=columns, n_genes=args.n_genes, layer=args.layer,
        use_raw=args.use_raw, gene_symbols=args.gene_symbols, tie_break=args.tie_break,
        seed=args.seed, chunk_size=args.chunk_size,
    )
    print(f"wrote {args.output}")


def cmd_plan(args) -> None:
    import anndata as ad

    import sctranscoder as sct

    if not args.input.is_file() or args.input.suffix != ".h5ad":
        raise UsageError(f"input {args.input} is not an .h5ad file")
    if args.model is None:  # no model yet: plan training one with the recipe's defaults
        if args.label_key is None:
            raise UsageError("no model folder given: to plan training one, name the cell types' obs column with "
                             "--label-key (train-model --plan takes train-model's options)")
        adata = ad.read_h5ad(args.input)
        require_obs_column(adata, args.label_key)
        print(sct.models.plan_training(adata, args.label_key))
        return
    if not (args.model / "config.json").is_file():
        raise UsageError(f"model {args.model} is not a Hugging Face model folder (no config.json)")
    adata = ad.read_h5ad(args.input)
    model = sct.models.load(args.model)
    settings = {"d_hidden": args.d_hidden} if args.d_hidden is not None else {}
    print(sct.tl.plan(adata, model, args.layers, out_dir=args.out, label_key=args.label_key, dtype=args.dtype,
                      only_genes=args.only_genes, measure_cells=args.measure_cells, **settings))


def cmd_harvest(args) -> None:
    import anndata as ad

    import sctranscoder as sct

    if not args.input.is_file() or args.input.suffix != ".h5ad":
        raise UsageError(f"input {args.input} is not an .h5ad file")
    if not (args.model / "config.json").is_file():
        raise UsageError(f"model {args.model} is not a Hugging Face model folder (no config.json)")
    if args.store.exists() and not args.store.is_dir():
        raise UsageError(f"store {args.store} exists and is not a folder")
    adata = ad.read_h5ad(args.input)
    model = sct.models.load(args.model)
    store = sct.tl.harvest(adata, model, args.layers, args.store, n_genes=args.n_genes, label_key=args.label_key,
                           batch_size=args.batch_size, chunk_size=args.chunk_size, dtype=args.dtype,
                           only_genes=args.only_genes)
    print(store)


def transcoder_settings(args) -> dict:
    """:class:`sctranscoder.tc.TranscoderConfig` settings from the transcoder options; those left at None
    (learning rate, batch size, training length) are filled in by the config's rules when training starts."""
    settings = {"activation": args.activation, "k": args.k, "d_hidden": args.d_hidden, "skip": args.skip,
                "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.transcoder_seed}
    if args.steps is not None:  # the automatic length, at this many steps, with a tenth of them as warmup
        settings.update(auto_steps=args.steps, warmup_steps=min(100, max(1, args.steps // 10)))
    return settings


def cmd_train(args) -> None:
    import sctranscoder as sct
    from sctranscoder.harvest import ActivationStore

    if not (args.store / "store.json").is_file():
        raise UsageError(f"store {args.store} is not an activation store (no store.json); make one with "
                         "sctranscoder harvest")
    if not 0 <= args.eval_fraction < 1:
        raise UsageError(f"--eval-fraction {args.eval_fraction} must be in [0, 1)")
    store = ActivationStore(args.store)
    if not store.complete:
        raise UsageError(f"store {args.store} is incomplete; finish it with sctranscoder harvest (it resumes)")
    layers = args.layers if args.layers is not None else store.layers
    missing = sorted(set(layers) - set(store.layers))
    if missing:
        raise UsageError(f"layers {missing} are not in the store (it holds {store.layers})")
    n_eval = round(args.eval_fraction * store.n_shards)
    if n_eval >= store.n_shards:
        raise UsageError("the store has too few shards to hold some out; lower --eval-fraction")
    train_chunks, eval_chunks = store.chunks[: store.n_shards - n_eval], store.chunks[store.n_shards - n_eval :]
    for layer in layers:
        cfg = sct.tc.TranscoderConfig(d_in=store.d_in[layer], d_out=store.d_out[layer], **transcoder_settings(args))
        folder = args.out / f"layer{layer}"
        transcoder = sct.tc.train(store, layer, cfg, out_dir=folder, chunks=train_chunks,
                                  model_name=store.info.get("model"))
        if eval_chunks:
            metrics = sct.tc.evaluate(transcoder, store.batches(layer, 4096, shuffle=False, chunks=eval_chunks))
            sct.tc.save(transcoder, folder, model_name=store.info.get("model"), layer=layer,
                        metrics={**transcoder.metadata.get("metrics", {}), "held_out": metrics})
            print(f"layer {layer}: FVU {metrics['fvu']:.4f}, L0 {metrics['l0']:.1f}, "
                  f"dead {metrics['dead_fraction']:.1%} on {metrics['n_tokens']:,} held-out tokens -> {folder}")
        else:
            print(f"layer {layer}: trained -> {folder}")




def _require_h5ad(path: Path) -> None:
    if not path.is_file() or path.suffix != ".h5ad":
        raise UsageError(f"input {path} is not an .h5ad file")


def _require_model(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise UsageError(f"model {path} is not a Hugging Face model folder (no config.json)")


def _load_transcoders(path: Path) -> dict:
    import sctranscoder as sct

    try:
        return sct.tc.load_layers(path)
    except FileNotFoundError as error:
        raise UsageError(f"{error} Train them with sctranscoder train.") from None


def cmd_evaluate(args) -> None:
    import anndata as ad

    import sctranscoder as sct

    _require_h5ad(args.input)
    _require_model(args.model)
    if args.output.suffix != ".csv":
        raise UsageError(f"output {args.output} must end in .csv")
    transcoders = _load_transcoders(args.transcoders)
    adata = ad.read_h5ad(args.input)
    model = sct.models.load(args.model)
    cells = adata.obs_names if args.cells == "all" else None  # None: the held-out cells
    table = sct.tl.evaluate_transcoders(adata, model, transcoders, cells=cells, label_key=args.label_key)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp)
    print(table.round(4).to_string())
    print(f"wrote {args.output}")


def largest_types(adata, label_key: str, n: int, known) -> list[str]:
    counts = adata.obs[label_key].astype(str).value_counts()
    return [t for t in counts.index if t in set(known)][:n]


def write_validation(validation: dict, out: Path, safe: str) -> None:
    """A circuit's knockout check, in ``out``: ``{safe}_knockouts.csv`` (genes ranked by knockout effect, with
    their rank-matched null: ``passes`` marks the measured ones), ``{safe}_knockout_null.csv`` (the per-gene
    test), ``{safe}_attributed_vs_knockout.csv`` (the attributed top genes with their knockout effect) and
    ``{safe}.json`` (the figures); :func:`read_validation` reads them back."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)

    tables = {"genes_by_knockout": "knockouts", "genes": "attributed_vs_knockout", "knockout_null": "knockout_null"}
    for key, name in tables.items():
        if isinstance(validation.get(key), pd.DataFrame):
            with atomic_path(out / f"{safe}_{name}.csv") as tmp:
                validation[key].to_csv(tmp, index=False)
    figures = {k: v for k, v in validation.items() if not isinstance(v, (pd.DataFrame, dict))}
    gradient = validation.get("gradient") or {}
    figures["gradient"] = {k: v for k, v in gradient.items() if not isinstance(v, pd.DataFrame)}
    with atomic_path(out / f"{safe}.json") as tmp:
        Path(tmp).write_text(json.dumps(figures, default=float))


def read_validation(folder: Path, safe: str) -> dict | None:
    """What :func:`write_validation` wrote, as the dict the report shows (``None`` if nothing was)."""
    import pandas as pd

    path = folder / f"{safe}.json"
    if not path.is_file():
        return None
    validation = json.loads(path.read_text())
    for key, name in (("genes_by_knockout", "knockouts"), ("genes", "attributed_vs_knockout"),
                      ("knockout_null", "knockout_null")):
        table = folder / f"{safe}_{name}.csv"
        if table.is_file():
            frame = pd.read_csv(table, keep_default_na=False, na_values=[""])  # a gene called NA stays a gene
            if "features" in frame:  # a gene that feeds no circuit feature
                frame["features"] = frame["features"].fillna("")
            validation[key] = frame
    return validation


def write_circuits(results: dict, out: Path) -> None:
    """Each cell type's merged graph (GraphML and JSON) and gene table (CSV), named by a filesystem-safe label."""
    import sctranscoder as sct
    from sctranscoder.tl._supernodes import supernode_ids

    out.mkdir(parents=True, exist_ok=True)
    for cell_type, result in results.items():
        safe = "".join(c if c.isalnum() or c in "+-" else "_" for c in cell_type)
        sct.circuits.write_graphml(result.graph, out / f"{safe}.graphml")
        sct.circuits.write_json(result.graph, out / f"{safe}.json")
        with atomic_path(out / f"{safe}_genes.csv") as tmp:
            result.genes.to_csv(tmp, index=False)
        if result.scores is not None:
            with atomic_path(out / f"{safe}_scores.csv") as tmp:
                result.scores.to_csv(tmp, index=False)
        if result.validation is not None:  # a folder of its own: `report` and `enrich` read circuits/*.json, *_genes.csv
            write_validation(result.validation, out / "validation", safe)
        # each cell's pruned graph in circuit-tracer's JSON, for its frontend (a folder of its own, so
        # `report` and `enrich`, which read circuits/*.json, do not take them for merged graphs)
        write_supernodes(result, out, safe)
        write_steering(result, out, safe)
        groups = {}  # the readable circuit's supernodes where they were built, else features grouped by marker set
        if result.exports:
            groups = (result.supernodes if result.supernodes is not None else
                      sct.tl.circuit_supernodes(result, "immune_markers")).attrs["supernodes"]
        for i, data in enumerate(result.exports):
            data["qParams"]["supernodes"] = supernode_ids(groups, data)
            folder = out / "circuit_tracer"
            folder.mkdir(exist_ok=True)
            with atomic_path(folder / f"{safe}_{i}.json") as tmp:
                Path(tmp).write_text(json.dumps(data))
    write_steering_matrix(results, out)


def check_circuit_options(args) -> None:
    """The circuit options' values, checked before anything runs (a run can take minutes to reach them)."""
    validate_cells = getattr(args, "validate_cells", None)
    if validate_cells is not None and validate_cells < 0:
        raise UsageError(f"--validate-cells {validate_cells} must be 0 (no knockouts) or more")
    draws, fdr = getattr(args, "knockout_draws", 4), getattr(args, "knockout_fdr", 0.05)
    if draws < 0 or draws == 1:
        raise UsageError(f"--knockout-draws {draws} must be 0 (no null) or at least 2")
    if not 0 < fdr <= 1:
        raise UsageError(f"--knockout-fdr {fdr} must be in (0, 1]")
    if getattr(args, "knockout_cells", None) is not None and args.knockout_cells < 1:
        raise UsageError(f"--knockout-cells {args.knockout_cells} must be at least 1")
    steer_cells = getattr(args, "steer_cells", 8)
    if steer_cells < 0:
        raise UsageError(f"--steer-cells {steer_cells} must be 0 (no steering) or more")
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers} must be 1 (every step in this process) or more")


def run_circuits(adata, model, transcoders, args, label_key: str, progress: bool = True, ranked_by=None,
                 knockout_pool=None, workers: Workers | None = None) -> dict:
    """Circuits for ``--cell-types``, else for the ``--n-largest`` labels of ``ranked_by`` (default: ``adata``),
    traced on ``adata``; knockouts in the traced cells and more of each type from ``knockout_pool`` (default:
    ``adata``; it must hold the traced cells). The types run side by side in ``workers`` (default: as many as
    ``--workers`` asks, else :func:`~sctranscoder._workers.worker_count`'s choice for ``model``)."""
    known = model.labels or sorted(adata.obs[label_key].astype(str).unique())
    if args.cell_types:
        cell_types = [t.strip() for t in args.cell_types.split(",") if t.strip()]
        unknown = [t for t in cell_types if t not in known]
        if unknown:
            raise UsageError(f"--cell-types {unknown} are not labels the model knows ({', '.join(known)})")
    else:
        cell_types = largest_types(ranked_by if ranked_by is not None else adata, label_key, args.n_largest, known)
    check_circuit_options(args)  # again: run_circuits is also called on its own
    pool = adata if knockout_pool is None else knockout_pool
    if workers is not None:
        return circuits_side_by_side(adata, model, transcoders, cell_types, args, label_key, progress, pool, workers)
    with Workers(min(worker_count(model, getattr(args, "workers", None)), len(cell_types))) as own:
        return circuits_side_by_side(adata, model, transcoders, cell_types, args, label_key, progress, pool, own)


def circuit_line(result) -> str:
    """One line on a circuit's scores and where its target comes from (complete graphs), or its message."""
    summary = result.summary()
    if "replacement" not in summary:
        return result.message
    grown = ""
    if "feature_share" in summary:
        grown = (f"circuit features alone carry {summary['feature_share']:.0%} of the label's log-odds "
                 f"({summary['n_circuit_features']:.0f} features; circuit-tracer's pruned circuit: "
                 f"{summary['feature_share_pruned']:.0%}, {summary['n_features_pruned']:.0f}); ")
    line = f"means over the {len(result.scores)} traced cells: " + grown + (f"replacement {summary['replacement']:.2f} / completeness {summary['completeness']:.2f} "
            f"(pruned {summary['replacement_pruned']:.2f} / {summary['completeness_pruned']:.2f}); "
            f"inputs: genes {summary['share_gene']:.0%}, template {summary['share_template']:.0%}, "
            f"answer prefix {summary['share_answer']:.0%}, errors {summary['share_error']:.0%}")
    return line + (f". {result.message}" if result.message else "")


def genes_line(result, n: int = 8) -> str:
    """The top genes, measured (knockouts that pass their rank-matched null) when the circuit was validated, and
    attributed; in words when no knockout passes."""
    from sctranscoder.tl._validate import passing_genes

    attributed = f"attributed {', '.join(result.genes.gene.head(n))}"
    measured = passing_genes(result.genes_by_knockout)
    if measured is None:
        return f"top genes ({attributed})"
    validation = result.validation or {}
    cells = validation.get("n_cells_knockout", validation.get("n_cells", 0))
    if not len(measured):
        said = validation.get("message") or (f"No gene's knockout moved P({result.cell_type}) more than knocking "
                                             f"out a random gene at the same rank in these {cells} cells.")
        return f"{said} Top genes ({attributed})"
    return (f"top genes by knockout (measured, beyond random genes at the same rank, {cells} cells) "
            f"{', '.join(measured.gene.head(n))}; {attributed}")


def cmd_circuits(args) -> None:
    import anndata as ad

    import sctranscoder as sct

    _require_h5ad(args.input)
    _require_model(args.model)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"out {args.out} exists and is not a folder")
    check_circuit_options(args)
    transcoders = _load_transcoders(args.transcoders)
    adata = ad.read_h5ad(args.input)
    model = sct.models.load(args.model)
    label_key = args.label_key or model.metadata.get("label_key")
    require_obs_column(adata, label_key)
    results = run_circuits(adata, model, transcoders, args, label_key)
    write_circuits(results, args.out)
    for cell_type, result in results.items():
        print(f"{cell_type}: {genes_line(result)}")
        print(f"  {circuit_line(result)}")
        if result.steering is not None:
            print(f"  {steering_sentence(result.steering)}")
    if line := steering_matrix_line(results, args.out):
        print(line)
    print(f"wrote {args.out}")
