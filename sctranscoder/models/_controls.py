"""The untrained-model control: the same architecture and tokenizer with freshly initialised weights."""

from __future__ import annotations

from dataclasses import replace

from ._load import C2SModel


def reinitialized(model: C2SModel, *, seed: int = 0) -> C2SModel:
    """``model`` with every weight drawn anew by its architecture's own initialisation (same config, tokenizer,
    prompt settings and labels).

    What transcoder features of this model seem to mean comes from the architecture, the tokenizer and the
    cells' text alone: the baseline that features of the trained model have to beat (Heap et al. 2025 found
    SAEs on randomly initialised transformers score about as well as on trained ones on the usual metrics).
    """
    import torch
    from transformers import AutoModelForCausalLM

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        lm = AutoModelForCausalLM.from_config(model.model.config)
    finally:
        torch.random.set_rng_state(generator_state)  # the caller's random stream is left as it was
    lm.to(device=model.device, dtype=next(model.model.parameters()).dtype).eval()
    return replace(model, model=lm, name_or_path=f"{model.name_or_path} (re-initialised, seed {seed})",
                   metadata={**model.metadata, "control": f"re-initialised weights, seed {seed}"})
