"""The readable circuit (supernodes, the share they carry, and steering with them) on disk, so `report` shows what
the run built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path

FOLDER = "readable"  # beside circuits/*.json, which `report` and `enrich` read as merged graphs


def _joined(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return "; ".join(str(v) for v in value)
    return value


def write_supernodes(result, circuits: Path, safe: str) -> None:
    """``result.supernodes`` as a CSV (list cells joined by "; ") and the share it carries as JSON."""
    if result.supernodes is None:
        return
    folder = circuits / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{safe}_supernodes.csv") as tmp:
        result.supernodes.map(_joined).to_csv(tmp, index=False)
    share = result.supernode_share
    with atomic_path(folder / f"{safe}.json") as tmp:
        Path(tmp).write_text(json.dumps({"supernode_share": None if share is None else float(share)}))


def read_supernodes(circuits: Path, safe: str) -> tuple[pd.DataFrame | None, float | None]:
    """What :func:`write_supernodes` wrote, or ``(None, None)``."""
    table = circuits / FOLDER / f"{safe}_supernodes.csv"
    if not table.is_file():
        return None, None
    info = circuits / FOLDER / f"{safe}.json"
    share = json.loads(info.read_text()).get("supernode_share") if info.is_file() else None
    return pd.read_csv(table, keep_default_na=False, na_values=[""]), share


def write_steering(result, circuits: Path, safe: str) -> None:
    """``result.steering`` (one row per steered cell) as a CSV, and its attrs (the pair of types, the supernode,
    the features raised and the control's) as JSON."""
    steering = getattr(result, "steering", None)
    if steering is None:
        return
    folder = circuits / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{safe}_steering.csv") as tmp:
        steering.to_csv(tmp, index=False)
    with atomic_path(folder / f"{safe}_steering.json") as tmp:
        Path(tmp).write_text(json.dumps(steering.attrs, default=float))


def read_steering(circuits: Path, safe: str) -> pd.DataFrame | None:
    """What :func:`write_steering` wrote (its attrs back on the table), or ``None``."""
    table, info = circuits / FOLDER / f"{safe}_steering.csv", circuits / FOLDER / f"{safe}_steering.json"
    if not table.is_file() or not info.is_file():
        return None
    # labels are strings ("NA" included); the supernode's name is in the attrs
    frame = pd.read_csv(table, keep_default_na=False, na_values=[""],
                        dtype={"cell": str, "call_before": str, "call_after": str, "call_after_control": str})
    frame.attrs.update(json.loads(info.read_text()))
    return frame
