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
    """The same circuit, interactive: :func:`sctranscoder.report.circuit_view`'s data."""
    input_genes: Any = None
    """The circuit's ranked input genes: a DataFrame (one row per gene), a list, or a Series of scores."""
    features: pd.DataFrame | None = None
    """Its top features: one row each (e.g. feature, AUROC, Cohen's d, fraction of cells active, genes)."""
    enrichment: pd.DataFrame | None = None
    """Enriched gene sets of those features or of the circuit (gseapy-style columns)."""
    figures: dict[str, Any] = field(default_factory=dict)
    """More figures, by caption."""


@dataclass
class ReportContent:
    """A whole report; :func:`sctranscoder.report.write_html` renders it."""

    title: str = "sctranscoder report"
    model: str = ""
    """Which model the report is about (name or path)."""
    summary: str = ""
    """An opening paragraph (plain text)."""
    quality: pd.DataFrame | None = None
    """Transcoder quality, e.g. :func:`sctranscoder.tl.evaluate_transcoders`' table (FVU, L0, accuracy kept)."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Overview figures, by caption."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Overview tables, by caption."""
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
