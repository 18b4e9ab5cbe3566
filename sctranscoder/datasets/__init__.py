"""Bundled data sets (no network)."""

from ._pbmc import PBMC68K_MARKER_SETS, pbmc68k_reduced
from ._planted import STATE_PROGRAMS, planted
from ._simulate import simulated

__all__ = ["PBMC68K_MARKER_SETS", "STATE_PROGRAMS", "pbmc68k_reduced", "planted", "simulated"]
