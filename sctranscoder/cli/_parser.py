"""The ``sctranscoder`` command line: subcommands, their options and examples."""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields
from pathlib import Path

from .. import __version__

EXAMPLES = {
    "sentences": "sctranscoder sentences pbmc.h5ad pbmc_sentences.parquet --n-genes 200 --obs-columns cell_type,donor",
    "plan": "sctranscoder plan pbmc.h5ad c2s_model/ --out run/ --layers 0,1,2 --label-key cell_type",
    "harvest": "sctranscoder harvest pbmc.h5ad c2s_model/ activations/ --label-key cell_type --layers 0,1,2",
    "train": "sctranscoder train activations/ transcoders/ --activation topk --k 32 --d-hidden 4096",
    "evaluate": "sctranscoder evaluate pbmc.h5ad c2s_model/ transcoders/ metrics.csv --label-key cell_type",
    "circuits": "sctranscoder circuits pbmc.h5ad c2s_model/ transcoders/ circuits/ --n-largest 5",
    "enrich": "sctranscoder enrich circuits/ circuit_enrichment.csv --h5ad pbmc.h5ad --model c2s_model/",
    "report": "sctranscoder report quickstart_out/ report.html",
    "train-model": "sctranscoder train-model atlas.h5ad --label-key cell_type --out c2s_model/",
    "predict": "sctranscoder predict new_cells.h5ad --model c2s_model/ --out predictions.csv",
    "quickstart": "sctranscoder quickstart --out quickstart_out\n  sctranscoder quickstart --out again --config quickstart_out/run.yaml",
}


def layers(text: str) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer numbers") from None


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object of settings")
    return value


def _sentence_options(parser) -> None:
    parser.add_argument("--n-genes", type=int, default=None, help="top genes per cell (default: all expressed)")
    parser.add_argument("--tie-break", choices=["random", "stable", "c2s"], default="random")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunk-size", type=int, default=8192, help="cells per chunk (bounds memory)")


def _transcoder_options(parser, *, d_hidden: int | None = None) -> None:
    """Transcoder options: defaults and help from :class:`sctranscoder.tc.TranscoderConfig` (``None``: its rule)."""
    from ..tc import TranscoderConfig, activation_names, get_activation
    from ..tc._config import field_docs

    defaults = {f.name: f.default for f in fields(TranscoderConfig) if f.default is not MISSING}
    docs = field_docs()

    def about(name: str) -> str:
        return docs[name].replace("%", "%%").replace("``", "")

    parser.add_argument("--layers", type=layers, default=None, help="comma-separated layers (default: all)")
    names = activation_names()
    parser.add_argument("--activation", choices=names, default=defaults["activation"],
                        help="; ".join(f"{n}: {get_activation(n).description}" for n in names))
    parser.add_argument("--k", type=int, default=defaults["k"], help=about("k"))
    parser.add_argument("--d-hidden", type=int, default=d_hidden or defaults["d_hidden"], help=about("d_hidden"))
    parser.add_argument("--skip", action="store_true", help="add a linear skip connection")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimizer steps (default: automatic, {defaults['auto_steps']}; warmup is a tenth of "
                             "them, at most 100)")
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"],
                        help=about("batch_size").replace("None:", "Default:"))
    parser.add_argument("--lr", type=float, default=defaults["learning_rate"],
                        help=about("learning_rate").replace("None:", "Default:"))
    parser.add_argument("--transcoder-seed", type=int, default=defaults["seed"], help=about("seed"))


def _circuit_options(parser) -> None:
    parser.add_argument("--cell-types", default=None, help="comma-separated labels to explain")
    parser.add_argument("--n-largest", type=int, default=5, help="else: the N most frequent labels")
    parser.add_argument("--n-cells", type=int, default=8, help="cells traced per type")
    parser.add_argument("--method", choices=["complete", "greedy"], default="complete",
                        help="complete attribution graphs (circuit-tracer's), or the older greedy search")
    parser.add_argument("--target", choices=["logodds", "logprob", "contrast"], default="logodds",
                        help="the call's log-odds (or log-probability) over all candidates, or the first-differing "
                             "answer token against its rivals")
    parser.add_argument("--max-feature-nodes", type=int, default=1024,
                        help="complete graphs: features whose inputs are attributed per cell (the node budget)")
    parser.add_argument("--max-nodes", type=int, default=60, help="greedy search: features and heads expanded per cell")
    parser.add_argument("--node-threshold", type=float, default=None,
                        help="pruning: share of cumulative influence kept (complete, default 0.8) or minimum "
                             "influence per node (greedy, default 0.02)")
    parser.add_argument("--edge-threshold", type=float, default=0.98, help="complete graphs: edge influence kept")
    parser.add_argument("--min-feature-share", type=float, default=0.8,
                        help="complete graphs: grow each cell's circuit until its features alone carry this share of "
                             "the label's log-odds (0: keep circuit-tracer's pruned circuit)")
    parser.add_argument("--validate-cells", type=int, default=None,
                        help="check the circuit in this many traced cells per type: attributions against knockouts, "
                             "feature share (default: every traced cell; 0: no knockouts)")
    parser.add_argument("--knockout-cells", type=int, default=20,
                        help="knock genes out of up to this many cells per type (the traced ones first), each gene "
                             "tested against random genes knocked out at the same sentence positions")
    parser.add_argument("--knockout-genes", choices=["top", "sentence"], default="top",
                        help="genes knocked out: the circuit's top attributed and gradient genes, or every gene of "
                             "the sentences (200 scoring prompts a cell)")
    parser.add_argument("--knockout-draws", type=int, default=4,
                        help="random rank-matched knockouts per tested gene and cell (the null)")
    parser.add_argument("--knockout-fdr", type=float, default=0.05,
                        help="a gene is measured where its knockout passes the null at this FDR")
    parser.add_argument("--steer-cells", type=int, default=8,
                        help="raise each type's supernodes that carry its call together (1, 3, 10 and 30 times their "
                             "activation) in this many cells of the next traced type, beside as many random features "
                             "(the control), and count calls that move (0: off)")
    parser.add_argument("--steer-into", choices=["next", "all"], default="next",
                        help="steer each type into the next traced type's cells, or into every other traced type's "
                             "(a matrix of every pair: --n-largest 5 steers 20 pairs instead of 5)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that run independent steps (cell types, evaluation, controls) side by side, "
                             "one torch thread each (default: one per core for a small model on CPU, else 1)")


