"""The CLI's steering step: a traced type's supporting supernodes raised together, at rising doses, in the cells
of the next traced type, beside as many random features at each dose."""

from __future__ import annotations

import pandas as pd

# multiples of the supernodes' activation in A's traced cells: a dose-response, not one guess at a strength
STEER_SCALES = (1.0, 3.0, 10.0, 30.0)


def steering_pairs(types: list, into: str = "next") -> tuple[dict, list[str]]:
    """``{A: [B, ...]}``: the types whose cells each traced type A is steered into, the next traced type first
    (the last into the first) and, with ``into="all"``, every other traced type after it; and notes on why there
    is nothing to steer (fewer than two types)."""
    if into not in ("next", "all"):
        raise ValueError(f"into={into!r}: 'next' (each type into the next traced type's cells) or 'all' (into "
                         "every other traced type's).")
    if len(types) < 2:
        return {}, [f"Steering skipped: it raises one cell type's supernodes in another type's cells, and only "
                    f"{types[0] if types else 'no type'} was traced; trace two or more with --cell-types or "
                    "--n-largest (--steer-cells 0 turns steering off)."]
    n = len(types)
    return {t: [types[(i + k) % n] for k in range(1, n if into == "all" else 2)] for i, t in enumerate(types)}, []


def steer_type(adata, model, transcoders, circuit, into: str, n_cells: int, label_key: str,
               scales=STEER_SCALES) -> tuple[pd.DataFrame | None, str]:
    """Raise ``circuit``'s supporting supernodes (those whose switch-off lowers its call) together in ``n_cells``
    cells of ``into``, at each of ``scales``, with the random-feature control. Returns the table (every dose, a
    ``scale`` column), or where it was skipped an empty one that says why (``None`` without supernodes), and a
    note on why it was skipped ("" when it ran)."""
    import sctranscoder as sct
    from sctranscoder.tl._steer import supporting_supernodes

    cell_type, table = circuit.cell_type, circuit.supernodes
    if table is None or not len(table):
        return None, (f"Steering skipped for {cell_type}: its circuit has no supernodes to raise (they are built "
                      "from a circuit's features with --method complete).")
    if not supporting_supernodes(table):
        note = (f"Steering skipped for {cell_type}: none of its supernodes lowers its call when switched off "
                f"(measured drops {table.measured_effect.max():+.2f} at most), so none is evidence to raise in "
                f"{into} cells.")
        return skipped(note, cell_type, into), note  # the report says so too
    return sct.tl.steer_supernode(adata, model, transcoders, circuit, into, supernode="supporting", scale=scales,
                                  n_cells=n_cells, label_key=label_key), ""


def skipped(note: str, cell_type: str, into: str) -> pd.DataFrame:
    """A steering table with no rows, its attrs saying why (what the report shows in place of the result)."""
    table = pd.DataFrame(columns=["cell", "scale", "call_before", "call_after", "moved", "moved_control"])
    table.attrs.update(skipped=note, to_type=cell_type, from_type=into)
    return table
