"""Render a :class:`ReportContent` as one self-contained HTML file (figures as base64 PNG, inline CSS/JS)."""

from __future__ import annotations

import base64
import datetime
import html
import io
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from ._assets import CSS, JS
from ._circuit_view import VIEW_CSS, VIEW_JS, circuit_view_html
from ._content import ReportContent
from ._glossary import glossary_html
from ._measured import has_null, knockout_cells, measured_genes, no_pass_sentence
from ._readable_circuit import READABLE_CSS, readable_circuit_html
from ._shared_genes import shared_genes_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _anchor(name: str) -> str:
    return "ct-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def figure_png(figure) -> bytes:
    """PNG bytes of a matplotlib Figure (or Axes), PNG bytes, or a PNG file."""
    if isinstance(figure, (bytes, bytearray)):
        data = bytes(figure)
    elif isinstance(figure, (str, Path)):
        data = Path(figure).read_bytes()
    elif hasattr(figure, "savefig") or hasattr(getattr(figure, "figure", None), "savefig"):
        fig = figure if hasattr(figure, "savefig") else figure.figure
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        data = buffer.getvalue()
    else:
        raise TypeError(f"A figure must be a matplotlib Figure, PNG bytes or a PNG path, not {type(figure).__name__}.")
    if not data.startswith(PNG_MAGIC):
        raise ValueError("The figure's bytes are not a PNG image.")
    return data


def _figure(figure, caption: str) -> str:
    encoded = base64.b64encode(figure_png(figure)).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


IDENTIFIERS = {"feature", "layer", "rank", "List"}  # integer columns shown without thousands separators
WIDE = {"genes", "top genes", "gene set", "notes", "label", "term", "source", "attribution", "value"}  # text columns that get room (wrapped between words)

# the quality table in plain words: (name shown, one sentence of meaning); other columns stay in the CSV
QUALITY_COLUMNS = {
    "fvu": ("Variance missed", "Share of the MLP output's variance the transcoder does not reproduce "
                               "(FVU; 0 is perfect)."),
    "l0": ("Features per token", "How many features fire on a token, on average (L0)."),
    "dead_fraction": ("Silent features", "Share of features that never fire on these cells."),
    "dense_fraction": ("Always-on features", "Share of features that fire on a large part of all tokens."),
    "recovered_mean": ("Loss recovered", "How much of the prediction loss lost by replacing the MLP with its mean "
                                         "output the transcoder wins back (100% = as good as the model; above 100%: "
                                         "with the transcoder the model predicts these cells' answers a little better "
                                         "than with its own MLP, which happens on few cells and is not a flaw)."),
    "accuracy_clean": ("Cell-type accuracy, model", "Share of held-out cells whose type the model names "
                                                    "correctly."),
    "accuracy": ("Accuracy with transcoders", "The same with the MLP(s) replaced by the transcoder(s)."),
    "accuracy_kept": ("Accuracy kept", "The second accuracy over the first (1 = nothing lost)."),
}


def _format(value, identifier: bool = False) -> tuple[str, str | None]:
    """(text shown, sortable numeric value or None)."""
    if isinstance(value, (list, tuple, np.ndarray, pd.Index)):
        return ", ".join(str(v) for v in value), None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), None
    if isinstance(value, (int, np.integer)):
        return (str(int(value)) if identifier else f"{int(value):,}"), str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if np.isnan(value):
            return "", "NaN"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}", repr(value)
        return f"{value:.4g}", repr(value)
    if value is None:
        return "", None
    return str(value), None


