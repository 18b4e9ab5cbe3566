"""Plots (scanpy's ``sc.pl`` shape)."""

from ._circuit import circuit
from ._rank_expression import rank_expression

__all__ = ["circuit", "rank_expression"]
