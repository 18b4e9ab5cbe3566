"""The yardstick a trained C2S model is held to: a logistic regression on the same cells' expression."""

from __future__ import annotations

import warnings

import numpy as np

MAX_GAP = 0.10  # a model further than this below the regression is not trustworthy
MAX_FIT_CELLS = 20_000  # the regression is a yardstick; a sample of this many training cells is enough


def baseline_expression(adata, settings, genes=None):
    """Cells x genes matrix the regression reads: the matrix the sentences are built from (``settings``' layer /
    ``use_raw``), log-normalized when it holds counts, restricted to ``genes`` (names as in sentences)."""
    from scipy import sparse

    from ..pp._matrix import select_expression

    source = select_expression(adata, layer=settings.layer, use_raw=settings.use_raw,
                               gene_symbols=settings.gene_symbols, uppercase=settings.uppercase)
    matrix = sparse.csr_matrix(source.matrix, dtype=np.float64, copy=True)
    if matrix.nnz and np.all(matrix.data == np.round(matrix.data)):  # integer counts: normalize, as scanpy does
        totals = np.asarray(matrix.sum(axis=1)).ravel()
        matrix = sparse.diags(1e4 / np.maximum(totals, 1)) @ matrix
        matrix.data = np.log1p(matrix.data)
    if genes is not None:
        matrix = matrix[:, np.flatnonzero(np.isin(np.asarray(source.genes, dtype=str), list(genes)))]
    return matrix


def logistic_regression_accuracy(train_x, train_y, test_x, test_y, *, seed: int = 0) -> float:
    """Held-out accuracy of a multinomial logistic regression (L2, C=1) on genes scaled to unit variance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_y = np.asarray(train_y)
    if train_y.size > MAX_FIT_CELLS:
        keep = np.sort(np.random.default_rng(seed).choice(train_y.size, MAX_FIT_CELLS, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
    # with_mean=False keeps sparse matrices sparse; the intercept absorbs the means
    clf = make_pipeline(StandardScaler(with_mean=False), LogisticRegression(max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)  # convergence chatter; the accuracy is what is kept
        clf.fit(train_x, train_y)
    return float(clf.score(test_x, np.asarray(test_y)))


ADVICE = ["more cells per type", "more optimizer steps (min_steps=, epochs=)",
          "a validation split to choose the epoch (validation_size=0.15)", "dropout augmentation (augment=8)",
          "a smaller model (config={'hidden_size': 64, 'layers': 2})",
          "fine-tuning a pretrained C2S model (base_model=)"]


def compare_to_baseline(model_accuracy: float, baseline_accuracy: float, n_cells: int, advice=None) -> dict:
    """The record kept in ``sctranscoder.json``; warns when the model is far below the regression, advising
    ``advice`` (what the run did not already do; default :data:`ADVICE`)."""
    gap = baseline_accuracy - model_accuracy
    if gap > MAX_GAP:
        tips = list(ADVICE if advice is None else advice)
        tried = "; ".join(tips[:-1]) + ("; or " if len(tips) > 1 else "") + tips[-1] if tips else ""
        message = (
            f"The trained C2S model scores {model_accuracy:.3f} on its {n_cells} held-out cells, "
            f"{100 * gap:.0f} points below a logistic regression on the same cells' expression "
            f"({baseline_accuracy:.3f}). Do not trust its predictions as they are."
            + (f" Try: {tried}." if tried else "")
        )
        warnings.warn(message, UserWarning, stacklevel=7)  # at the call of train_c2s (through C2STrainer.run)
    return {"n_cells": int(n_cells), "c2s_accuracy": float(model_accuracy),
            "logistic_regression_accuracy": float(baseline_accuracy),
            "logistic_regression": "scikit-learn LogisticRegression(C=1, L2, lbfgs) on the non-held-out cells' "
                                   "log-normalized expression of the model's genes, scaled to unit variance",
            "below_baseline": bool(gap > MAX_GAP)}
