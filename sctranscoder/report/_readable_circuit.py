"""A cell type's circuit as a reader first meets it: genes -> named supernodes -> the call, in one picture,
with the share the supernodes carry, the intervention check, each name's control and steering with the strongest."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ._steering import count as _count
from ._steering import steering_sentence

SUPERNODE_COLUMNS = {
    "name": "supernode",
    "n_features": "features",
    "genes": "genes",
    "predicted_effect": "predicted drop in log-odds",
    "measured_effect": "measured drop (attention frozen)",
    "measured_effect_unfrozen": "measured drop (attention free)",
    "control_p": "name's control p",
}


def _e(text) -> str:
    return html.escape(str(text))


def _genes(value, n: int = 6) -> str:
    genes = list(value) if isinstance(value, (list, tuple, np.ndarray)) else str(value).replace(";", ",").split(",")
    genes = [str(g).strip() for g in genes if str(g).strip()]
    return ", ".join(genes[:n]) + (f" (+{len(genes) - n})" if len(genes) > n else "")


def agreement(table: pd.DataFrame) -> float | None:
    """Spearman correlation of predicted and measured supernode effects (None below 3 supernodes)."""
    from scipy.stats import spearmanr

    if not {"predicted_effect", "measured_effect"} <= set(table.columns) or len(table) < 3:
        return None
    rho = spearmanr(table.predicted_effect, table.measured_effect).statistic
    return None if np.isnan(rho) else float(rho)


def readable_circuit_html(cell_type: str, table: pd.DataFrame, share: float | None = None,
                          steering: pd.DataFrame | None = None) -> str:
    """The readable circuit of ``cell_type``: one row per supernode, drawn genes -> supernode -> call, and a line on
    ``steering`` (:func:`sctranscoder.tl.steer_supernode`'s table) where given."""
    if table is None or not len(table):
        return ""
    rows = []
    for record in table.to_dict("records"):
        effect = ""
        if "predicted_effect" in record and "measured_effect" in record:
            effect = (f"predicted {record['predicted_effect']:+.2f}, measured {record['measured_effect']:+.2f}"
                      " drop in the call's log-odds when switched off")
        control = ""
        if pd.notna(record.get("control_p")):
            verdict = ("beyond" if record["control_p"] < 0.05 else "no better than")
            control = (f"; its name: control p = {record['control_p']:.2g}, {verdict} random genes as highly "
                       "expressed in this type")
        rows.append(f'<div class="flow"><span class="genes">{_e(_genes(record.get("genes", "")))}</span>'
                    f'<span class="arrow">&rarr;</span><span class="supernode"><strong>{_e(record["name"])}'
                    f'</strong> ({_count(int(record.get("n_features", 0)), "feature")})</span>'
                    f'<span class="arrow">&rarr;</span><span class="call">{_e(cell_type)}</span>'
                    f'<span class="muted"> {_e(effect + control)}</span></div>')
    said = [f"{len(table)} supernodes (features grouped into modules and named by their genes)"]
    if share is not None and np.isfinite(share):
        said.append(f"together carry {share:.0%} of the call with every other feature switched off"
                    + (" (above 100%: the features switched off pushed against the call)" if share > 1 else ""))
    rho = agreement(table)
    if rho is not None:
        said.append(f"the graph's predicted effects agree with the measured ones at Spearman {rho:.2f}")
    steer = steering_sentence(steering)
    steer = f'<p class="steering">{_e(steer)}</p>' if steer else ""
    return ('<div class="readable"><h3>The circuit in one picture: genes &rarr; supernodes &rarr; call</h3>'
            f"<p>{_e('; '.join(said))}.</p>{''.join(rows)}{steer}</div>")


READABLE_CSS = """
.readable .flow { display: flex; flex-wrap: wrap; gap: .4em; align-items: baseline; margin: .25em 0; }
.readable .genes { font-family: monospace; }
.readable .supernode { background: #eef3fb; padding: 0 .4em; border-radius: 4px; }
.readable .call { font-weight: bold; }
.readable .arrow { color: #777; }
"""
