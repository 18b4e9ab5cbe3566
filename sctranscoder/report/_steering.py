"""Steering in one plain sentence: a type's supernodes raised in another type's cells (at one scale or several),
beside as many random features raised at the same places."""

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
    Empty without a table; the reason where steering was skipped."""
    if steering is None:
        return ""
    if not len(steering):
        return str(steering.attrs.get("skipped", ""))
    several_doses = "scale" in steering and steering.scale.nunique() > 1
    if several_doses or steering.attrs.get("selection", "strongest") != "strongest":
        return _dose_sentence(steering)
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


def _series(values: list[str]) -> str:
    """``a, b and c``."""
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def _dose_sentence(steering: pd.DataFrame) -> str:
    """Supernodes chosen other than as the strongest, or raised at several scales; each scale beside its
    random-feature control."""
    info = steering.attrs
    target, source = str(info.get("to_type", "")), str(info.get("from_type", ""))
    groups = ([group for _, group in steering.groupby("scale", sort=True)] if "scale" in steering
              else [steering.assign(scale=float(info.get("scale", 1.0)))])
    n = len(groups[0])
    ids = [s.strip() for s in str(info.get("supernode", "")).split(",") if s.strip()]
    names = str(info.get("name", "")).split("; ")
    listed = "; ".join(f"{i} {name}" for i, name in zip(ids, names)) if len(names) == len(ids) else ", ".join(ids)
    features = info.get("features") or []
    size = f": {count(len(features), 'feature')}" if features else ""
    which = {"supporting": f"this type's {count(len(ids), 'supernode')} that carry its call (those whose "
                           f"switch-off lowers it: {listed}{size})",
             "all": f"all {count(len(ids), 'supernode')} of this type ({listed}{size})"}.get(
        info.get("selection"), f"this type's {count(len(ids), 'supernode')} {listed}{size.replace(':', ',')}")
    scales = _series([f"{g.scale.iloc[0]:g}" for g in groups])
    dose = "to their activation" if scales == "1" else f"to {scales} times their activation"
    moved = _series([str(int(g.moved.sum())) for g in groups])
    line = (f"Steering: raising {which} together in {count(n, f'{source} cell')} {dose} "
            f"in this type's traced cells moved the call to {target} in {moved} of {n} (mean P({target}) "
            f"{_p(steering.p_before.mean())} -> {_series([_p(g.p_after.mean()) for g in groups])})")
    before = int((groups[0].call_before.astype(str) == target).sum())
    if before:
        line += f" ({before} of them already called {target})"
    line += _elsewhere(groups, "call_after", target, n, where=True)  # e.g. a cytotoxic program read as NK
    if "moved_control" in steering:
        line += (f"; as many random features of the same layers raised at the same places moved it in "
                 f"{_series([str(int(g.moved_control.sum())) for g in groups])} of {n} (mean P({target}) -> "
                 f"{_series([_p(g.p_after_control.mean()) for g in groups])})")
        # the control is not inert: at high doses random features break the call, only not towards the target
        line += _elsewhere(groups, "call_after_control", target, n)
    return line + "."


def _elsewhere(groups, column: str, target: str, n: int, where: bool = False) -> str:
    """" and to another type in a, b and c of n" (with ``where``: "(most to X)") where calls left their own for a
    third type at some dose; "" where none did."""
    from ..tl._steer import third_type_calls

    third = [third_type_calls(g, target, column) for g in groups]
    if not any(len(t) for t in third):
        return ""
    most = f" (most to {pd.concat(third).mode().iloc[0]})" if where else ""
    return f" and to another type in {_series([str(len(t)) for t in third])} of {n}{most}"
