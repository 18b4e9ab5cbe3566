"""Cell sentences as strings, built on demand from the stored rankings (read by :mod:`sctranscoder.pp`, which
owns their layout)."""

from ..pp._read import ranked_genes, sentences, stored_genes

__all__ = ["ranked_genes", "sentences", "stored_genes"]
