"""The CLI's steering step: each traced type's supporting supernodes raised together, at rising doses, in the cells
of the next traced type, beside as many random features at each dose."""

from __future__ import annotations

import pandas as pd

# multiples of the supernodes' activation in A's traced cells: a dose-response, not one guess at a strength
STEER_SCALES = (1.0, 3.0, 10.0, 30.0)


def steer_circuits(adata, model, transcoders, results: dict, n_cells: int, label_key: str,
                   scales=STEER_SCALES) -> list[str]:
    """Raise type A's supporting supernodes (those whose switch-off lowers A's call) together in ``n_cells`` cells
    of B, the type traced after A (the last into the first), at each of ``scales``, with the random-feature
    control; each result gets the table (every dose, a ``scale`` column) as ``steering``, or where it was
    skipped an empty one that says why. Returns sentences on the types that were skipped, and why."""
    import sctranscoder as sct
    from sctranscoder.tl._steer import supporting_supernodes

    if n_cells == 0:
        return []
    types = list(results)
    if len(types) < 2:
        return [f"Steering skipped: it raises one cell type's supernodes in another type's cells, and only "
                f"{types[0] if types else 'no type'} was traced; trace two or more with --cell-types or --n-largest "
                "(--steer-cells 0 turns steering off)."]
    notes = []
    for i, cell_type in enumerate(types):
        circuit, into = results[cell_type], types[(i + 1) % len(types)]
        table = circuit.supernodes
        if table is None or not len(table):
            notes.append(f"Steering skipped for {cell_type}: its circuit has no supernodes to raise (they are built "
                         "from a circuit's features with --method complete).")
            continue
        if not supporting_supernodes(table):
            notes.append(f"Steering skipped for {cell_type}: none of its supernodes lowers its call when switched "
                         f"off (measured drops {table.measured_effect.max():+.2f} at most), so none is evidence "
                         f"to raise in {into} cells.")
            circuit.steering = skipped(notes[-1], cell_type, into)  # the report says so too
            continue
        circuit.steering = sct.tl.steer_supernode(adata, model, transcoders, circuit, into, supernode="supporting",
                                                  scale=scales, n_cells=n_cells, label_key=label_key)
    return notes


def skipped(note: str, cell_type: str, into: str) -> pd.DataFrame:
    """A steering table with no rows, its attrs saying why (what the report shows in place of the result)."""
    table = pd.DataFrame(columns=["cell", "scale", "call_before", "call_after", "moved", "moved_control"])
    table.attrs.update(skipped=note, to_type=cell_type, from_type=into)
    return table
