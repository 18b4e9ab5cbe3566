"""Enrichment dotplot: terms x gene lists, dot size = overlap ratio (or -log10 p), colour = -log10 FDR."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._utils import finish


def _wrap(term: str, width: int, lines: int = 3) -> str:
    """The term on up to ``lines`` lines of ``width`` characters (cut with an ellipsis only beyond that)."""
    import textwrap

    parts = textwrap.wrap(term.replace("_", "_\u200b"), width) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1] + "…"
    return "\n".join(p.replace("\u200b", "") for p in parts)


def enrichment(df: pd.DataFrame, *, n_terms: int = 5, lists=None, size: str = "overlap_ratio",
               max_fdr: float | None = None, term_width: int = 50, cmap: str = "viridis_r", list_labels=None,
               xlabel: str | None = None, title: str = "Gene-set enrichment", term_names=None, ax=None, show=None,
               save=None):
    """Dotplot of an enrichment table (:func:`sctranscoder.genesets.enrich` or gseapy's ``res2d``).

    Parameters
    ----------
    df
        Enrichment rows with ``Term``, ``Overlap``, ``P-value``, ``Adjusted P-value`` and
        (optionally) ``List``; several libraries show as ``library: term``.
    n_terms
        Each list's best terms (by P-value) that make the rows.
    lists
        Lists (columns) to show, in order; default all, in table order.
    size
        ``"overlap_ratio"`` (shared genes / set genes in the background) or ``"-log10 p"``.
    max_fdr
        Only rows at or below this adjusted p-value.
    term_width
        Term names wrap at this many characters (up to three lines).
    list_labels, xlabel, title
        ``{list: label}`` for the columns (e.g. ``{"12": "12 (B cell)"}``), the x-axis title, the plot title.
    term_names
        A function giving each term's shown name (e.g. :func:`sctranscoder.tl.short_term`:
        ``REACTOME_COMPLEMENT_CASCADE`` -> ``Complement cascade``); default the terms as they are.
    ax, show, save
        As in scanpy.

    Returns
    -------
    The axes, unless the figure was shown.
    """
    import matplotlib.pyplot as plt

    if size not in ("overlap_ratio", "-log10 p"):
        raise ValueError(f"size={size!r} must be 'overlap_ratio' or '-log10 p'.")
    missing = {"Term", "Overlap", "P-value", "Adjusted P-value"} - set(df.columns)
    if missing:
        raise KeyError(f"The table lacks the columns {sorted(missing)}; pass sct.genesets.enrich's output.")
    table = df.copy()
    table["List"] = table["List"].astype(str) if "List" in table else "genes"
    if max_fdr is not None:
        table = table[table["Adjusted P-value"] <= max_fdr]
    order = list(pd.unique(table["List"])) if lists is None else [str(v) for v in lists]
    table = table[table["List"].isin(order)]
    if table.empty:
        raise ValueError("No enrichment rows to draw (after the FDR cut and the choice of lists).")
    several = "Gene_set" in table and table["Gene_set"].astype(str).nunique() > 1
    shown_terms = table["Term"].astype(str).map(term_names) if term_names is not None else table["Term"].astype(str)
    table["label"] = ((table["Gene_set"].astype(str) + ": ") if several else "") + shown_terms
    overlap = table["Overlap"].astype(str).str.split("/", expand=True).astype(float)
    table["overlap_ratio"] = overlap[0] / overlap[1]
    table["-log10 p"] = -np.log10(table["P-value"].clip(lower=1e-300))
    table["-log10 FDR"] = -np.log10(table["Adjusted P-value"].clip(lower=1e-300))
    best = table.sort_values("P-value").groupby("List", sort=False).head(n_terms)
    terms = list(pd.unique(best.sort_values("P-value")["label"]))[::-1]
    shown = table[table["label"].isin(terms)]
    x = shown["List"].map({name: i for i, name in enumerate(order)}).to_numpy()
    y = shown["label"].map({t: i for i, t in enumerate(terms)}).to_numpy()
    values = shown[size].to_numpy()
    scale = 250 / max(float(np.nanmax(values)), 1e-12)
    if ax is None:
        lines = sum(_wrap(t, term_width).count("\n") + 1 for t in terms)
        _, ax = plt.subplots(figsize=(1.2 + 0.45 * len(order) + 0.09 * min(term_width, 60), 1.2 + 0.2 * lines
                                      + 0.12 * len(terms)))
    points = ax.scatter(x, y, s=values * scale, c=shown["-log10 FDR"], cmap=cmap, edgecolors="0.3", linewidths=0.4)
    names = [str((list_labels or {}).get(name, name)) for name in order]
    ax.set_xticks(range(len(order)), names, rotation=60, ha="right")
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_yticks(range(len(terms)), [_wrap(t, term_width) for t in terms], fontsize="small")
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylim(-0.6, len(terms) - 0.4)
    ax.grid(True, color="0.92", zorder=0)
    ax.set_axisbelow(True)
    ax.figure.colorbar(points, ax=ax, label="-log10 FDR", shrink=0.6)
    for fraction in (0.25, 0.5, 1.0):  # size legend
        v = float(np.nanmax(values)) * fraction
        ax.scatter([], [], s=v * scale, color="0.6", label=f"{v:.2g}")
    ax.legend(title=size.replace("_", " "), frameon=False, loc="upper left", bbox_to_anchor=(1.25, 1),
              labelspacing=1.2, fontsize="small")
    ax.set_title(title)
    return finish(ax, show, save)
