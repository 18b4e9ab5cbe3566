"""The small C2S model sctranscoder ships as package data (trained by data/make_default_model.py)."""

from __future__ import annotations

import os
from pathlib import Path

from ._load import C2SModel, load

# package data (pyproject.toml), so a wheel or a plain pip install carries it, not only a source checkout
DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "data" / "c2s_pbmc_default"


def default_model_path() -> Path:
    """Where the default model lives: ``$SCTRANSCODER_DEFAULT_MODEL``, else the package's ``data/c2s_pbmc_default``."""
    return Path(os.environ.get("SCTRANSCODER_DEFAULT_MODEL", DEFAULT_FOLDER))


def default(*, dtype=None, device=None, progress: bool = True) -> C2SModel:
    """Load the bundled default C2S model.

    A GPT-NeoX with parallel residual (like the C2S-Pythia models), with a
    byte-level BPE tokenizer learned on cell sentences, trained on C2S cell-type
    prediction prompts of pbmc68k_reduced (``bulk_labels``). Its held-out cells,
    labels and prompt settings are in ``model.metadata``; its evaluation is in
    ``evaluation.json`` beside it.

    Parameters
    ----------
    dtype, device
        As for :func:`load`.
    progress
        Show transformers' loading bar (on a terminal only); False prints nothing.
    """
    path = default_model_path()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The default model is not at {path}. It ships inside the package (sctranscoder/data/); "
            "an install without it is incomplete: reinstall sctranscoder, or rebuild the model from a source "
            "checkout with python data/make_default_model.py; SCTRANSCODER_DEFAULT_MODEL may point to another copy."
        )
    return load(path, dtype=dtype, device=device, progress=progress)
