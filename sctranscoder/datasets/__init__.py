"""Bundled data sets (no network)."""

from ._pbmc import pbmc68k_reduced

__all__ = ["pbmc68k_reduced"]
