"""The readable circuit (supernodes, the share they carry, and steering with them) on disk, so `report` shows what
the run built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from ..report._steering_matrix import every_pair_matrix, matrix_sentence

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


MATRIX = "steering_matrix.csv"


def write_steering_matrix(results: dict, circuits: Path) -> None:
    """Where types were steered into more than one other type (``--steer-into all``), every pair at every dose
    (:func:`sctranscoder.tl.steering_matrix`, for ``report`` to show) and every steered cell of every pair
    (``steering_pairs.csv``, with ``to_type`` and ``from_type``)."""
    matrix = every_pair_matrix(results)
    if matrix is None:
        return
    folder = circuits / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / MATRIX) as tmp:
        matrix.to_csv(tmp, index=False)
    cells = [table.assign(to_type=result.cell_type, from_type=into) for result in results.values()
             for into, table in (getattr(result, "steering_into", None) or {}).items() if len(table)]
    if cells:
        with atomic_path(folder / "steering_pairs.csv") as tmp:
            pd.concat(cells, ignore_index=True).to_csv(tmp, index=False)


def read_steering_matrix(circuits: Path) -> pd.DataFrame | None:
    """What :func:`write_steering_matrix` wrote, or ``None``."""
    path = circuits / FOLDER / MATRIX
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else None  # labels as written, "" kept


def steering_matrix_line(results: dict, circuits: Path) -> str:
    """The summary's line on steering between every pair of types ("" where each type was steered into one)."""
    matrix = every_pair_matrix(results)
    if matrix is None:
        return ""
    return (f"steering between every pair of traced types: {matrix_sentence(matrix)} "
            f"(table: {circuits / FOLDER / MATRIX})")
