"""The report's readable circuit: genes -> named supernodes -> call, with share, agreement and controls."""

import pandas as pd

from sctranscoder.report import CellTypeSection
from sctranscoder.report._html import _section_html
from sctranscoder.report._readable_circuit import agreement, readable_circuit_html

TABLE = pd.DataFrame({"name": ["B cell receptor signalling", "MHC class II", "CD79A, MS4A1, BANK1"],
                      "n_features": [5, 3, 2], "genes": [["CD79A", "CD79B"], ["HLA-DRA", "CD74"], ["MS4A1"]],
                      "predicted_effect": [1.2, 0.4, 0.1], "measured_effect": [1.0, 0.5, 0.05],
                      "control_p": [0.001, 0.2, float("nan")]})


FIGURE = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                       "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def test_supernodes_read_as_genes_to_names_to_the_call():
    page = readable_circuit_html("CD19+ B", TABLE, share=0.83)
    assert page.count("&rarr;</span><span class=\"call\">CD19+ B</span>") == 3
    assert "<strong>B cell receptor signalling</strong> (5 features)" in page
    assert "carry 83% of the call" in page and "Spearman 1.00" in page
    assert "predicted +1.20, measured +1.00" in page and "control p = 0.001" in page
    assert readable_circuit_html("CD19+ B", TABLE.iloc[0:0]) == ""


def test_agreement_is_spearman_and_needs_three_supernodes():
    swapped = TABLE.assign(measured_effect=[0.05, 0.5, 1.0])
    assert agreement(swapped) == -1.0 and agreement(TABLE.head(2)) is None


def test_a_section_leads_with_the_readable_circuit_and_draws_its_circuit_once():
    section = CellTypeSection(name="CD19+ B", n_cells=30, result="Found.", supernodes=TABLE, supernode_share=0.8,
                              circuit_figure=FIGURE, circuit_view={"nodes": [], "links": [], "heaviest": 1.0, "message": "", "title": "B"})
    page = _section_html(section)
    assert page.index("Result.") < page.index("The circuit in one picture") < page.index("cv-key")
    assert "<h3>Circuit</h3>" not in page  # the static figure is not drawn beside the interactive view
    without_view = _section_html(CellTypeSection(name="CD19+ B", n_cells=30, circuit_figure=FIGURE))
    assert "<h3>Circuit</h3>" in without_view
