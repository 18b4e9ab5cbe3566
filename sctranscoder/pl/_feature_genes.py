"""Each feature's top genes, as bars of their activity (one panel per feature)."""

from __future__ import annotations

import numpy as np

from ._utils import finish


def feature_genes(adata, features, *, key: str = "features", n_top: int = 10, min_occurrences: int = 3,
                  ncols: int = 4, label_key: str | None = None, ax=None, show=None, save=None):
    """Horizontal bars of the top genes of each feature (activity per gene, see
    :func:`sctranscoder.tl.feature_genes`); with ``label_key`` the panel title names the label the
    feature is most specific to and its AUROC.

    Returns the axes (one per feature), unless the figure was shown.
    """
    import matplotlib.pyplot as plt

    from ..tl import feature_genes as table_of

    features = [int(f) for f in np.atleast_1d(features)]
    table = table_of(adata, features, key=key, n_top=n_top, min_occurrences=min_occurrences, label_key=label_key)
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
        genes, scores = row.genes[::-1], row.gene_scores[::-1]
        axis.barh(range(len(genes)), scores, color="tab:purple")
        axis.set_yticks(range(len(genes)), genes, fontsize="small")
        axis.set_ylim(len(genes) - n_top - 0.5, len(genes) - 0.5)  # same bar height in every panel, best on top
        title = f"feature {feature}"
        if label_key is not None and isinstance(row.get("top_label"), str):
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
