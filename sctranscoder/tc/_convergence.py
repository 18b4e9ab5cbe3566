"""Whether a finished training run converged: reconstruction and dead features at its end, and what to change
when they fall short."""

from __future__ import annotations

from ._evaluate import evaluate

MAX_FVU = 0.1
"""Above this FVU at the end of training, a transcoder is reported as not converged."""
MAX_DEAD = 0.2
"""Above this fraction of dead features at the end of training, likewise."""
FINAL_ROWS = 16_384
"""Rows of the last training batches kept to measure the final FVU on (at most a tenth of the batches, at
least one)."""


def final_quality(transcoder, last_batches, tokens_trained: int) -> dict:
    """FVU over the last training batches (in inference mode, after the last update) and the dead fraction.

    The rows were trained on, so the FVU is a lower bound of the held-out one. A
    feature counts as dead when it has not fired in the last ``dead_window`` tokens,
    or at all when training was shorter than that.
    """
    metrics = evaluate(transcoder, last_batches)
    window = max(1, min(transcoder.cfg.dead_window, tokens_trained))
    dead = float((transcoder.tokens_since_fired >= window).float().mean())
    return {"fvu": metrics["fvu"], "l0": metrics["l0"], "dead_fraction": dead, "n_tokens": metrics["n_tokens"],
            "measured_on": "last training batches"}


def advice(quality: dict, cfg, layer: int, steps: int, automatic: tuple = ()) -> str | None:
    """A warning naming what fell short and what to change, or None when training converged.

    ``cfg`` is the resolved config; ``automatic`` names the settings its rules filled in.
    """
    problems, changes = [], []
    lr = cfg.learning_rate
    high_fvu, many_dead = quality["fvu"] > MAX_FVU, quality["dead_fraction"] > MAX_DEAD
    if high_fvu:
        problems.append(f"FVU {quality['fvu']:.3f} > {MAX_FVU} on its last {quality['n_tokens']:,} training tokens "
                        "(held-out FVU is usually higher)")
        if "n_tokens" in automatic:
            changes.append(f"raise auto_steps to {2 * cfg.auto_steps} (or set n_tokens)")
        elif cfg.n_tokens < cfg.auto_steps * cfg.batch_size:
            changes.append(f"raise n_tokens to at least {cfg.auto_steps * cfg.batch_size:,} (n_tokens=None trains "
                           f"{cfg.auto_steps} steps)")
        else:
            changes.append(f"raise n_tokens to {2 * cfg.n_tokens:,}")
    if many_dead:
        problems.append(f"{quality['dead_fraction']:.0%} of features dead (> {MAX_DEAD:.0%})")
        if cfg.revival == "none":
            changes.append("use revival='auxk' (or 'resample')")
    if high_fvu or (many_dead and cfg.revival != "none"):
        changes.append(f"lower learning_rate to {lr / 2:.2g}" + (" or use revival='resample'" if many_dead and
                                                                  cfg.revival == "auxk" else ""))
    if not problems:
        return None
    return (f"The transcoder of layer {layer} may not have converged after {steps} steps of {cfg.batch_size} tokens "
            f"(learning_rate {lr:.2g}): {'; '.join(problems)}. To fix it: {'; '.join(changes)}.")
