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

    quick = sub.add_parser("quickstart", help="run the pipeline on the bundled PBMC data",
                           epilog=_QUICKSTART_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    quick.add_argument("--out", type=Path, default=Path("quickstart_out"), help="output folder")
    _add_sentence_options(quick)
    return parser


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
    commands = {"sentences": _cmd_sentences, "quickstart": _cmd_quickstart}
    try:
        commands[args.command](args)
    except (UsageError, ValueError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sctranscoder {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