def table_html(frame: pd.DataFrame, *, index: bool = True, max_rows: int | None = 500, caption: str = "",
               texts: dict | None = None) -> str:
    """A sortable HTML table (click a header to sort; numeric columns sort as numbers). ``texts``:
    ``{column: [text shown per row]}`` for numeric columns shown otherwise (percentages), still sorted by value."""
    if frame is None or len(frame) == 0:
        return f'<p class="muted">{_e(caption + ": " if caption else "")}nothing to show.</p>'
    shown = frame.reset_index() if index and frame.index.name is not None else frame
    note = ""
    if max_rows is not None and len(shown) > max_rows:
        note = f'<p class="muted">First {max_rows:,} of {len(shown):,} rows.</p>'
        shown = shown.head(max_rows)
    numeric = [pd.api.types.is_numeric_dtype(shown[c]) and not pd.api.types.is_bool_dtype(shown[c])
               for c in shown.columns]
    wide = [str(c).lower() in WIDE for c in shown.columns]
    number = ' data-type="number"'
    roomy_class = ' class="wide"'
    head = "".join(f"<th{number if n else ''}{roomy_class if w else ''}>{_e(c)}</th>"
                   for c, n, w in zip(shown.columns, numeric, wide))
    identifiers = [str(c) in IDENTIFIERS for c in shown.columns]
    shown_texts = [(texts or {}).get(c) for c in shown.columns]
    rows = []
    for i, record in enumerate(shown.itertuples(index=False, name=None)):
        cells = []
        for value, is_number, identifier, roomy, given in zip(record, numeric, identifiers, wide, shown_texts):
            text, sortable = _format(value, identifier)
            text = given[i] if given is not None else text
            if is_number and sortable is not None:
                cells.append(f'<td class="num" data-value="{_e(sortable)}">{_e(text)}</td>')
            else:
                cells.append(f"<td{roomy_class if roomy else ''}>{_e(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    title = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="sortable">{title}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>{note}")


INPUT_GENE_COLUMNS = {"attribution": "contribution to the call", "influence": "influence",
                      "n_cells": "traced cells it reaches", "fraction_of_cells": "share of traced cells"}
INPUT_GENES_NOTE = ("Contribution: the gene's signed contribution to the call's log-odds through all paths of the "
                    "circuit (its tokens pooled), mean over the traced cells; positive pushes towards this cell "
                    "type. Influence: its unsigned influence on the call as circuit-tracer ranks nodes. Both are "
                    "linearized attributions; the knockout check, where shown, is the measurement.")


def _input_genes_frame(genes) -> pd.DataFrame:
    if isinstance(genes, pd.DataFrame):
        return genes.rename(columns=INPUT_GENE_COLUMNS)
    if isinstance(genes, pd.Series):
        frame = genes.sort_values(ascending=False).rename("score").to_frame()
        frame.index.name = "gene"
        return frame.reset_index().assign(rank=lambda t: np.arange(1, len(t) + 1))[["rank", "gene", "score"]]
    return pd.DataFrame({"rank": np.arange(1, len(genes) + 1), "gene": [str(g) for g in genes]})


MEASURED_COLUMNS = {"knockout_effect": "knockout effect on log P",
                    "knockout_effect_logodds": "knockout effect on log-odds",
                    "effect": "knockout effect (measured)", "interval": "95% interval over cells",
                    "null_mean": "random gene, same rank", "z": "z", "fdr": "FDR",
                    "attribution": "contribution (attributed)", "gradient": "attention-mask gradient (attributed)",
                    "n_cells": "cells with the gene", "features": "circuit features it feeds (attributed)"}
MEASURED_NOTE = ("Measured: the drop in the log-odds of the cell type over all candidate labels when the gene's "
                 "expression is set to 0 in a cell and its sentence rebuilt, re-scored by the model; mean over the "
                 "cells whose sentence holds the gene, with its 95% interval over those cells. Removing any gene moves "
                 "every gene below it up one place, so every knockout moves the call a little: each gene is set "
                 "against random genes knocked out at the same sentence positions in the same cells (their mean "
                 "effect, z, FDR). Only genes whose effect is positive and passes that null (FDR < {fdr:g}, in at "
                 "least {min_cells} cells) are listed. The attributed columns are the circuit's account of them: the "
                 "gene's linearized contribution to the call and the circuit features its tokens feed.")
MEASURED_NOTE_NO_NULL = ("Knockout effect: the drop in log P(cell type) over all candidate labels when the gene's "
                         "expression is set to 0 in a cell and its sentence rebuilt, mean over the validated cells. "
                         "These effects were not set against random knockouts at the same rank (removing any gene "
                         "moves the call a little), so none is called measured here.")


