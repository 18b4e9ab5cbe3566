"""The one way an ``sct.tl`` function gets its cells' prompts: encode them here, or check and cut the encoding
the caller passed. Prompt settings passed next to an encoding apply when they are the encoding's, and are an
error otherwise: they never silently vanish."""

from __future__ import annotations

import numpy as np

from ._encode import EncodedCells, encode_cells
from ._settings import prompt_settings


def check_overrides(encoded: EncodedCells, overrides: dict) -> None:
    """Raise a ``ValueError`` when a prompt setting in ``overrides`` (``None``: not given) differs from the one
    ``encoded`` was made with, naming the conflict and the fix."""
    conflicts = {name: value for name, value in overrides.items()
                 if value is not None and getattr(encoded.settings, name) != value}
    if conflicts:
        said = ", ".join(f"{name}={value!r} (encoded: {getattr(encoded.settings, name)!r})"
                         for name, value in conflicts.items())
        passed = ", ".join(f"{name}={value!r}" for name, value in conflicts.items())
        raise ValueError(f"Prompt settings passed next to encoded differ from those the cells were encoded with: "
                         f"{said}. Drop them (the encoding's settings apply), or encode the cells with them: "
                         f"sct.tl.encode_cells(adata, model, {passed}).")


def resolve_settings(adata, model, encoded: EncodedCells | None = None, *, label_key: str | None = None,
                     progress: bool = True, **overrides):
    """The prompt settings of a call: ``encoded``'s (checked against ``adata`` and ``overrides``), else
    :func:`prompt_settings` (sentences made or checked; ``label_key`` only warns about unknown labels)."""
    if encoded is None:
        return prompt_settings(adata, model, label_key=label_key, progress=progress, **overrides)
    encoded.matches(adata)
    check_overrides(encoded, overrides)
    return encoded.settings


def resolve_cells(adata, model, encoded: EncodedCells | None = None, *, rows=None, label_key: str | None = None,
                  with_answers: bool = False, settings=None, progress: bool = True, **overrides) -> EncodedCells:
    """The encoded prompts of ``adata``'s cells at ``rows`` (positions or a mask; ``None``: every cell).

    Parameters
    ----------
    adata, model
        Cells and a :class:`sctranscoder.models.C2SModel`.
    encoded
        ``adata``'s cells already tokenized (checked to be them, then cut to ``rows``); ``None``: encode here.
    label_key
        ``adata.obs`` column of labels: warned about when the model cannot answer them; with ``with_answers``,
        the answers appended to the prompts (an ``encoded`` must carry that column's answers).
    settings
        Prompt settings already resolved (:func:`resolve_settings`), for callers that encode in passes.
    overrides
        Single prompt settings (``n_genes=``, ``organism=``, ...; ``None``: not given). With ``encoded``, a
        setting it was not made with is a ``ValueError``.
    """
    answers = label_key if with_answers else None
    if encoded is not None:
        encoded.matches(adata, answers)
        check_overrides(encoded, overrides)
        return encoded if rows is None else encoded.subset(rows)
    if settings is None:
        settings = prompt_settings(adata, model, label_key=label_key, progress=progress, **overrides)
    cells = adata if rows is None else adata[np.asarray(rows)]
    return encode_cells(cells, model, settings=settings, label_key=answers, progress=progress)
