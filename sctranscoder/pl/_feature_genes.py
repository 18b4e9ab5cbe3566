"""Each feature's top genes, as bars of their activity (one panel per feature)."""

from __future__ import annotations

import numpy as np

from ._utils import finish


def feature_genes(table, features=None, *, n_top: int = 10, ncols: int = 4, ax=None, show=None, save=None):
    """Horizontal bars of the top genes of each feature.

    Parameters
    ----------
    table
        The table of :func:`sctranscoder.tl.feature_genes` (plots draw what the tools computed); when
        it has ``top_label`` and ``auroc`` (``label_key`` given there), each panel's title names the
        label the feature is most specific to.
    features
        Features to draw (default: every row of ``table``).
    n_top
        Genes per panel.

    Returns the axes (one per feature), unless the figure was shown.
    """
    import matplotlib.pyplot as plt

    features = list(table.index) if features is None else [int(f) for f in np.atleast_1d(features)]
    if ax is not None:
        if len(features) != 1:
            raise ValueError("ax= draws one feature; pass a single feature or no ax.")
        axes = [ax]
    else:
        ncols = min(ncols, len(features))
        nrows = int(np.ceil(len(features) / ncols))
        fig, grid = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 0.25 * n_top * nrows + 0.8 * nrows),
                                 squeeze=False)
        axes = list(grid.ravel())
        for extra in axes[len(features):]:
            extra.set_visible(False)
        axes = axes[: len(features)]
        fig.tight_layout()
    for axis, feature in zip(axes, features):
        row = table.loc[feature]
        genes, scores = list(row.genes[:n_top])[::-1], list(row.gene_scores[:n_top])[::-1]
        axis.barh(range(len(genes)), scores, color="tab:purple")
        axis.set_yticks(range(len(genes)), genes, fontsize="small")
        axis.set_ylim(len(genes) - n_top - 0.5, len(genes) - 0.5)  # same bar height in every panel, best on top
        title = f"feature {feature}"
        if isinstance(row.get("top_label"), str):
            title += f"\n{row.top_label} (AUROC {row.auroc:.2f})"
        axis.set_title(title, fontsize="medium")
        axis.set_xlabel("mean activity per occurrence", fontsize="small")
    if len(axes) > 1:
        axes[0].figure.tight_layout()
    if save:
        axes[0].figure.savefig(save, dpi=150, bbox_inches="tight")
        save = None
    result = finish(axes[0], show, save)
    return None if result is None else axes
