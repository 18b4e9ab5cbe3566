"""Which knockout genes the report may call measured: those whose effect passes their rank-matched null."""

from __future__ import annotations

import pandas as pd


def knockout_cells(validation: dict | None) -> int:
    """How many cells the knockouts ran in (older validations: the validated cells)."""
    validation = validation or {}
    return int(validation.get("n_cells_knockout", validation.get("n_cells", 0)) or 0)


def has_null(validation: dict | None) -> bool:
    """The validation ranked genes by knockout and set each against its rank-matched null."""
    measured = (validation or {}).get("genes_by_knockout")
    return isinstance(measured, pd.DataFrame) and "passes" in measured


def measured_genes(validation: dict | None) -> pd.DataFrame | None:
    """The knockout genes that pass their null, strongest effect first; ``None`` without a knockout ranking
    or without a null (an older run: nothing there can be called measured)."""
    if not has_null(validation):
        return None
    table = validation["genes_by_knockout"]
    return table[table.passes.astype(bool)].sort_values("effect", ascending=False, ignore_index=True)


def no_pass_sentence(validation: dict, label: str = "the call") -> str:
    """In words, that no gene passed (the validation's own message where it has one)."""
    return validation.get("message") or (
        f"No gene's knockout moved {label} more than knocking out a random gene at the same rank in these "
        f"{knockout_cells(validation)} cells.")
