"""Feature interventions in the replacement model: set or scale features, watch the target and the answers move.

The replacement model is the real network with each MLP replaced by its
transcoder's features plus that MLP's error on this input, held fixed (as in
:mod:`._faithfulness`); with nothing changed it reproduces the model. An
intervention sets or scales chosen features at chosen positions; later features
are recomputed from the changed residual stream. Attention patterns are either
free (recomputed, the default) or frozen at their values on the unchanged input.

Candidate answers (token sequences, e.g. a C2S model's cell-type labels) are
scored as :func:`sctranscoder.tl.predict_cell_types` scores them: each answer
follows the prompt in its own batch row and its tokens' log-probabilities are
summed, then softmaxed over the candidates.
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..harvest import MLPCapture, n_layers, replace_mlp
from ._frozen import eager_attention
from ._targets import Target

_SOFTMAX = {F.softmax, torch.softmax, torch.Tensor.softmax}


@dataclass(frozen=True)
class Intervention:
    """Set (``value``) or scale (``scale``) feature ``feature`` of layer ``layer``'s transcoder.

    ``position``: a token position of the prompt (negative counts from its end), or
    ``None`` for every position, answer tokens included (the feature switched off
    everywhere: the model without it).
    """

    layer: int
    feature: int
    position: int | None = None
    scale: float | None = None
    value: float | None = None

    def __post_init__(self):
        if (self.scale is None) == (self.value is None):
            raise ValueError(f"Intervention on L{self.layer}/F{self.feature}: give exactly one of scale= or value=.")

    @classmethod
    def off(cls, layer: int, feature: int, position: int | None = None) -> Intervention:
        return cls(int(layer), int(feature), position, value=0.0)


@dataclass
class InterventionResult:
    """The target and the candidates' log-probabilities, with and without the interventions."""

    target: float | None
    target_clean: float | None
    log_probs: np.ndarray | None
    """Per candidate: log-probability, normalized over the candidates (``None`` without candidates)."""
    log_probs_clean: np.ndarray | None

    @property
    def probabilities(self):
        return None if self.log_probs is None else np.exp(self.log_probs)

    @property
    def probabilities_clean(self):
        return None if self.log_probs_clean is None else np.exp(self.log_probs_clean)


class _Patterns(TorchFunctionMode):
    """Record every softmax output of a forward pass (the attention patterns), or replay them in order."""

    def __init__(self, recorded: list, replay: bool):
        super().__init__()
        self.recorded, self.replay, self.calls = recorded, replay, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func not in _SOFTMAX:
            return out
        if not self.replay:
            self.recorded.append(out.detach())
            return out
        if self.calls >= len(self.recorded) or self.recorded[self.calls].shape != out.shape:
            raise RuntimeError("Frozen attention: this pass computes other patterns than the one recorded.")
        frozen = self.recorded[self.calls].to(out.dtype)
        self.calls += 1
        return frozen


def _rows(input_ids, candidates) -> tuple[torch.Tensor, list]:
    """One batch row per candidate (the prompt, then that answer), right-padded; the prompt alone without them."""
    prompt = [int(t) for t in torch.as_tensor(input_ids).reshape(-1).tolist()]
    answers = [list(map(int, c)) for c in candidates] if candidates else [[]]
    width = len(prompt) + max(len(a) for a in answers)
    batch = torch.full((len(answers), width), prompt[0], dtype=torch.long)  # padding after a row is never read
    for row, answer in enumerate(answers):
        batch[row, : len(prompt) + len(answer)] = torch.tensor(prompt + answer)
    return batch, answers


def _masks(interventions, keep_only, n_tokens: int, batch: int, prompt_length: int, layers) -> tuple[dict, dict]:
    """Per layer: which features each ``keep_only`` leaves on (``None``: all), and the interventions."""
    kept = None
    if keep_only is not None:
        kept = {layer: torch.zeros(batch, n_tokens, tc.cfg.d_hidden, dtype=torch.bool) for layer, tc in layers.items()}
        for layer, feature, *where in keep_only:
            position = where[0] if where else None
            _check(layers, layer, feature)
            kept[layer][:, _position(position, prompt_length), feature] = True
    changes: dict = {}
    for change in interventions:
        _check(layers, change.layer, change.feature)
        changes.setdefault(change.layer, []).append(change)
    return kept, changes


def _check(layers, layer, feature) -> None:
    if layer not in layers:
        raise KeyError(f"No transcoder for layer {layer}; layers with one: {sorted(layers)}.")
    width = layers[layer].cfg.d_hidden
    if not 0 <= int(feature) < width:
        raise IndexError(f"Feature {feature} of layer {layer} is out of range 0..{width - 1}.")


def _position(position, prompt_length: int):
    if position is None:
        return slice(None)
    position = int(position)
    if not -prompt_length <= position < prompt_length:
        raise IndexError(f"Position {position} is outside the prompt's {prompt_length} tokens.")
    return position % prompt_length


def _replacement(tc, error, kept, changes, ablation, prompt_length):
    def run(x):
        if tc is None:
            return error.to(x.dtype)
        features = tc.encode(x.float())
        if kept is not None:
            off = ablation.to(features) if ablation is not None else features.new_zeros(())
            features = torch.where(kept, features, off)
        for change in changes:
            where = (slice(None), _position(change.position, prompt_length), int(change.feature))
            features[where] = change.value if change.value is not None else features[where] * change.scale
        return (tc.decode(features, x.float()) + error).to(x.dtype)
    return run