def _measured_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader compares, named for reading; the CSV keeps the rest."""
    frame = table.copy()
    if {"ci_low", "ci_high"} <= set(frame):
        frame["interval"] = [f"{lo:.3g} to {hi:.3g}" if np.isfinite(lo) else "n/a"
                             for lo, hi in zip(frame.ci_low, frame.ci_high)]
    keep = ("gene", "effect", "interval", "null_mean", "z", "fdr", "n_cells", "knockout_effect", "attribution",
            "features")
    frame = frame[[c for c in keep if c in frame and not (c == "knockout_effect" and "effect" in frame)]]
    if "features" in frame:  # the three strongest, so the table stays narrow
        frame["features"] = [", ".join(str(f).split(", ")[:3]) if isinstance(f, str) else "" for f in frame.features]
    frame = frame.rename(columns=MEASURED_COLUMNS)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def _share(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.0%}"


def _signed(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.2f}"


def _tag(kind: str) -> str:
    return f'<span class="tag {kind}">{kind}</span>'


def circuit_genes_html(input_genes, validation: dict | None) -> str:
    """The circuit's genes: with a knockout check, the measured ranking (the list to read) beside the attributed
    one (the circuit's account), each labelled; without, the attributed ranking alone."""
    attributed = '<p class="muted">No attributed gene table was given.</p>' if input_genes is None else \
        (f'<p class="muted">{_e(INPUT_GENES_NOTE)}</p>' if isinstance(input_genes, pd.DataFrame) else "") \
        + table_html(_input_genes_frame(input_genes), index=False, max_rows=25)
    measured = (validation or {}).get("genes_by_knockout")
    if not isinstance(measured, pd.DataFrame):
        return "<h3>Circuit input genes " + _tag("attributed") + "</h3>" + attributed
    attributed_half = f'<div><h4>{_tag("attributed")} The circuit\'s input genes</h4>{attributed}</div></div>'
    if not has_null(validation):  # an older run: knockout effects without their null are not called measured
        return ("<h3>Circuit genes: knockout effects and attributions</h3>"
                '<div class="pair"><div><h4>Genes ranked by knockout effect (no null)</h4>'
                f'<p class="muted">{_e(MEASURED_NOTE_NO_NULL)}</p>'
                f"{table_html(_measured_frame(measured), index=False, max_rows=25)}</div>" + attributed_half)
    passing, n_cells = measured_genes(validation), knockout_cells(validation)
    note = MEASURED_NOTE.format(fdr=validation.get("max_fdr", 0.05), min_cells=validation.get("min_cells", 3))
    if len(passing):
        body = (f'<p class="muted">{_e(note)}</p>'
                f"{table_html(_measured_frame(passing), index=False, max_rows=25)}")
    else:
        tried = measured[measured.n_cells > 0].sort_values("z", ascending=False).head(10)
        body = (f"<p><strong>{_e(no_pass_sentence(validation, 'P(cell type)'))}</strong> So no gene is listed as "
                f'measured for this cell type.</p><p class="muted">{_e(note)} The tested genes with the largest z, '
                "none of which passes:</p>" + table_html(_measured_frame(tried), index=False))
    return ("<h3>Circuit genes: measured and attributed</h3>"
            f'<div class="pair"><div><h4>{_tag("measured")} Genes whose knockout passes a random gene at the same '
            f"rank ({len(passing)} of {int((measured.n_cells > 0).sum())} tested, in {n_cells} cells)</h4>"
            f"{body}</div>" + attributed_half)


def validation_html(validation: dict) -> str:
    """Attributed against measured: the knockout check of a circuit's gene ranking, in words and tables."""
    where = (f"knockouts in {validation['n_cells_knockout']} cells of this type, the circuit's features in "
             f"{validation.get('n_cells', '?')} traced cells" if "n_cells_knockout" in validation
             else f"{validation.get('n_cells', '?')} cells")
    text = (f"Checked by experiment ({where}). {_tag('measured')} the drop in log "
            "P(cell type) over all candidate labels when a gene's expression is set to 0 and the sentence rebuilt. "
            f"{_tag('attributed')} the gene's share of the circuit's target in the linearized model. Over the "
            f"{validation.get('n_genes', '?')} most attributed genes, Spearman "
            f"{_signed(validation.get('spearman'))}; the top 5 genes' signs agree with their knockouts in "
            f"{_share(validation.get('sign_agreement_top5'))} (a ranking to trust reaches Spearman 0.6 and 80%). The circuit's "
            f"features alone carry {_share(validation.get('feature_share'))} of the label's log-odds (median over "
            f"cells; every other feature {_e(validation.get('ablation', 'zero'))}-ablated, errors held")
    sizes = validation.get("circuit_features_cells")
    text += f"; {', '.join(str(n) for n in sizes)} features per cell)." if sizes else ")."
    gradient = validation.get("gradient")
    if gradient:
        text += (" A second attribution, the attention-mask gradient of log P(cell type) on the real model (first-order "
                 f"effect of hiding the gene from attention): Spearman {_signed(gradient.get('spearman'))}, top-5 sign "
                 f"agreement {_share(gradient.get('sign_agreement_top5'))}.")
    parts = [f"<h3>Attributed against measured</h3><p>{text}</p>"]
    if isinstance(validation.get("genes"), pd.DataFrame):
        # not the measured table's effect (log-odds, over the cells that hold the gene): named so they are not mixed up
        n = validation.get("n_cells_knockout", validation.get("n_cells", "?"))
        parts.append(f'<p class="muted">Below, a gene\'s knockout effect is the drop in log P(cell type) averaged '
                     f"over all {n} knocked-out cells, counting 0 where its sentence lacks the gene; the measured "
                     "table above gives the drop in log-odds over the cells that hold it, so its numbers are "
                     "larger.</p>")
        parts.append(table_html(validation["genes"].rename(columns={
            "attribution": "contribution (attributed)",
            "knockout_effect": f"knockout drop in log P, mean over {n} cells (measured)",
            "signs_agree": "signs agree", "passes": "passes its null"}),
            index=False))
    return "".join(parts)


def package_versions(packages) -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported)."""
    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _gene_set_sources(names) -> pd.DataFrame:
    from .. import genesets

    info = genesets.provenance(names)
    rows = [{"library": n, "sets": i["n_sets"], "source": i["source"], "version": i["version"],
             "license": i["license"], "attribution": i["attribution"]} for n, i in info.items()]
    return pd.DataFrame(rows)


def quality_html(quality: pd.DataFrame) -> str:
    """The transcoder quality table in plain words: the columns people read, renamed, each explained in one
    sentence under the table (the raw columns stay in the CSV the pipeline writes)."""
    shown = [c for c in QUALITY_COLUMNS if c in quality.columns]
    if not shown:  # a table of other columns: shown as it is
        return table_html(quality)
    texts = {}
    for column in shown:  # shares as percentages, accuracies with the cells they are over; sorted by value
        if column == "l0":
            texts[column] = [f"{v:.1f}" for v in quality[column]]
        elif column in ("accuracy", "accuracy_clean") and "n_cells" in quality:
            texts[column] = [f"{v:.1%} ({round(v * n)} of {int(n)} cells)" if pd.notna(v) else ""
                             for v, n in zip(quality[column], quality["n_cells"])]
        else:
            texts[column] = [f"{v:.1%}" if pd.notna(v) else "" for v in quality[column]]
    texts = {QUALITY_COLUMNS[c][0]: t for c, t in texts.items()}
    frame = quality[shown].rename(columns={c: QUALITY_COLUMNS[c][0] for c in shown})
    frame.index = [("every layer at once" if str(i) == "all" else f"layer {i}") for i in frame.index]
    frame.index.name = "replaced"
    glossary = "".join(f"<dt>{_e(QUALITY_COLUMNS[c][0])}</dt><dd>{_e(QUALITY_COLUMNS[c][1])}</dd>" for c in shown)
    every = ""
    if "all" in map(str, quality.index):
        every = ('<p class="muted">On the "every layer at once" row, variance missed, features per token and the '
                 "silent and always-on shares are means over the layers; loss recovered and the accuracies are "
                 "measured with every MLP replaced at once.</p>")
    return table_html(frame, texts=texts) + every + f'<dl class="glossary">{glossary}</dl>'


def _join(value, n: int | None = None) -> str:
    if isinstance(value, (list, tuple, np.ndarray, pd.Index)):
        value = list(value)[:n] if n else list(value)
        return ", ".join(str(v) for v in value)
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def cards_html(cards: pd.DataFrame, caption: str = "") -> str:
    """Feature cards (:func:`sctranscoder.tl.feature_cards`) as a grid of small boxes, one per feature."""
    if cards is None or not len(cards):
        return f'<p class="muted">{_e(caption + ": " if caption else "")}no features to show.</p>'
    boxes = []
    for feature, card in cards.iterrows():
        name = f"layer {card['layer']}, feature {feature}" if "layer" in card else f"feature {feature}"
        rows = [("top genes", _join(card.get("top_genes"), 8)),
                ("cell types (AUROC)", _join(card.get("top_cell_types"))),
                ("sets beyond spelling", _join(card.get("best_sets")) or "none"),
                ("genes its tokens drive directly", _join(card.get("de_embedding_genes"), 6) or "not computed"),
                ("spelling score", f"{card['spelling_score']:.2f}" + (f" (shares {card['family']}*)"
                                                                       if card.get("family") else ""))]
        if card.get("small_group"):
            rows.insert(2, ("caution", f"its top cell type has only {card['label_cells']} cells"))
        body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
        boxes.append(f'<div class="card"><h4>{_e(name)}</h4><p class="card-label">{_e(card["label"])}</p>'
                     f"<dl>{body}</dl></div>")
    title = f'<p class="muted">{_e(caption)}</p>' if caption else ""
    return f'{title}<div class="cards">{"".join(boxes)}</div>'


def headlines_html(headlines: pd.DataFrame, list_name: str | None = "feature") -> str:
    """Headline sets as a table that fits: the set's short name with its library, genes comma-separated, and one
    notes column (the sets collapsed into it, a one-family overlap, a disease set)."""
    rows = []
    for row in headlines.to_dict("records"):
        also = [a for a in str(row.get("Also") or "").split("; ") if a]
        more = f" and {len(also) - 4} more" if len(also) > 4 else ""  # the full list stays in the table data
        notes = [f"also: {'; '.join(also[:4])}{more}"] if also else []
        if row.get("One family"):
            notes.append(f"overlap is one name family ({row['One family']}*)")
        if row.get("Disease term"):
            notes.append("disease/pathogen set")
        if row.get("Few genes"):
            notes.append("fewer than 3 shared genes")
        entry = {list_name: row.get("List")} if list_name else {}
        entry |= {"gene set": f"{row['Headline']} ({row['Gene_set']})",
                 "overlap": row["Overlap"], "FDR": row["Adjusted P-value"]}
        if "Matched P-value" in row:
            entry["matched p"] = row["Matched P-value"]
        entry.update({"genes": row["Genes"], "notes": "; ".join(notes)})
        rows.append(entry)
    frame = pd.DataFrame(rows)
    if not frame.notes.astype(bool).any():  # a column of nothing only takes room
        frame = frame.drop(columns="notes")
    return table_html(frame, index=False)


def _section_html(section) -> str:
    parts = [f'<section class="celltype" id="{_anchor(section.name)}"><h2>{_e(section.name)}</h2>']
    if section.n_cells is not None:
        size = f"{section.n_cells:,} cells"
        if section.small_group:
            size += (" - a small group: AUROCs near 1 and overlaps like 2/3 come easily with this few cells, so "
                     "nothing in this section is headlined")
        parts.append(f'<p class="muted{" caution" if section.small_group else ""}">{_e(size)}</p>')
    result = section.result or "No result was computed for this cell type."
    parts.append(f'<p class="result"><strong>Result.</strong> {_e(result)}</p>')
    if section.supernodes is not None:
        parts.append(readable_circuit_html(section.name, section.supernodes, section.supernode_share,
                                           section.steering))
    if section.text:
        parts.append(f"<p>{_e(section.text)}</p>")
    if section.circuit_figure is not None and section.circuit_view is None:  # a circuit is drawn once
        parts.append("<h3>Circuit</h3>" + _figure(section.circuit_figure, f"Circuit behind '{section.name}'"))
    for heading, fragment in section.html.items():
        parts.append(f"<h3>{_e(heading)}</h3>{fragment}")
    if section.circuit_view is not None:
        parts.append(circuit_view_html(section.circuit_view))
    if section.input_genes is not None or section.validation is not None:
        parts.append(circuit_genes_html(section.input_genes, section.validation))
    if section.validation is not None:
        parts.append(validation_html(section.validation))
    if section.circuit_enrichment is not None:
        passing = measured_genes(section.validation)
        measured = passing is not None and len(passing) > 0
        among = (f"the genes whose knockout lowers P(cell type) beyond a random gene at the same rank, in "
                 f"{knockout_cells(section.validation)} cells " + _tag("measured")) if measured else \
            ("the circuit's input genes " + _tag("attributed"))
        parts.append(f"<h3>Circuit enrichment: gene sets among {among}</h3>"
                     + (headlines_html(section.circuit_enrichment, list_name=None) if len(section.circuit_enrichment) else
                        '<p class="muted">' + ("Not headlined: too few cells of this type here (see above)."
                                               if section.small_group else "No set passed for these genes.")
                        + '</p>'))
    for caption, frame in section.tables.items():
        parts.append(f"<h3>{_e(caption)}</h3>" + table_html(frame, index=False))
    if section.cards is not None:
        parts.append("<h3>The circuit's features</h3>" + cards_html(section.cards))
    if section.features is not None:
        parts.append(f"<h3>Feature analysis: the features most specific to {_e(section.name)}</h3>"
                     + table_html(section.features))
    for caption, figure in section.figures.items():
        parts.append(_figure(figure, caption))
    if section.headlines is not None:
        parts.append("<h3>Feature enrichment: gene sets of these features</h3>"
                     + (headlines_html(section.headlines) if len(section.headlines) else
                        '<p class="muted">No set passed for these features (see the result above).</p>'))
    elif section.enrichment is not None:
        parts.append("<h3>Feature enrichment: gene sets of these features</h3>"
                     + table_html(section.enrichment, index=False))
    parts.append("</section>")
    return "".join(parts)


def render_html(content: ReportContent) -> str:
    """The report as one HTML string."""
    from .. import genesets

    nav = "".join(f'<a href="#{_anchor(s.name)}">{_e(s.name)}</a>' for s in content.cell_types)
    body = [f"<h1>{_e(content.title)}</h1>",
            f'<p class="muted">Model: {_e(content.model or "not stated")}. Made '
            f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with sctranscoder '
            f'{_e(package_versions(["sctranscoder"])["sctranscoder"])}.</p>',
            '<div id="page-errors" role="alert" hidden></div>']
    if content.summary:
        body.append(f'<p class="lead">{_e(content.summary)}</p>')
    if nav:
        body.append(f"<nav><strong>Cell types:</strong> {nav} <a href='#methods'>Methods</a></nav>")
    if content.quality is not None:
        body.append("<h2>Model and transcoder quality</h2>"
                    "<p>How faithfully the transcoders stand in for the model's MLPs, on held-out cells: one layer "
                    "replaced at a time, and every layer at once.</p>" + quality_html(content.quality))
    for title, text in content.notes.items():
        body.append(f'<p class="note"><strong>{_e(title)}</strong> {_e(text)}</p>')
    for caption, figure in content.figures.items():
        body.append(_figure(figure, caption))
    for caption, frame in content.tables.items():
        text = content.table_texts.get(caption)
        body.append(f"<h3>{_e(caption)}</h3>" + (f"<p>{_e(text)}</p>" if text else "") + table_html(frame, index=False))
    body.extend(_section_html(s) for s in content.cell_types)
    body.append(shared_genes_html(content.cell_types))
    body.append('<h2 id="methods">Methods</h2>')
    body.append('<p>The terms used here (transcoder, feature, circuit, FVU, L0, loss recovered, log-odds, replacement '
                'and completeness scores, knockout) are explained in the <a href="#glossary">glossary</a> at the end '
                "of this page (also the glossary of the sctranscoder documentation).</p>")
    body.extend(f"<p>{_e(p)}</p>" for p in content.methods)
    if content.parameters:
        frame = pd.DataFrame({"parameter": list(content.parameters),
                              "value": [_format(v)[0] for v in content.parameters.values()]})
        body.append("<h3>Parameters</h3>" + table_html(frame, index=False))
    versions = package_versions(content.packages)
    body.append("<h3>Software</h3>" + table_html(pd.DataFrame({"package": list(versions),
                                                                "version": list(versions.values())}), index=False))
    names = content.gene_set_libraries
    body.append("<h3>Gene-set sources</h3>" + table_html(
        _gene_set_sources(list(genesets.libraries().index) if names is None else names), index=False))
    body.append(glossary_html())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(content.title)}</title><style>{CSS}{VIEW_CSS}{READABLE_CSS}</style><script>{JS}{VIEW_JS}</script></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_html(path, content: ReportContent | None = None, **fields) -> Path:
    """Write a report as ONE self-contained HTML file (figures embedded, no external files or URLs), atomically.

    Parameters
    ----------
    path
        Where to write (``.html``).
    content
        A :class:`ReportContent`; or give its fields as keyword arguments
        (``quality=``, ``cell_types=``, ``parameters=``, ...).

    Returns
    -------
    The path written.
    """
    if content is None:
        content = ReportContent(**fields)
    elif fields:
        raise TypeError("Pass a ReportContent or its fields as keywords, not both.")
    path = Path(path)
    page = render_html(content)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
