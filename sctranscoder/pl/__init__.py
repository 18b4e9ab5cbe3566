"""Plots (scanpy's ``sc.pl`` shape)."""

from ._rank_expression import rank_expression

__all__ = ["rank_expression"]
