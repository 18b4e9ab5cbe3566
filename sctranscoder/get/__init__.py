"""Read results back out of an AnnData (scanpy's ``sc.get`` shape)."""

from ._sentences import ranked_genes, sentences

__all__ = ["ranked_genes", "sentences"]
