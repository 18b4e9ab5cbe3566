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


# each bulk_labels type's own marker set in the bundled immune_markers library (fixed before looking at results);
# reports use it to say why a type shows nothing (how many of its markers the model can see)
PBMC68K_MARKER_SETS = {
    "Dendritic": "CD1C+ dendritic cell", "CD14+ Monocyte": "CD14+ Monocyte", "CD19+ B": "B cell",
    "CD4+/CD25 T Reg": "T regulatory cell", "CD8+ Cytotoxic T": "CD8 TEM",
    "CD8+/CD45RA+ Naive Cytotoxic": "CD8 Naive T cell", "CD56+ NK": "Natural killer cell",
    "CD4+/CD45RO+ Memory": "CD4 TCM", "CD34+": "Hematopoietic stem cell",
    "CD4+/CD45RA+/CD25- Naive T": "CD4 Naive T cell"}
