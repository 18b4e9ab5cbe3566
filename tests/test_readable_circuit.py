"""The report's readable circuit: genes -> named supernodes -> call, with share, agreement and controls."""
import pandas as pd
import pytest

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


def _steering(moved, moved_control, already=0):
    n = len(moved)
    before = ["Dendritic"] * already + ["CD14+ Monocyte"] * (n - already)
    frame = pd.DataFrame({"cell": [f"c{i}" for i in range(n)], "call_before": before,
                          "call_after": ["Dendritic" if m else b for m, b in zip(moved, before)],
                          "p_before": [0.05] * n, "p_after": [0.5 if m else 0.09 for m in moved],
                          "n_changes": [4] * n, "call_after_control": ["Dendritic" if m else b for m, b in
                                                                        zip(moved_control, before)],
                          "p_after_control": [0.07] * n, "n_changes_control": [4] * n,
                          "moved": moved, "moved_control": moved_control})
    frame.attrs.update(supernode="S1", name="MHC class II", from_type="CD14+ Monocyte", to_type="Dendritic",
                       scale=1.0, features=["L1/F3", "L2/F9"], control_features=["L1/F40", "L2/F2"],
                       fraction_moved=sum(moved) / n, fraction_moved_control=sum(moved_control) / n)
    return frame


def test_steering_is_one_plain_line_with_its_control():
    from sctranscoder.report._steering import steering_sentence

    line = steering_sentence(_steering([True, True, False], [False, True, False]))
    assert line == ("Steering: raising 'S1 MHC class II' (this type's strongest supernode, 2 features) in 3 CD14+ "
                    "Monocyte cells moved the call to Dendritic in 2 of 3 (mean P(Dendritic) 0.05 -> 0.36); raising "
                    "as many random features of the same layers at the same places moved it in 1 of 3 (mean "
                    "P(Dendritic) -> 0.07).")
    nothing = steering_sentence(_steering([False, False], [False, False]))
    assert "did not move the call to Dendritic in any of them" in nothing and nothing.endswith(
        "did not move it either (mean P(Dendritic) -> 0.07).")
    one = steering_sentence(_steering([False], [True]))
    assert "in 1 CD14+ Monocyte cell did not move the call to Dendritic (mean" in one and "moved it in 1 of 1" in one
    assert "(1 of them already called Dendritic)" in steering_sentence(_steering([False, True], [False, False], 1))
    assert steering_sentence(None) == "" and steering_sentence(_steering([True], [False]).iloc[0:0]) == ""
    # a "strongest" supernode that does not lower the call when switched off is said to be no evidence
    weak = _steering([False], [False])
    weak.attrs["measured_effect"] = -0.01
    assert "it did not lower the call (measured drop -0.01), so no supernode here is evidence" in steering_sentence(weak)
    assert "did not lower" not in line
    # no column names reach the reader
    assert not any(name in line for name in ("moved_control", "p_after", "call_before", "n_changes"))


def test_the_readable_circuit_ends_with_the_steering_line():
    section = CellTypeSection(name="Dendritic", supernodes=TABLE, steering=_steering([True], [False]))
    page = _section_html(section)
    assert page.count('<p class="steering">Steering: raising &#x27;S1 MHC class II&#x27;') == 1
    assert page.index("The circuit in one picture") < page.index("Steering: raising")
    assert "Steering" not in readable_circuit_html("Dendritic", TABLE)


def test_steering_is_read_back_with_its_attrs(tmp_path):
    from types import SimpleNamespace

    from sctranscoder.cli._readable_io import read_steering, write_steering

    frame = _steering([True, False], [False, False])
    write_steering(SimpleNamespace(steering=frame), tmp_path, "Dendritic")
    back = read_steering(tmp_path, "Dendritic")
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == frame.attrs
    assert read_steering(tmp_path, "CD14+_Monocyte") is None
    write_steering(SimpleNamespace(steering=None), tmp_path, "none")
    assert not list(tmp_path.glob("*/none_*"))


