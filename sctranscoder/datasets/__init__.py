"""Bundled data sets (no network)."""

from ._pbmc import pbmc68k_reduced
from ._simulate import simulated

__all__ = ["pbmc68k_reduced", "simulated"]
