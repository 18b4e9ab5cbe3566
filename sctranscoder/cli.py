"""The ``sctranscoder`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

_SENTENCES_EXAMPLE = """example:
  sctranscoder sentences pbmc.h5ad pbmc_sentences.parquet --n-genes 200 --obs-columns cell_type,donor
"""
_HARVEST_EXAMPLE = """example:
  sctranscoder harvest pbmc.h5ad data/c2s_pbmc_default activations/ --label-key cell_type --layers 0,1,2
"""
_TRAIN_EXAMPLE = """example:
  sctranscoder train activations/ transcoders/ --activation topk --k 32 --d-hidden 4096 --steps 2000
"""
_QUICKSTART_EXAMPLE = """example:
  sctranscoder quickstart --out quickstart_out
"""


class UsageError(Exception):
    """A bad path or argument, reported in one line."""


def _add_sentence_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-genes", type=int, default=None, help="top genes per cell (default: all expressed)")
    parser.add_argument("--tie-break", choices=["random", "stable", "c2s"], default="random")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunk-size", type=int, default=8192, help="cells per chunk (bounds memory)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sctranscoder", description="Cell sentences and transcoders for C2S models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    sentences = sub.add_parser("sentences", help="h5ad in, parquet of cell sentences out",
                               epilog=_SENTENCES_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sentences.add_argument("input", type=Path, help="an .h5ad file (read backed, in chunks)")
    sentences.add_argument("output", type=Path, help="the .parquet file to write")
    sentences.add_argument("--obs-columns", default="", help="comma-separated obs columns to copy")
    sentences.add_argument("--layer", default=None)
    sentences.add_argument("--use-raw", action=argparse.BooleanOptionalAction, default=None)
    sentences.add_argument("--gene-symbols", default=None, help="var column with gene names")
    sentences.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _add_sentence_options(sentences)

    harvest = sub.add_parser("harvest", help="h5ad + model folder in, activation store out (resumable)",
                             epilog=_HARVEST_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    harvest.add_argument("input", type=Path, help="an .h5ad file")
    harvest.add_argument("model", type=Path, help="a Hugging Face model folder (C2S or any causal LM)")
    harvest.add_argument("store", type=Path, help="activation store folder (resumed if it holds one)")
    harvest.add_argument("--layers", type=_layers, default=None, help="comma-separated layers (default: all)")
    harvest.add_argument("--label-key", default=None, help="obs column: append each cell's answer, as in training")
    harvest.add_argument("--n-genes", type=int, default=None, help="genes per sentence (default: the model's)")
    harvest.add_argument("--batch-size", type=int, default=16)
    harvest.add_argument("--chunk-size", type=int, default=256, help="cells per shard")
    harvest.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    harvest.add_argument("--only-genes", action="store_true", help="keep gene tokens only")

    train = sub.add_parser("train", help="activation store in, one transcoder per layer out (resumable)",
                           epilog=_TRAIN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("store", type=Path, help="an activation store folder")
    train.add_argument("out", type=Path, help="folder for layer{L}/ transcoders")
    train.add_argument("--layers", type=_layers, default=None, help="comma-separated layers (default: all stored)")
    train.add_argument("--activation", choices=["topk", "batchtopk", "relu", "jumprelu"], default="topk")
    train.add_argument("--k", type=int, default=32)
    train.add_argument("--d-hidden", type=int, default=4096)
    train.add_argument("--skip", action="store_true", help="add a linear skip connection")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=4096)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--eval-fraction", type=float, default=0.1, help="shards held out for evaluation")
    train.add_argument("--seed", type=int, default=0)

    quick = sub.add_parser("quickstart", help="run the pipeline on the bundled PBMC data",
                           epilog=_QUICKSTART_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    quick.add_argument("--out", type=Path, default=Path("quickstart_out"), help="output folder")
    _add_sentence_options(quick)
    return parser


def _layers(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer numbers") from None


def _check_output(path: Path, suffix: str, overwrite: bool) -> None:
    if path.suffix != suffix:
        raise UsageError(f"output {path} must end in {suffix}")
    if path.exists() and not overwrite:
        raise UsageError(f"output {path} exists; pass --overwrite to replace it")


def _cmd_sentences(args) -> None:
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


def _cmd_harvest(args) -> None:
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


def _cmd_train(args) -> None:
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
        cfg = sct.tc.TranscoderConfig(d_in=store.d_in[layer], d_out=store.d_out[layer], d_hidden=args.d_hidden,
                                      activation=args.activation, k=args.k, skip=args.skip,
                                      batch_size=args.batch_size, n_tokens=args.batch_size * args.steps,
                                      learning_rate=args.lr, seed=args.seed)
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


def _cmd_quickstart(args) -> None:
    import sctranscoder as sct

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    adata = sct.datasets.pbmc68k_reduced()
    sct.pp.cell_sentences(adata, n_genes=args.n_genes, tie_break=args.tie_break, seed=args.seed,
                          chunk_size=args.chunk_size)
    sentences_path = sct.pp.write_sentences(
        adata, out / "sentences.parquet", obs_columns=["bulk_labels", "louvain"], n_genes=args.n_genes,
        tie_break=args.tie_break, seed=args.seed, chunk_size=args.chunk_size, progress=False,
    )
    fit = sct.pp.fit_rank_expression(adata, inplace=False)
    prompts = sct.pp.prompts(adata, label_key="bulk_labels", n_genes=100, seed=args.seed)
    prompts.to_parquet(out / "prompts.parquet")
    (out / "rank_expression_fit.json").write_text(json.dumps(fit, indent=2))
    print(f"cell sentences of {adata.n_obs} PBMCs: {sentences_path}")
    print(f"prompts (top 100 genes): {out / 'prompts.parquet'}")
    print("inverse transform, expression ~ log10(1 + rank): "
          f"slope {fit['slope']:.3f}, intercept {fit['intercept']:.3f}, r^2 {fit['r_squared']:.3f}, "
          f"Pearson {fit['pearson_r']:.3f}, Spearman {fit['spearman_r']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    commands = {"sentences": _cmd_sentences, "harvest": _cmd_harvest, "train": _cmd_train,
                "quickstart": _cmd_quickstart}
    try:
        commands[args.command](args)
    except (UsageError, ValueError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sctranscoder {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
