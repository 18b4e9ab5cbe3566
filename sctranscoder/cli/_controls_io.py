"""The feature-controls table on disk, so `report` shows the controls the run measured."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .._atomic import atomic_path

TABLE = "feature_controls.csv"
ATTRS = "feature_controls.json"  # the table's settings (its FDR) and enriched features, which a CSV drops


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def write_controls(table: pd.DataFrame, run: Path) -> None:
    """:func:`sctranscoder.tl.feature_controls`' table as a CSV in ``run``, its ``attrs`` as JSON beside it."""
    with atomic_path(run / TABLE) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(run / ATTRS) as tmp:
        Path(tmp).write_text(json.dumps(table.attrs, indent=2, default=_plain))


def read_controls(run: Path) -> pd.DataFrame | None:
    """What :func:`write_controls` wrote, or ``None`` when ``run`` has no controls table.

    A table from before testable features were counted (no ``n_listable``) is refused: its shares are over a
    different denominator than today's.
    """
    path = run / TABLE
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    if "n_listable" not in table:
        raise ValueError(f"{path} has no n_listable column: it was written before sctranscoder counted testable "
                         "features (those with at least 3 genes on their list); run the quickstart again to "
                         "measure the controls.")
    table["note"] = table["note"].fillna("")  # an empty note reads back as NaN
    attrs = run / ATTRS
    if attrs.is_file():
        table.attrs.update(json.loads(attrs.read_text()))
    return table
