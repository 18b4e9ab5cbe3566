"""Expression against log rank: how much of the expression a cell sentence keeps."""

from __future__ import annotations

import numpy as np

from ..pp._inverse import FIT_KEY, rank_expression_points
from ._utils import finish, new_axes


def rank_expression(adata, *, n_cells: int = 256, seed: int = 0, key: str = FIT_KEY, ax=None, show=None, save=None):
    """Scatter of expression vs log10(1 + rank), with the fitted inverse-transform line.

    Parameters
    ----------
    adata
        AnnData on which :func:`sctranscoder.pp.cell_sentences` ran (and, for the
        line, :func:`sctranscoder.pp.fit_rank_expression`).
    n_cells
        Cells sampled for the scatter.
    seed
        Seed of the sample.
    key
        ``adata.uns`` key of the fit.
    ax, show, save
        As in scanpy: draw into ``ax``; show the figure; save it to this path.

    Returns
    -------
    The axes, unless the figure was shown.
    """
    x, y = rank_expression_points(adata, n_cells=n_cells, seed=seed)
    ax = new_axes(ax)
    ax.scatter(x, y, s=2, alpha=0.25, color="tab:blue", rasterized=True, label="genes")
    fit = adata.uns.get(key)
    if fit is not None:
        grid = np.linspace(0, x.max() if x.size else 1, 100)
        ax.plot(grid, fit["intercept"] + fit["slope"] * grid, color="tab:orange",
                label=f"fit: r$^2$ {fit['r_squared']:.2f}, Spearman {fit['spearman_r']:.2f}")
        ax.legend(frameon=False, fontsize="small")
    ax.set_xlabel("log10(1 + rank in cell sentence)")
    ax.set_ylabel("expression")
    ax.set_title("Expression vs rank")
    return finish(ax, show, save)