class OneLineErrors(argparse.ArgumentParser):
    """An option error as one line naming the fix, with a pointer to ``--help`` instead of the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _sub(sub, name: str, help_text: str):
    parser = sub.add_parser(name, help=help_text, epilog=f"example:\n  {EXAMPLES[name]}\n",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help=f"a run configuration (YAML); its '{name}' section sets defaults")
    return parser


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = OneLineErrors(prog="sctranscoder",
                           description="Cell sentences, transcoders and circuits for C2S models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    subs = {}

    p = subs["sentences"] = _sub(sub, "sentences", "h5ad in, parquet of cell sentences out")
    p.add_argument("input", type=Path, help="an .h5ad file (read backed, in chunks)")
    p.add_argument("output", type=Path, help="the .parquet file to write")
    p.add_argument("--obs-columns", default="", help="comma-separated obs columns to copy")
    p.add_argument("--layer", default=None)
    p.add_argument("--use-raw", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--gene-symbols", default=None, help="var column with gene names")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _sentence_options(p)

    p = subs["plan"] = _sub(sub, "plan", "tokens, store size, time and memory of a run, before it starts")
    p.add_argument("input", type=Path, help="an .h5ad file")
    p.add_argument("model", type=Path, nargs="?", default=None,
                   help="a Hugging Face model folder (C2S or any causal LM); none: plan training one "
                        "(train-model --plan takes its options)")
    p.add_argument("--out", type=Path, default=Path("."), help="where the store would go (its disk is checked)")
    p.add_argument("--layers", type=layers, default=None, help="comma-separated layers (default: all)")
    p.add_argument("--label-key", default=None, help="obs column: prompts with their answers, as in training")
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    p.add_argument("--only-genes", action="store_true", help="a store of gene tokens only")
    p.add_argument("--d-hidden", type=int, default=None, help="transcoder width (default: the library's)")
    p.add_argument("--measure-cells", type=int, default=8, help="cells timed for the estimate (0: none)")

    p = subs["harvest"] = _sub(sub, "harvest", "h5ad + model folder in, activation store out (resumable)")
    p.add_argument("input", type=Path, help="an .h5ad file")
    p.add_argument("model", type=Path, help="a Hugging Face model folder (C2S or any causal LM)")
    p.add_argument("store", type=Path, help="activation store folder (resumed if it holds one)")
    p.add_argument("--layers", type=layers, default=None, help="comma-separated layers (default: all)")
    p.add_argument("--label-key", default=None, help="obs column: append each cell's answer, as in training")
    p.add_argument("--n-genes", type=int, default=None, help="genes per sentence (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--chunk-size", type=int, default=256, help="cells per shard")
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    p.add_argument("--only-genes", action="store_true", help="keep gene tokens only")

    p = subs["train"] = _sub(sub, "train", "activation store in, one transcoder per layer out (resumable)")
    p.add_argument("store", type=Path, help="an activation store folder")
    p.add_argument("out", type=Path, help="folder for layer{L}/ transcoders")
    _transcoder_options(p)
    p.add_argument("--eval-fraction", type=float, default=0.1, help="shards held out for evaluation")

    p = subs["evaluate"] = _sub(sub, "evaluate", "FVU, L0, loss recovered and accuracy kept on held-out cells")
    p.add_argument("input", type=Path, help="an .h5ad file")
    p.add_argument("model", type=Path, help="the model folder the transcoders were trained on")
    p.add_argument("transcoders", type=Path, help="folder of layer{L}/ transcoders")
    p.add_argument("output", type=Path, help="the .csv table to write")
    p.add_argument("--label-key", default=None, help="obs column of cell types (adds accuracy kept)")
    p.add_argument("--cells", choices=["held-out", "all"], default="held-out",
                   help="held-out: the model's held-out cells (or those recorded in the h5ad)")

    p = subs["circuits"] = _sub(sub, "circuits", "circuits behind cell-type calls, as GraphML/JSON and gene tables")
    p.add_argument("input", type=Path, help="an .h5ad file")
    p.add_argument("model", type=Path, help="a C2S model folder")
    p.add_argument("transcoders", type=Path, help="folder of layer{L}/ transcoders")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--label-key", default=None, help="obs column of cell types (default: the model's)")
    _circuit_options(p)

    p = subs["enrich"] = _sub(sub, "enrich", "gene lists in, gene-set enrichment table out")
    p.add_argument("genes", type=Path, help="a gene table (CSV with a 'gene' column) or a folder of *_genes.csv")
    p.add_argument("output", type=Path, help="the .csv table to write")
    p.add_argument("--gene-sets", default="all", help="a bundled library, 'all', or a .gmt file")
    p.add_argument("--h5ad", type=Path, default=None, help="cells, for the background: the genes the model sees")
    p.add_argument("--model", type=Path, default=None, help="the model folder, for the background")
    p.add_argument("--background", type=Path, default=None, help="or a file of background genes, one per line")
    p.add_argument("--n-top", type=int, default=25, help="genes per list (best first)")
    p.add_argument("--max-fdr", type=float, default=0.05)

    p = subs["report"] = _sub(sub, "report", "a run folder in, one self-contained HTML report out")
    p.add_argument("run", type=Path, help="folder with transcoder_quality.csv and/or circuits/ (as quickstart writes)")
    p.add_argument("output", type=Path, help="the .html file to write")
    p.add_argument("--title", default="sctranscoder report")
    p.add_argument("--model-name", default="", help="the model's name, for the report's heading")

    p = subs["train-model"] = _sub(sub, "train-model", "h5ad in, a C2S cell-type model trained on it out (resumable)")
    p.add_argument("input", type=Path, help="an .h5ad file with cell types in obs")
    p.add_argument("--label-key", required=True, help="obs column of cell types the model learns to answer")
    p.add_argument("--out", type=Path, default=None, help="model folder (resumed from its last checkpoint)")
    p.add_argument("--base-model", type=Path, default=None, help="a model folder to fine-tune (default: from scratch)")
    p.add_argument("--model-config", type=json_object, default=None,
                   help='from scratch: the architecture as JSON, e.g. \'{"hidden_size": 64, "layers": 2}\' '
                        "(hidden_size, layers, heads, max_positions, dropout; default: the recipe's)")
    p.add_argument("--n-genes", type=int, default=None, help="genes per prompt (default: the recipe's)")
    p.add_argument("--tokenizer", choices=["word", "byte_bpe", "sentencepiece"], default=None,
                   help="from scratch: one token per gene (word) or subword pieces (default: the recipe's)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training cells (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--validation-size", type=float, default=None,
                   help="share of each type's training cells that chooses the epoch")
    p.add_argument("--patience", type=int, default=None, help="stop after this many epochs without improvement")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--organism", default=None, help="the organism named in the prompts")
    p.add_argument("--tie-break", choices=["random", "stable", "c2s"], default=None)
    p.add_argument("--layer", default=None, help="adata.layers key holding the expression")
    p.add_argument("--use-raw", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the last checkpoint in --out")
    p.add_argument("--plan", action="store_true",
                   help="print the recipe, time and memory this training would take, and stop (--out not needed)")

    p = subs["predict"] = _sub(sub, "predict", "h5ad + model folder in, each cell's predicted type out")
    p.add_argument("input", type=Path, help="an .h5ad file")
    p.add_argument("--model", type=Path, required=True, help="a C2S model folder (e.g. from train-model)")
    p.add_argument("--out", type=Path, required=True,
                   help="predictions.csv (cell, prediction, probabilities) or a .h5ad copy of the input with them")
    p.add_argument("--key-added", default="c2s_prediction", help="obs column (and obsm key) of the predictions")
    p.add_argument("--mode", choices=["score", "generate"], default="score",
                   help="score every candidate label, or generate an answer")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    p = subs["quickstart"] = _sub(sub, "quickstart", "the whole pipeline on the bundled PBMC data and default model")
    p.add_argument("--out", type=Path, default=Path("quickstart_out"), help="output folder")
    _sentence_options(p)
    _transcoder_options(p, d_hidden=1024)  # narrower than the library's, for a quick run; the rest as there
    p.add_argument("--subsample", type=float, default=0.25, help="share of the training tokens harvested")
    p.add_argument("--train-cells", type=int, default=None, help="training cells harvested (default: all 558)")
    p.add_argument("--eval-cells", type=int, default=64, help="held-out cells for evaluation and circuits")
    _circuit_options(p)
    p.add_argument("--n-top-genes", type=int, default=25, help="circuit genes tested for enrichment per cell type")
    # a quick run: fewer cells, a small node budget (the library default is 1,024), circuits checked in 2 traced
    # cells per type; knockouts of the top genes in every held-out cell of the type sampled (up to 20)
    p.set_defaults(n_cells=4, max_nodes=40, max_feature_nodes=64, validate_cells=2)
    return parser, subs
