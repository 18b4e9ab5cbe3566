"""sctranscoder: transcoders and circuits for cell2sentence single-cell language models."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, genesets, get, harvest, models, pl, pp, prompt, report, tl

try:
    __version__ = version("sctranscoder")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["circuits", "datasets", "genesets", "get", "harvest", "llm", "models", "pl", "pp", "prompt", "report", "tc", "tl"]


def __getattr__(name):
    # the transcoder and circuit cores and the text path need torch at import; load them on first use
    if name in ("tc", "circuits", "llm"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'sctranscoder' has no attribute {name!r}")
