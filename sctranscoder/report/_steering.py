"""Steering in one plain sentence: a type's strongest supernode raised in another type's cells, beside as many
random features raised at the same places."""

from __future__ import annotations

import numpy as np
import pandas as pd


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _p(value: float) -> str:
    return "<0.01" if value < 0.005 else f"{value:.2f}"


def _moved(n_moved: int, n: int, target: str) -> str:
    if n_moved:
        return f"moved the call to {target} in {n_moved} of {n}"
    return f"did not move the call to {target}" + ("" if n == 1 else " in any of them")


def steering_sentence(steering: pd.DataFrame | None) -> str:
    """One line on :func:`sctranscoder.tl.steer_supernode`'s table (with its attrs), e.g. "Steering: raising 'S1
    <name>' ... moved the call to Dendritic in 2 of 8 ...; raising as many random features there moved 0 of 8."
    Empty without a table."""
    if steering is None or not len(steering):
        return ""
    info = steering.attrs
    target, source, n = str(info.get("to_type", "")), str(info.get("from_type", "")), len(steering)
    supernode = " ".join(str(info[k]) for k in ("supernode", "name") if info.get(k) not in (None, ""))
    features = info.get("features") or []
    size = f", {count(len(features), 'feature')}" if features else ""
    scale = float(info.get("scale", 1.0))
    level = "" if scale == 1 else f" to {scale:g} times its activation in this type's traced cells"
    before = (steering.call_before.astype(str) == target).sum()
    already = f" ({before} of them already called {target})" if before else ""
    effect = info.get("measured_effect")
    weak = ""
    if effect is not None and np.isfinite(effect) and effect <= 0:  # the "strongest" does not support the call
        weak = (f"; switched off in this type's cells it did not lower the call (measured drop {effect:+.2f}), so "
                "no supernode here is evidence to raise")
    line = (f"Steering: raising '{supernode}' (this type's strongest supernode{size}{weak}){level} in "
            f"{count(n, f'{source} cell')}{already} "
            + _moved(int(steering.moved.sum()), n, target)
            + f" (mean P({target}) {_p(steering.p_before.mean())} -> {_p(steering.p_after.mean())})")
    if "moved_control" in steering:
        moved = int(steering.moved_control.sum())
        control = (f"moved it in {moved} of {n}" if moved else
                   "did not move it" + (" either" if not steering.moved.any() else ""))
        line += (f"; raising as many random features of the same layers at the same places {control} "
                 f"(mean P({target}) -> {_p(steering.p_after_control.mean())})")
    return line + "."