def _read(model, batch, target, prompt_length, answers, replacements=None, patterns=None):
    """One pass: the target at its prompt position, and each candidate answer's summed log-likelihood."""
    hidden = {}
    handle = model.get_output_embeddings().register_forward_pre_hook(lambda m, a: hidden.__setitem__("h", a[0]))
    try:
        with torch.no_grad(), ExitStack() as stack:
            if replacements is not None:
                stack.enter_context(replace_mlp(model, replacements))
            if patterns is not None:
                stack.enter_context(patterns)
            logits = model(batch, use_cache=False).logits
    finally:
        handle.remove()
    value = None
    if target is not None:
        head = model.get_output_embeddings()
        at = replace(target, position=target.position % prompt_length)
        value = float(at.read(hidden["h"][:1], head.weight, getattr(head, "bias", None))[0])
    scores = None
    if answers != [[]]:
        logp = torch.log_softmax(logits.float(), dim=-1)
        scores = np.array([float(sum(logp[row, prompt_length - 1 + j, token] for j, token in enumerate(answer)))
                           for row, answer in enumerate(answers)])
    return value, scores


def _normalized(scores):
    if scores is None:
        return None
    shifted = scores - scores.max()
    return shifted - np.log(np.exp(shifted).sum())


def intervene(model, transcoders: dict, input_ids, interventions=(), *, target: Target | None = None,
              candidates=None, freeze_attention: bool = False, keep_only=None, ablation=None) -> InterventionResult:
    """Run the replacement model on one input with features set or scaled, and read the target and the answers.

    Parameters
    ----------
    model, transcoders
        A causal LM and ``{layer: Transcoder}`` (a layer without one keeps its MLP output as on the clean input).
    input_ids
        One prompt, ``(tokens,)``.
    interventions
        :class:`Intervention` s (set or scale a feature at a position, or everywhere).
    target
        A logit or logit-difference :class:`Target`, read at its position in the prompt.
    candidates
        Answers to score after the prompt: token-id sequences (e.g. a label's tokens and EOS).
    freeze_attention
        Hold attention patterns at their values on the unchanged input (else they are recomputed).
    keep_only
        ``(layer, feature[, position])`` triples: every other feature is ablated first (to 0, or to ``ablation``),
        transcoder errors stay as they were.
    ablation
        ``{layer: (d_hidden,) tensor}``: the value ablated features take (e.g. their mean activation); default 0.

    Returns
    -------
    :class:`InterventionResult`: the target and the candidates' log-probabilities
    (normalized over the candidates), with the ablations and interventions and
    without any (``*_clean``); both come from the replacement model, so with
    nothing changed they are equal, and the clean ones equal the real model's.
    """
    if target is not None and target.feature is not None:
        raise ValueError("intervene reads logit targets; for a feature target read the feature's activation.")
    interventions = [interventions] if isinstance(interventions, Intervention) else list(interventions)
    layers = {int(k): v for k, v in transcoders.items()}
    device = next(model.parameters()).device
    batch, answers = _rows(input_ids, candidates)
    batch = batch.to(device)
    prompt_length = int(torch.as_tensor(input_ids).numel())
    kept, changes = _masks(interventions, keep_only, batch.shape[1], batch.shape[0], prompt_length, layers)
    unknown = set(layers) - set(range(n_layers(model)))
    if unknown:
        raise IndexError(f"Transcoders given for layers {sorted(unknown)}; the model has {n_layers(model)} layers.")

    with eager_attention(model) if freeze_attention else nullcontext():
        recorded = [] if freeze_attention else None
        with torch.no_grad(), MLPCapture(model) as capture, (_Patterns(recorded, False) if freeze_attention else nullcontext()):
            model(batch, use_cache=False)
        errors = {}
        for layer in range(n_layers(model)):
            x, y = capture.inputs[layer].float(), capture.outputs[layer].float()
            tc = layers.get(layer)
            with torch.no_grad():
                errors[layer] = y if tc is None else y - tc.decode(tc.encode(x), x)

        def replacements(changed: bool):  # unchanged: no ablation and no intervention, the model itself
            return {layer: _replacement(layers.get(layer), errors[layer],
                                        None if kept is None or layer not in kept or not changed else kept[layer],
                                        changes.get(layer, []) if changed else [],
                                        None if ablation is None else ablation.get(layer), prompt_length)
                    for layer in range(n_layers(model))}

        def patterns():
            return _Patterns(recorded, True) if freeze_attention else None

        clean_value, clean_scores = _read(model, batch, target, prompt_length, answers, replacements(False), patterns())
        value, scores = _read(model, batch, target, prompt_length, answers, replacements(True), patterns())
    return InterventionResult(value, clean_value, _normalized(scores), _normalized(clean_scores))


def feature_means(model, transcoders: dict, inputs) -> dict:
    """``{layer: (d_hidden,)}``: each feature's mean activation over every token of ``inputs`` (for mean ablation)."""
    layers = {int(k): v for k, v in transcoders.items()}
    sums = {layer: 0.0 for layer in layers}
    count = 0
    device = next(model.parameters()).device
    for ids in inputs:
        ids = torch.as_tensor(ids, device=device).reshape(1, -1)
        with torch.no_grad(), MLPCapture(model, sorted(layers)) as capture:
            model(ids, use_cache=False)
            for layer, tc in layers.items():
                sums[layer] = sums[layer] + tc.encode(capture.inputs[layer][0].float()).sum(0)
        count += ids.shape[1]
    if count == 0:
        raise ValueError("feature_means needs at least one input.")
    return {layer: s / count for layer, s in sums.items()}
