"""Reports for biologists: one self-contained HTML file (figures embedded, sortable tables, methods)."""

from ._circuit_view import circuit_view, circuit_view_html
from ._content import CellTypeSection, ReportContent
from ._from_adata import cell_type_sections, from_adata
from ._html import figure_png, package_versions, render_html, table_html, write_html

__all__ = [
    "CellTypeSection",
    "ReportContent",
    "cell_type_sections",
    "circuit_view",
    "circuit_view_html",
    "figure_png",
    "from_adata",
    "package_versions",
    "render_html",
    "table_html",
    "write_html",
]
