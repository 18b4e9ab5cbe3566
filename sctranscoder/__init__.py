"""sctranscoder: transcoders and circuits for cell2sentence single-cell language models."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, genesets, get, harvest, models, pl, pp, report, tl

try:
    __version__ = version("sctranscoder")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["datasets", "genesets", "get", "harvest", "models", "pl", "pp", "report", "tc", "tl"]


def __getattr__(name):
    # the transcoder core needs torch at import; load it on first use, not with the package
    if name == "tc":
        import importlib

        return importlib.import_module(f"{__name__}.tc")
    raise AttributeError(f"module 'sctranscoder' has no attribute {name!r}")
