"""Steering every traced type into the next one's cells or into every other one's: which pairs run, how their
tables come back to the circuits, and the matrix the summary, the files and the report show."""

from types import SimpleNamespace

import pandas as pd
import pytest

import sctranscoder as sct
from sctranscoder._workers import Workers
from sctranscoder.cli import _circuit_run
from sctranscoder.cli._readable_io import read_steering_matrix, steering_matrix_line, write_steering_matrix
from sctranscoder.cli._steering import steering_pairs
from sctranscoder.report import ReportContent
from sctranscoder.report._steering_matrix import add_steering_matrix, every_pair_matrix, steering_matrix_table

TYPES = ["Mono", "B", "T"]


def test_pairs_are_the_next_type_or_every_other_one_next_first():
    assert steering_pairs(TYPES) == ({"Mono": ["B"], "B": ["T"], "T": ["Mono"]}, [])
    assert steering_pairs(TYPES, "all") == ({"Mono": ["B", "T"], "B": ["T", "Mono"], "T": ["Mono", "B"]}, [])
    pairs, notes = steering_pairs(["B"], "all")
    assert pairs == {} and "only B was traced" in notes[0]
    with pytest.raises(ValueError, match="'next'.*'all'"):
        steering_pairs(TYPES, "every")


def _table(target: str, into: str, moved: list[int], control: list[int], n: int = 4) -> pd.DataFrame:
    """A steer_supernode table: at each dose, the first ``moved[k]`` of ``n`` cells move to ``target`` (the last
    cell to a third type at the second dose); the control moves ``control[k]`` and sends the rest of its calls to
    a third type from the second dose on."""
    rows = []
    for k, scale in enumerate((1.0, 10.0)):
        for i in range(n):
            to_target, control_to_target = i < moved[k], i < control[k]
            after = target if to_target else ("DC" if k and i == n - 1 else into)
            rows.append({"cell": f"{into}{i}", "scale": scale, "call_before": into,
                         "call_after": after, "p_before": 0.1, "p_after": 0.5,
                         "call_after_control": target if control_to_target else ("NK" if k else into),
                         "p_after_control": 0.1, "moved": to_target, "moved_control": control_to_target})
    frame = pd.DataFrame(rows)
    frame.attrs.update(to_type=target, from_type=into)
    return frame


def test_every_pair_is_steered_and_comes_back_to_its_circuit(monkeypatch, tmp_path):
    calls = []

    def trace(adata, model, transcoders, cell_type, label_key, options, progress):
        return sct.tl.CellTypeCircuit(cell_type=cell_type, graph=None, genes=pd.DataFrame(), graphs=[], cells=[],
                                      target={})

    def steer(adata, model, transcoders, circuit, into, n_cells, label_key):
        calls.append((circuit.cell_type, into))
        if circuit.cell_type == "T":  # a type none of whose supernodes carries its call: skipped, said once
            return _table("T", into, [0, 0], [0, 0]).iloc[0:0], f"Steering skipped for T into {into}."
        moved = {"Mono": [1, 3], "B": [0, 2], "T": [1, 1]}[into]
        return _table(circuit.cell_type, into, moved, [0, 1]), ""

    monkeypatch.setattr(_circuit_run, "trace_type", trace)
    monkeypatch.setattr(_circuit_run, "steer_type", steer)
    args = SimpleNamespace(n_cells=1, max_nodes=8, node_threshold=None, validate_cells=0, steer_cells=4,
                           steer_into="all")
    with Workers(1) as workers:
        results = _circuit_run.circuits_side_by_side(None, None, {}, TYPES, args, "label", False, None, workers)
    assert sorted(calls) == sorted([("Mono", "B"), ("Mono", "T"), ("B", "T"), ("B", "Mono"), ("T", "Mono"),
                                    ("T", "B")])
    assert list(results["B"].steering_into) == ["T", "Mono"]
    assert results["B"].steering.attrs["from_type"] == "T"  # the next type's table is the section's
    assert not len(results["T"].steering)

    matrix = every_pair_matrix(results)
    assert len(matrix) == 8  # 4 pairs with rows (T's were skipped) x 2 doses
    b_in_mono = matrix[(matrix.to_type == "B") & (matrix.from_type == "Mono")].set_index("scale")
    assert b_in_mono.n_moved.tolist() == [1, 3] and b_in_mono.n_moved_control.tolist() == [0, 1]
    assert b_in_mono.n_control_elsewhere.tolist() == [0, 3]  # at the high dose the control breaks calls elsewhere
    table = steering_matrix_table(matrix)
    assert b_in_mono.n_elsewhere.tolist() == [0, 1] and b_in_mono.elsewhere.tolist() == ["", "DC"]
    assert table.loc["B", "Mono"] == "1/3 of 4 (x10: 1 to DC); control 0/1"
    assert table.loc["Mono", "T"] == "1/1 of 4 (x10: 1 to DC); control 0/1"
    # pairs where at least half the calls moved at some dose: B in Mono's cells (3 of 4), Mono in B's (2 of 4)
    line = steering_matrix_line(results, tmp_path)
    assert "In 2 of 4 pairs at least half" in line and "did so in 0 of 4" in line

    write_steering_matrix(results, tmp_path)
    back = read_steering_matrix(tmp_path)
    pd.testing.assert_frame_equal(back, matrix.reset_index(drop=True), check_dtype=False)
    cells = pd.read_csv(tmp_path / "readable" / "steering_pairs.csv")
    assert len(cells) == 4 * 2 * 4 and set(zip(cells.to_type, cells.from_type)) >= {("B", "Mono"), ("Mono", "T")}
    content = ReportContent()
    add_steering_matrix(content, back)
    (caption, shown), = content.tables.items()
    assert caption == "Steering between the traced types" and "supernodes raised (A)" in shown
    assert "In 2 of 4 pairs" in content.table_texts[caption]
    page = sct.report._html.render_html(content)  # the headline sits between the caption and the table
    assert page.index("<h3>Steering between") < page.index("In 2 of 4 pairs") < page.index("supernodes raised (A)")


def test_one_pair_per_type_has_no_matrix(tmp_path):
    circuit = SimpleNamespace(cell_type="B", steering_into={"T": _table("B", "T", [1, 1], [0, 0])})
    assert every_pair_matrix({"B": circuit}) is None and steering_matrix_line({"B": circuit}, tmp_path) == ""
    write_steering_matrix({"B": circuit}, tmp_path)
    assert read_steering_matrix(tmp_path) is None
