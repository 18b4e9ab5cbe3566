"""Steering between every pair of traced types (the CLI's ``--steer-into all``): one table, each type's supernodes
raised in each other type's cells at every dose beside as many random features, and a headline that counts the
pairs that moved beside the same count for the control."""

from __future__ import annotations

import pandas as pd

from ._steering import _series

HALF = 0.5  # a pair "moves" where at least half of the steered cells' calls move at some dose


def every_pair_matrix(circuits: dict) -> pd.DataFrame | None:
    """:func:`sctranscoder.tl.steering_matrix` of ``circuits`` where some type was steered into more than one
    other type (``--steer-into all``), else ``None`` (each type's one pair is in its own section)."""
    from ..tl import steering_matrix

    if not any(len(getattr(c, "steering_into", None) or {}) > 1 for c in circuits.values()):
        return None
    return steering_matrix(circuits)


def _counts(values) -> str:
    return "/".join(str(int(v)) for v in values)


def steering_matrix_table(matrix: pd.DataFrame) -> pd.DataFrame:
    """One row per raised type, one column per steered type: the calls moved at each dose ("0/4/8/8 of 8"),
    where the highest dose sent calls to a third type, how many and where ("x30: 8 to CD56+ NK"), and the
    control's moved calls ("control 0/0/0/0")."""
    cells: dict = {}
    for (target, source), rows in matrix.sort_values("scale").groupby(["to_type", "from_type"], sort=False):
        top = rows.iloc[-1]
        third = f" (x{top.scale:g}: {int(top.n_elsewhere)} to {top.elsewhere})" if top.n_elsewhere else ""
        cells.setdefault(target, {})[source] = (f"{_counts(rows.n_moved)} of {int(rows.n_cells.iloc[0])}{third}; "
                                                f"control {_counts(rows.n_moved_control)}")
    order = list(dict.fromkeys(list(matrix.to_type) + list(matrix.from_type)))
    frame = pd.DataFrame(cells).T.reindex(index=[t for t in order if t in cells],
                                          columns=[t for t in order if t in set(matrix.from_type)])
    frame = frame.fillna("")
    frame.index.name = "supernodes raised (A)"
    return frame


def pairs_moved(matrix: pd.DataFrame, column: str = "n_moved") -> tuple[int, int]:
    """(pairs where at least half the cells' calls moved to A at some dose, pairs steered)."""
    share = (matrix[column] / matrix.n_cells).groupby([matrix.to_type, matrix.from_type]).max()
    return int((share >= HALF).sum()), int(share.size)


def matrix_sentence(matrix: pd.DataFrame) -> str:
    """How many pairs moved (at least half the calls, at some dose), beside the control's count."""
    moved, n = pairs_moved(matrix)
    control, _ = pairs_moved(matrix, "n_moved_control")
    return (f"In {moved} of {n} pairs at least half of the calls moved to the raised type at some dose; as many "
            f"random features raised at the same places did so in {control} of {n}.")


def add_steering_matrix(content, matrix: pd.DataFrame | None) -> None:
    """The matrix in the report's overview: a headline (pairs moved, beside the control's count) over the table."""
    if matrix is None or not len(matrix):
        return
    doses = sorted(matrix.scale.unique())
    caption = "Steering between the traced types"
    content.tables[caption] = steering_matrix_table(matrix).reset_index()
    content.table_texts[caption] = (
        "Each type's supernodes that carry its call (rows, A) were raised together in the cells of every other "
        f"traced type (columns, B), at {_series([f'{s:g}' for s in doses])} times their activation in A's own "
        f"traced cells. {matrix_sentence(matrix)} Each entry gives the calls moved to A at each dose, of the cells "
        f"steered; how many the highest dose sent to a third type instead, and where most went; then the same "
        "count for the random features. A type with no row has no supernode that lowers its call when switched "
        "off, so none was raised.")
