"""Bundled data sets (no network)."""

from ._pbmc import PBMC68K_MARKER_SETS, pbmc68k_reduced
from ._simulate import simulated

__all__ = ["PBMC68K_MARKER_SETS", "pbmc68k_reduced", "simulated"]
