"""Plots (scanpy's ``sc.pl`` shape)."""

from ._circuit import circuit
from ._enrichment import enrichment
from ._feature_genes import feature_genes
from ._rank_expression import rank_expression

__all__ = ["circuit", "enrichment", "feature_genes", "rank_expression"]
