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


def table_html(frame: pd.DataFrame, *, index: bool = True, max_rows: int | None = 500, caption: str = "") -> str:
    """A sortable HTML table (click a header to sort; numeric columns sort as numbers)."""
    if frame is None or len(frame) == 0:
        return f'<p class="muted">{_e(caption + ": " if caption else "")}nothing to show.</p>'
    shown = frame.reset_index() if index and frame.index.name is not None else frame
    note = ""
    if max_rows is not None and len(shown) > max_rows:
        note = f'<p class="muted">First {max_rows:,} of {len(shown):,} rows.</p>'
        shown = shown.head(max_rows)
    numeric = [pd.api.types.is_numeric_dtype(shown[c]) and not pd.api.types.is_bool_dtype(shown[c])
               for c in shown.columns]
    number = ' data-type="number"'
    head = "".join(f"<th{number if n else ''}>{_e(c)}</th>" for c, n in zip(shown.columns, numeric))
    identifiers = [str(c) in IDENTIFIERS for c in shown.columns]
    rows = []
    for record in shown.itertuples(index=False, name=None):
        cells = []
        for value, is_number, identifier in zip(record, numeric, identifiers):
            text, sortable = _format(value, identifier)
            if is_number and sortable is not None:
                cells.append(f'<td class="num" data-value="{_e(sortable)}">{_e(text)}</td>')
            else:
                cells.append(f"<td>{_e(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    title = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="sortable">{title}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>{note}")


def _input_genes_frame(genes) -> pd.DataFrame:
    if isinstance(genes, pd.DataFrame):
        return genes
    if isinstance(genes, pd.Series):
        frame = genes.sort_values(ascending=False).rename("score").to_frame()
        frame.index.name = "gene"
        return frame.reset_index().assign(rank=lambda t: np.arange(1, len(t) + 1))[["rank", "gene", "score"]]
    return pd.DataFrame({"rank": np.arange(1, len(genes) + 1), "gene": [str(g) for g in genes]})


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


def _section_html(section) -> str:
    parts = [f'<section class="celltype" id="{_anchor(section.name)}"><h2>{_e(section.name)}</h2>']
    if section.n_cells is not None:
        parts.append(f'<p class="muted">{section.n_cells:,} cells</p>')
    if section.text:
        parts.append(f"<p>{_e(section.text)}</p>")
    if section.circuit_figure is not None:
        parts.append("<h3>Circuit</h3>" + _figure(section.circuit_figure, f"Circuit behind '{section.name}'"))
    if section.circuit_view is not None:
        parts.append(circuit_view_html(section.circuit_view))
    if section.input_genes is not None:
        parts.append("<h3>Circuit input genes</h3>" + table_html(_input_genes_frame(section.input_genes), index=False))
    if section.features is not None:
        parts.append("<h3>Top features</h3>" + table_html(section.features))
    for caption, figure in section.figures.items():
        parts.append(_figure(figure, caption))
    if section.enrichment is not None:
        parts.append("<h3>Enriched gene sets</h3>" + table_html(section.enrichment, index=False))
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
        body.append(f"<p>{_e(content.summary)}</p>")
    if nav:
        body.append(f"<nav><strong>Cell types:</strong> {nav} <a href='#methods'>Methods</a></nav>")
    if content.quality is not None:
        body.append("<h2>Model and transcoder quality</h2>"
                    "<p>Per layer and with every layer replaced at once (<code>all</code>), on held-out cells: "
                    "fraction of variance unexplained (FVU), active features per token (L0), and the cell-type "
                    "accuracy kept when the MLPs are replaced by the transcoders.</p>" + table_html(content.quality))
    for caption, figure in content.figures.items():
        body.append(_figure(figure, caption))
    for caption, frame in content.tables.items():
        body.append(f"<h3>{_e(caption)}</h3>" + table_html(frame, index=False))
    body.extend(_section_html(s) for s in content.cell_types)
    body.append('<h2 id="methods">Methods</h2>')
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
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(content.title)}</title><style>{CSS}{VIEW_CSS}</style><script>{JS}{VIEW_JS}</script></head>"
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
