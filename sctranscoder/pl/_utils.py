"""What every plot does with ``ax``, ``show`` and ``save``, as scanpy does."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def new_axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    return ax


def finish(ax, show: bool | None, save: str | Path | None):
    """Save and/or show; return the axes only when nothing was shown (scanpy's rule)."""
    if save:
        ax.figure.savefig(save, dpi=150, bbox_inches="tight")
    if show is None:
        show = not save and plt.isinteractive()
    if show:
        plt.show()
        return None
    return ax
