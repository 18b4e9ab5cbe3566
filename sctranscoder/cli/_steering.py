"""The CLI's steering step: each traced type's strongest supernode raised in the cells of the next traced type."""

from __future__ import annotations


def steer_circuits(adata, model, transcoders, results: dict, n_cells: int, label_key: str) -> list[str]:
    """Steer type A's strongest supernode into ``n_cells`` cells of B, the type traced after A (the last into the
    first), with the random-feature control; each result gets its table as ``steering``. Returns sentences on the
    pairs that were skipped, and why."""
    import sctranscoder as sct

    if n_cells == 0:
        return []
    types = list(results)
    if len(types) < 2:
        return [f"Steering skipped: it raises one cell type's supernode in another type's cells, and only "
                f"{types[0] if types else 'no type'} was traced; trace two or more with --cell-types or --n-largest "
                "(--steer-cells 0 turns steering off)."]
    notes = []
    for i, cell_type in enumerate(types):
        circuit = results[cell_type]
        if circuit.supernodes is None or not len(circuit.supernodes):
            notes.append(f"Steering skipped for {cell_type}: its circuit has no supernodes to raise (they are built "
                         "from a circuit's features with --method complete).")
            continue
        circuit.steering = sct.tl.steer_supernode(adata, model, transcoders, circuit, types[(i + 1) % len(types)],
                                                  n_cells=n_cells, label_key=label_key)
    return notes
