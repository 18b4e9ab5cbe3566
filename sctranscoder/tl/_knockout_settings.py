"""How :func:`sctranscoder.tl.validate_circuit` knocks genes out and tests them against random knockouts."""

from __future__ import annotations

from dataclasses import dataclass

RANK_GENES = (None, "top", "sentence")


@dataclass(frozen=True)
class Knockouts:
    """Knockout settings of :func:`sctranscoder.tl.validate_circuit`.

    Parameters
    ----------
    rank
        ``None``: knock out only the checked genes (the top attributed and gradient genes). ``"top"``: the same
        genes, and rank them by their measured effect (``circuit.genes_by_knockout``). ``"sentence"``: knock out
        and rank every gene of the cells' sentences (one scoring pass per 64 genes and cell).
    cells
        Knock out in this many cells of the circuit's type: the validated traced cells first, then a seeded
        sample of the other cells with its label (default: the validated cells only), so the interval over
        cells means something.
    draws, max_fdr, min_cells, seed
        The rank-matched null, as in :func:`sctranscoder.tl.knockout_test`: random knockouts per gene and cell
        (0: no null, nothing marked as passing), the FDR a gene must pass at, the cells it must be in, the seed.
    """

    rank: str | None = None
    cells: int | None = None
    draws: int = 4
    max_fdr: float = 0.05
    min_cells: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.rank not in RANK_GENES:
            raise ValueError(f"Knockouts(rank={self.rank!r}) must be one of {RANK_GENES}.")
        if self.draws < 0 or self.draws == 1:
            raise ValueError(f"Knockouts(draws={self.draws}) must be 0 (no null) or at least 2.")
        if not 0 < self.max_fdr <= 1:
            raise ValueError(f"Knockouts(max_fdr={self.max_fdr}) must be in (0, 1].")
        if self.cells is not None and self.cells < 1:
            raise ValueError(f"Knockouts(cells={self.cells}) must be at least 1 (or None: the validated cells).")
