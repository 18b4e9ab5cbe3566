"""What a report holds: plain dataclasses, so any part (a circuit figure, an input-gene table) can be
filled in by whoever has it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class CellTypeSection:
    """One cell type's part of the report."""

    name: str
    """The cell type (label)."""
    n_cells: int | None = None
    """Cells with this label."""
    text: str = ""
    """A short paragraph shown under the heading (plain text)."""
    circuit_figure: Any = None
    """The circuit behind this cell type's prediction: a matplotlib Figure, PNG bytes, or a PNG path."""
    circuit_view: Any = None
    """The same circuit, interactive: :func:`sctranscoder.report.circuit_view`'s data (shown instead of
    ``circuit_figure``: a circuit is drawn once)."""
    supernodes: pd.DataFrame | None = None
    """The readable circuit: one row per supernode (``name``, ``n_features``, ``genes``, ``predicted_effect``,
    ``measured_effect``, ...), as :func:`sctranscoder.tl.cell_type_circuit`'s ``result.supernodes``; shown
    first, as genes -> supernodes -> call."""
    supernode_share: float | None = None
    """Share of the call the supernodes carry together (``result.supernode_share``)."""
    steering: pd.DataFrame | None = None
    """Its supernodes raised (at one scale or several) in another type's cells, beside as many random features
    (:func:`sctranscoder.tl.steer_supernode`'s table with its attrs); one line under the readable circuit."""
    input_genes: Any = None
    """The circuit's ranked input genes: a DataFrame (one row per gene), a list, or a Series of scores."""
    validation: dict | None = None
    """The circuit checked against gene knockouts (:func:`sctranscoder.tl.validate_circuit`'s dict, optionally
    with ``genes_by_knockout``: genes ranked by knockout effect, ``passes`` marking those that beat their
    rank-matched null, the only ones shown as measured); shown beside the input genes."""
    features: pd.DataFrame | None = None
    """Its top features: one row each (e.g. feature, AUROC, Cohen's d, fraction of cells active, genes)."""
    enrichment: pd.DataFrame | None = None
    """Enriched gene sets of those features or of the circuit (gseapy-style columns)."""
    figures: dict[str, Any] = field(default_factory=dict)
    """More figures, by caption."""
    result: str = ""
    """The section's finding in one or two sentences, or that nothing passed and why (shown first)."""
    small_group: bool = False
    """Too few cells (fewer than 10) for its AUROCs and overlaps to mean much: marked, and nothing is headlined."""
    headlines: pd.DataFrame | None = None
    """Headline gene sets of its features (:func:`sctranscoder.tl.headline_sets`); shown instead of ``enrichment``."""
    circuit_enrichment: pd.DataFrame | None = None
    """Headline gene sets among the circuit's input genes (circuit enrichment, a different analysis)."""
    cards: pd.DataFrame | None = None
    """Feature cards (:func:`sctranscoder.tl.feature_cards`) of the features in its circuit."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """More tables, by caption (e.g. a knockout validation), shown after the circuit."""
    html: dict[str, str] = field(default_factory=dict)
    """More content as trusted HTML fragments, by heading (e.g. an interactive circuit view), shown after the
    circuit figure. Fragments must be self-contained (no external files or URLs)."""


@dataclass
class ReportContent:
    """A whole report; :func:`sctranscoder.report.write_html` renders it."""

    title: str = "sctranscoder report"
    model: str = ""
    """Which model the report is about (name or path)."""
    summary: str = ""
    """An opening paragraph (plain text)."""
    notes: dict[str, str] = field(default_factory=dict)
    """Short explanations shown under the overview (title: plain text)."""
    quality: pd.DataFrame | None = None
    """Transcoder quality, e.g. :func:`sctranscoder.tl.evaluate_transcoders`' table (FVU, L0, accuracy kept)."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Overview figures, by caption."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Overview tables, by caption."""
    table_texts: dict[str, str] = field(default_factory=dict)
    """A paragraph shown between an overview table's caption and the table (plain text), by caption."""
    cell_types: list[CellTypeSection] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    """Every setting that produced the numbers, by name (shown in the methods)."""
    methods: list[str] = field(default_factory=list)
    """Paragraphs of the methods section (plain text)."""
    gene_set_libraries: list[str] | None = None
    """Bundled libraries used (their sources are cited); None: every bundled library."""
    packages: tuple[str, ...] = ("sctranscoder", "torch", "transformers", "scanpy", "anndata", "gseapy", "numpy",
                                 "scipy", "pandas")
    """Packages whose versions the methods list."""

    def section(self, name: str) -> CellTypeSection:
        """The section of a cell type (created when missing), e.g. to add its circuit figure."""
        for section in self.cell_types:
            if section.name == name:
                return section
        self.cell_types.append(CellTypeSection(name))
        return self.cell_types[-1]
