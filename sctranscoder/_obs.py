"""Checks on ``adata.obs`` columns that users name, with errors that list what exists."""

from __future__ import annotations

from ._hints import Arg, HintedKeyError


class MissingObsColumnError(HintedKeyError, ValueError):
    """A named ``obs`` column is missing (a ``KeyError`` and a ``ValueError``: callers caught either before)."""


def require_obs_column(adata, key, argument: str = "label_key", role: str = "the column holding cell types") -> None:
    """Raise :class:`MissingObsColumnError` unless ``key`` is a column of ``adata.obs``; it lists the columns there."""
    if key is not None and key in adata.obs:
        return
    columns = [str(c) for c in adata.obs.columns]
    shown = ", ".join(map(repr, columns[:20])) + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")
    found = "is not a column of adata.obs" if key is not None else "names no obs column"
    exists = f"adata.obs has these columns: {shown}." if columns else "adata.obs has no columns."
    raise MissingObsColumnError(f"{{arg}} {found}; pass {role}. " + exists.replace("{", "{{").replace("}", "}}"),
                                arg=Arg(argument, key))
