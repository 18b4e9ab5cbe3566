"""The CLI's circuits step: each cell type traced, validated by knockouts and steered, the types side by side in
worker processes where that is faster (see :mod:`sctranscoder._workers`).

A type's validation and its steering each need only its own traced circuit, so both start as soon as it is
traced, while other types are still being traced."""

from __future__ import annotations

import concurrent.futures as cf

from .._workers import Workers
from ._steering import steer_type, steering_pairs


def trace_type(adata, model, transcoders, cell_type: str, label_key: str, options: dict, progress: bool):
    import sctranscoder as sct

    return sct.tl.cell_type_circuit(adata, model, transcoders, cell_type, label_key=label_key, progress=progress,
                                    **options)


def validate_type(adata, model, transcoders, circuit, knockouts, n_cells, progress: bool):
    import sctranscoder as sct

    sct.tl.validate_circuit(adata, model, transcoders, circuit, knockouts=knockouts, n_cells=n_cells,
                            progress=progress)
    return circuit


def trace_options(args) -> dict:
    """:func:`sctranscoder.tl.cell_type_circuit`'s settings from the command line's."""
    return dict(n_cells=args.n_cells, method=getattr(args, "method", "complete"),
                target=getattr(args, "target", "logodds"),
                max_feature_nodes=getattr(args, "max_feature_nodes", 1024), max_nodes=args.max_nodes,
                node_threshold=args.node_threshold, edge_threshold=getattr(args, "edge_threshold", 0.98),
                min_feature_share=getattr(args, "min_feature_share", 0.8) or None)


def circuits_side_by_side(adata, model, transcoders, cell_types: list, args, label_key: str, progress: bool,
                          knockout_pool, workers: Workers) -> dict:
    """``{type: CellTypeCircuit}`` traced, validated and steered as the command line asks, every step submitted
    to ``workers`` as soon as what it needs is there."""
    import sctranscoder as sct

    validate_cells = getattr(args, "validate_cells", None)
    knockouts = sct.tl.Knockouts(rank=getattr(args, "knockout_genes", "sentence"),
                                 draws=getattr(args, "knockout_draws", 4), max_fdr=getattr(args, "knockout_fdr", 0.05),
                                 cells=getattr(args, "knockout_cells", None))
    steer_cells = getattr(args, "steer_cells", 8)
    into, notes = steering_pairs(cell_types, getattr(args, "steer_into", "next")) if steer_cells else ({}, [])
    options = trace_options(args)
    pending = {workers.submit(trace_type, adata, model, transcoders, t, label_key, options, progress): ("trace", t)
               for t in cell_types}
    traced, validated, steered = {}, {}, {}
    while pending:
        done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        for future in done:
            step, cell_type = pending.pop(future)
            result = future.result()
            if step == "trace":
                traced[cell_type] = result
                if validate_cells is None or validate_cells > 0:  # the measured gene ranking, the one to read genes from
                    pending[workers.submit(validate_type, knockout_pool, model, transcoders, result, knockouts,
                                           validate_cells, progress)] = ("validate", cell_type)
                for other in into.get(cell_type, []):  # its supernodes that carry its call raised in B's cells
                    pending[workers.submit(steer_type, adata, model, transcoders, result, other, steer_cells,
                                           label_key)] = ("steer", (cell_type, other))
            elif step == "validate":
                validated[cell_type] = result
            else:
                steered[cell_type] = result
    results = {}
    for cell_type in cell_types:  # in the order asked, each with its validation and steering
        results[cell_type] = circuit = validated.get(cell_type, traced[cell_type])
        for other in into.get(cell_type, []):
            table, note = steered[cell_type, other]
            if table is not None:
                circuit.steering_into[other] = table
            if other == into[cell_type][0]:  # the next type's: the one the type's readable circuit shows
                circuit.steering = table
                notes.append(note)  # a skip's reason is the same for every B: said once
    for note in filter(None, notes):
        print(note)
    return results
