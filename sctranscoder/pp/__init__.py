"""Preprocessing: expression to cell sentences, their inverse, prompts and exports."""

from ._sentences import cell_sentences

__all__ = ["cell_sentences"]
