"""Read results back out of an AnnData (scanpy's ``sc.get`` shape)."""

from ._predictions import prediction_probabilities
from ._sentences import ranked_genes, sentences

__all__ = ["prediction_probabilities", "ranked_genes", "sentences"]
