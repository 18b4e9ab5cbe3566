"""Cell-type prediction probabilities as a table."""

from __future__ import annotations

import pandas as pd


def prediction_probabilities(adata, key: str = "c2s_prediction") -> pd.DataFrame:
    """The cells x candidate labels probabilities :func:`sctranscoder.tl.predict_cell_types` wrote (score mode),
    indexed by cell, one column per candidate label."""
    stored = f"{key}_probabilities"
    if stored not in adata.obsm or "candidates" not in adata.uns.get(key, {}):
        raise KeyError(f"adata has no prediction probabilities (adata.obsm[{stored!r}] and "
                       f"adata.uns[{key!r}]['candidates']); run sct.tl.predict_cell_types(adata, model) "
                       "(mode='score') first, or pass the key_added it was given.")
    return pd.DataFrame(adata.obsm[stored], index=adata.obs_names, columns=list(adata.uns[key]["candidates"]))
