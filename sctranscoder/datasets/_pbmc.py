"""The PBMC data set that scanpy ships inside its wheel."""

from __future__ import annotations


def pbmc68k_reduced():
    """700 PBMCs x 765 genes from 10x Genomics' 68k PBMC data, as shipped by scanpy.

    Loaded from scanpy's package data, so no network is needed. ``.raw`` holds
    log-normalized expression (``.X`` is scaled and has negative values), and
    ``obs`` has ``bulk_labels`` (10 FACS-sorted cell types) and ``louvain``.

    Returns
    -------
    A fresh :class:`anndata.AnnData` each call.
    """
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()
