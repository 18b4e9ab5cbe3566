"""sctranscoder: transcoders and circuits for cell2sentence single-cell language models."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, get, harvest, models, pl, pp, tl

try:
    __version__ = version("sctranscoder")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["datasets", "get", "harvest", "models", "pl", "pp", "tl"]