def test_skipped_steering_says_why_in_the_section_and_after_a_round_trip(tmp_path):
    from types import SimpleNamespace

    from sctranscoder.cli._readable_io import read_steering, write_steering
    from sctranscoder.cli._steering import skipped

    note = "Steering skipped for Dendritic: none of its supernodes lowers its call when switched off."
    write_steering(SimpleNamespace(steering=skipped(note, "Dendritic", "CD14+ Monocyte")), tmp_path, "Dendritic")
    back = read_steering(tmp_path, "Dendritic")
    assert len(back) == 0 and back.attrs["skipped"] == note
    page = _section_html(CellTypeSection(name="Dendritic", supernodes=TABLE, steering=back))
    assert page.count(f'<p class="steering">{note}</p>') == 1


def test_steering_at_several_doses_is_one_line_with_each_dose_beside_its_control():
    from sctranscoder.report._steering import steering_sentence

    frames = []
    for scale, moved, control in ((1.0, [False, False], [False, False]), (10.0, [True, True], [False, True])):
        frame = _steering(moved, control).assign(scale=scale)
        frame.attrs.update(_steering(moved, control).attrs, scale=scale, supernode="S1, S3", selection="supporting",
                           name="MHC class II; Interferon gamma signaling")
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)  # as steer_supernode(scale=(1, 10)) gives it
    table.attrs = {**frames[0].attrs, "scale": [1.0, 10.0], "fraction_moved": [0.0, 1.0],
                   "fraction_moved_control": [0.0, 0.5]}
    line = steering_sentence(table)
    assert line == ("Steering: raising this type's 2 supernodes that carry its call (those whose switch-off lowers "
                    "it: S1 MHC class II; S3 Interferon gamma signaling: 2 features) together in 2 CD14+ Monocyte "
                    "cells to 1 and 10 times their activation in this type's traced cells moved the call to "
                    "Dendritic in 0 and 2 of 2 (mean P(Dendritic) 0.05 -> 0.09 and 0.50); as many random features "
                    "of the same layers raised at the same places moved it in 0 and 1 of 2 (mean P(Dendritic) -> "
                    "0.07 and 0.07).")
    # random features that break the call without moving it to the target: said, dose by dose
    table.loc[(table.scale == 10.0) & ~table.moved_control, "call_after_control"] = "CD19+ B"
    assert steering_sentence(table).endswith("moved it in 0 and 1 of 2 (mean P(Dendritic) -> 0.07 and 0.07) and to "
                                             "another type in 0 and 1 of 2.")
    # supernodes that send calls to a third type (a cytotoxic program read as NK): said, with where most went
    table.loc[(table.scale == 10.0) & (table.cell == table.cell.iloc[-1]), "call_after"] = "CD56+ NK"
    table.loc[(table.scale == 10.0) & (table.cell == table.cell.iloc[-1]), "moved"] = False
    assert ("moved the call to Dendritic in 0 and 1 of 2 (mean P(Dendritic) 0.05 -> 0.09 and 0.50) and to another "
            "type in 0 and 1 of 2 (most to CD56+ NK); as many random features") in steering_sentence(table)
    # every supernode at one dose, as the API steers them: the words say which were raised and how
    single = frames[1].copy()
    single.attrs.update(selection="all")
    assert steering_sentence(single).startswith(
        "Steering: raising all 2 supernodes of this type (S1 MHC class II; S3 Interferon gamma signaling: 2 "
        "features) together in 2 CD14+ Monocyte cells to 10 times their activation in this type's traced cells "
        "moved the call to Dendritic in 2 of 2")


def test_steering_chooses_the_supernodes_that_carry_the_call():
    from sctranscoder.tl._steer import _chosen

    table = pd.DataFrame({"measured_effect": [0.4, 0.1, -0.2]}, index=pd.Index(["S2", "S1", "S3"], name="supernode"))
    assert _chosen(table, None) == ["S2"] and _chosen(table, "supporting") == ["S2", "S1"]
    assert _chosen(table, "all") == ["S2", "S1", "S3"] and _chosen(table, ["S3", "S1"]) == ["S3", "S1"]
    with pytest.raises(ValueError, match="none is evidence to raise"):
        _chosen(table.assign(measured_effect=-0.1), "supporting")
    with pytest.raises(ValueError, match="S9"):
        _chosen(table, ["S1", "S9"])
