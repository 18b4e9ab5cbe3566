"""``sctranscoder enrich`` and ``sctranscoder report``: gene lists to gene-set tables, run folders to HTML."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from .._atomic import atomic_path
from ..report._from_adata import add_controls_section, flag_reason, signable_headlines
from ..report._steering_matrix import add_steering_matrix
from ._commands import UsageError, _require_h5ad, _require_model, read_validation
from ._controls_io import read_controls
from ._readable_io import read_steering, read_steering_matrix, read_supernodes


def _gene_lists(path: Path, n_top: int) -> dict:
    """``{name: genes}`` from a gene table (CSV with a ``gene`` column, best first; rows with a negative
    ``attribution`` left out) or a folder of ``*_genes.csv`` tables, one list each."""
    files = sorted(path.glob("*_genes.csv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise UsageError(f"genes {path} is neither a CSV gene table nor a folder of *_genes.csv tables")
    lists = {}
    for file in files:
        table = pd.read_csv(file)
        if "gene" not in table:
            raise UsageError(f"{file} has no 'gene' column")
        if "attribution" in table:
            table = table[table.attribution > 0]
        name = file.stem[: -len("_genes")] if file.stem.endswith("_genes") else file.stem
        lists[name] = table.gene.astype(str).head(n_top).tolist()
    return lists


def cmd_enrich(args) -> None:
    import anndata as ad

    import sctranscoder as sct

    if args.output.suffix != ".csv":
        raise UsageError(f"output {args.output} must end in .csv")
    lists = _gene_lists(args.genes, args.n_top)
    if args.background is not None:
        if not args.background.is_file():
            raise UsageError(f"--background {args.background} is not a file (one gene per line)")
        background = [g.strip() for g in args.background.read_text().splitlines() if g.strip()]
    else:
        if args.h5ad is None or args.model is None:
            raise UsageError("give the genes the model can see: --h5ad FILE --model DIR, or --background FILE")
        _require_h5ad(args.h5ad)
        _require_model(args.model)
        background = sct.tl.visible_genes(ad.read_h5ad(args.h5ad), sct.models.load(args.model))
    table = sct.genesets.enrich(lists, args.gene_sets, background, max_fdr=args.max_fdr, min_set_size=3,
                                fdr_over="tested")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, index=False)
    print(f"{len(table)} enriched gene sets over {len(lists)} lists (background {len(background)} genes) -> "
          f"{args.output}")


def cmd_report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import sctranscoder as sct
    from sctranscoder.report import ReportContent

    run = args.run
    if not run.is_dir():
        raise UsageError(f"run {run} is not a folder (give the folder a quickstart or the other commands wrote)")
    if args.output.suffix != ".html":
        raise UsageError(f"output {args.output} must end in .html")
    content = ReportContent(title=args.title, model=args.model_name)
    quality = run / "transcoder_quality.csv"
    if quality.is_file():
        content.quality = pd.read_csv(quality, index_col=0)
    circuits = sorted((run / "circuits").glob("*.json")) if (run / "circuits").is_dir() else []
    enrichment = run / "circuit_enrichment.csv"
    enriched = pd.read_csv(enrichment) if enrichment.is_file() else None
    for path in circuits:
        graph = sct.circuits.read_json(path)
        name = str(graph.graph.get("cell_type", path.stem))
        section = content.section(name)
        section.circuit_figure = sct.pl.circuit(graph, show=False).figure
        section.circuit_view = sct.report.circuit_view(graph)
        genes = path.with_name(f"{path.stem}_genes.csv")
        if genes.is_file():
            section.input_genes = pd.read_csv(genes)
        section.validation = read_validation(path.parent / "validation", path.stem)
        section.supernodes, section.supernode_share = read_supernodes(path.parent, path.stem)
        section.steering = read_steering(path.parent, path.stem)
        if enriched is not None:
            rows = enriched[enriched.List.astype(str) == name]
            # one name family (HLA-D*) is flagged, as the quickstart's report does; no model here, so by name stems
            genes = sorted({g for listed in rows.Genes.astype(str) for g in listed.split(";") if g})
            heads = sct.tl.headline_sets(rows, families=sct.genesets.name_families(genes), max_fdr=0.05)
            section.circuit_enrichment = heads
            section.result = _circuit_result(heads)
        else:
            section.result = "No circuit enrichment was run for this cell type (no circuit_enrichment.csv)."
    if (run / "circuits").is_dir():
        add_steering_matrix(content, read_steering_matrix(run / "circuits"))
    if content.quality is None and not content.cell_types:
        raise UsageError(f"run {run} holds neither transcoder_quality.csv nor circuits/*.json")
    try:
        controls = read_controls(run)
    except ValueError as error:  # an older run: its report still renders, and says why the controls are missing
        controls = None
        content.notes["Feature controls not shown."] = str(error)
        print(f"warning: {error}", file=sys.stderr)
    if controls is not None:
        add_controls_section(content, controls)
    content.parameters = {"run folder": str(run)}
    path = sct.report.write_html(args.output, content)
    print(f"wrote {path}")


def _circuit_result(heads) -> str:
    """The circuit's enrichment in one sentence: the best set a biologist would sign, or why the best is not one."""
    if not len(heads):
        return "Circuit enrichment: no gene set reached FDR <= 0.05 among its input genes."
    signable = signable_headlines(heads)
    best = signable.iloc[0] if len(signable) else heads.iloc[0]
    said = f"{best.Headline} ({best.Gene_set}, {best.Overlap}, FDR {best['Adjusted P-value']:.2g})"
    if len(signable):
        return f"Its circuit's input genes are enriched for {said}."
    return f"Its circuit's input genes reach {said}, but {flag_reason(best)}."
