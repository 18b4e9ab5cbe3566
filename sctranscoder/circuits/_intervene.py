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

import inspect
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .._deprecations import renamed_keywords
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
            kept[layer][:, _position(position, prompt_length, n_tokens), feature] = True
    changes: dict = {}
    for change in interventions:
        _check(layers, change.layer, change.feature)
        _position(change.position, prompt_length, n_tokens)
        changes.setdefault(change.layer, []).append(change)
    return kept, changes


def _check(layers, layer, feature) -> None:
    if layer not in layers:
        raise KeyError(f"No transcoder for layer {layer}; layers with one: {sorted(layers)}.")
    width = layers[layer].cfg.d_hidden
    if not 0 <= int(feature) < width:
        raise IndexError(f"Feature {feature} of layer {layer} is out of range 0..{width - 1}.")


def _position(position, prompt_length: int, width: int | None = None):
    """A position index: ``None`` every position, negative from the prompt's end, else absolute (a position past
    the prompt is an answer token's, e.g. a fed answer prefix)."""
    if position is None:
        return slice(None)
    position = int(position)
    if not -prompt_length <= position < (width or prompt_length):
        raise IndexError(f"Position {position} is outside the prompt's {prompt_length} tokens"
                         + (f" and the answers' {width - prompt_length}." if width else "."))
    return position % prompt_length if position < 0 else position


def _replacement(tc, error, kept, changes, ablation, prompt_length, window=None):
    """The replaced MLP of one layer. ``window``: which rows and (from which position) columns of the full batch
    the pass being run holds (a pass over the prompt alone, then one over the answers; default: all of it)."""
    window = window if window is not None else {"rows": slice(None), "start": 0}

    def run(x):
        rows, start = window["rows"], window["start"]
        stop = start + x.shape[1]
        held = error[rows, start:stop]
        if tc is None:
            return held.to(x.dtype)
        features = tc.encode(x.float())
        if kept is not None:  # everything not kept is ablated
            off = ablation.to(features) if ablation is not None else features.new_zeros(())
            features = torch.where(kept[rows, start:stop], features, off)
        for change in changes:
            where = _position(change.position, prompt_length, error.shape[1])
            if isinstance(where, int):
                if not start <= where < stop:
                    continue
                where -= start
            features[:, where, int(change.feature)] = change.value if change.value is not None else \
                features[:, where, int(change.feature)] * change.scale
        return (tc.decode(features, x.float()) + held).to(x.dtype)
    return run


def _cache_argument(model) -> str:
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _read_cached(model, batch, prompt_length, answers, replacements, window, patterns=None):
    """The answers' summed log-likelihoods as :func:`_read` gives them, with the prompt run once: every candidate
    row shares it (and, with ``scope``, its interventions), so its keys and values are computed for one row and
    repeated (``None`` where the model's cache cannot be repeated over rows). ``patterns``: a :class:`_Patterns`
    to record or replay the attention patterns of this same two-pass layout."""
    with torch.no_grad(), replace_mlp(model, replacements), (patterns or nullcontext()):
        window.update(rows=slice(0, 1), start=0)
        out = model(batch[:1, :prompt_length], use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None)  # transformers 5 renamed past_key_values
        cache = out.past_key_values if cache is None else cache
        if not hasattr(cache, "batch_repeat_interleave"):
            return None
        first = torch.log_softmax(out.logits[0, -1].float(), -1)  # the first answer token, in every row
        rest = None
        if batch.shape[1] > prompt_length:
            cache.batch_repeat_interleave(batch.shape[0])
            window.update(rows=slice(None), start=prompt_length)
            rest = torch.log_softmax(model(batch[:, prompt_length:], use_cache=True, **{_cache_argument(model): cache})
                                     .logits.float(), -1)
    window.update(rows=slice(None), start=0)
    return np.array([float(first[answer[0]] + sum(rest[row, j - 1, token] for j, token in enumerate(answer) if j))
                     for row, answer in enumerate(answers)])


def _read(model, batch, target, prompt_length, answers, replacements=None, patterns=None):
    """One pass: the target at its prompt position, and each candidate answer's summed log-likelihood."""
    width = batch.shape[1]
    first = prompt_length - 1 if target is None else min(prompt_length - 1, target.position % prompt_length)
    offset = first  # the head runs from here on: the target's position, and where answers are predicted
    hidden = {}
    handle = model.get_output_embeddings().register_forward_pre_hook(lambda m, a: hidden.__setitem__("h", a[0]))
    try:
        with torch.no_grad(), ExitStack() as stack:
            if replacements is not None:
                stack.enter_context(replace_mlp(model, replacements))
            if patterns is not None:
                stack.enter_context(patterns)
            logits = model(batch, use_cache=False, logits_to_keep=width - offset).logits
    finally:
        handle.remove()
    value = None
    if target is not None:
        head = model.get_output_embeddings()
        at = replace(target, position=target.position % prompt_length - offset)
        value = float(at.read(hidden["h"][:1], head.weight, getattr(head, "bias", None))[0])
    scores = None
    if answers != [[]]:
        logp = torch.log_softmax(logits.float(), dim=-1)
        start = prompt_length - 1 - offset
        scores = np.array([float(sum(logp[row, start + j, token] for j, token in enumerate(answer)))
                           for row, answer in enumerate(answers)])
    return value, scores


def _normalized(scores):
    if scores is None:
        return None
    shifted = scores - scores.max()
    return shifted - np.log(np.exp(shifted).sum())


class ReplacementModel:
    """One prompt (and its candidate answers) in the replacement model, ready for many interventions.

    The real forward pass runs once here (MLP inputs and outputs captured, errors
    computed, attention patterns recorded when frozen); each :meth:`run` is one
    more pass of the replacement model.
    """

    @renamed_keywords(model="lm", candidates="answer_ids")
    def __init__(self, lm, transcoders: dict, input_ids, *, target: Target | None = None, answer_ids=None,
                 freeze_attention: bool = False):
        if target is not None and target.feature is not None:
            raise ValueError("intervene reads logit targets; for a feature target read the feature's activation.")
        self.model, self.target, self.freeze_attention = lm, target, freeze_attention
        self.layers = {int(k): v for k, v in transcoders.items()}
        self.n_layers = n_layers(lm)
        unknown = set(self.layers) - set(range(self.n_layers))
        if unknown:
            raise IndexError(f"Transcoders given for layers {sorted(unknown)}; the model has {self.n_layers} layers.")
        batch, self.answers = _rows(input_ids, answer_ids)
        self.batch = batch.to(next(lm.parameters()).device)
        self.prompt_length = int(torch.as_tensor(input_ids).numel())
        self.patterns: list = []
        self.cached_patterns = None  # frozen attention's patterns when the prompt is run once for every row
        with self._attention(), torch.no_grad(), MLPCapture(lm) as capture, \
                (_Patterns(self.patterns, False) if freeze_attention else nullcontext()):
            lm(self.batch, use_cache=False, logits_to_keep=1)  # only the MLPs are read here
        self.errors = {}
        for layer in range(self.n_layers):
            x, y = capture.inputs[layer].float(), capture.outputs[layer].float()
            tc = self.layers.get(layer)
            with torch.no_grad():
                self.errors[layer] = y if tc is None else y - tc.decode(tc.encode(x), x)

    def _shared_prompt(self, kept, changes) -> bool:
        """Whether every candidate row runs the same prompt (same features kept there), so it can be run once."""
        if self.target is not None or self.answers == [[]] or len(self.answers) < 2:
            return False
        if kept is not None:
            n = self.prompt_length
            if any(not bool((mask[:, :n] == mask[:1, :n]).all()) for mask in kept.values()):
                return False
        return True

    def _attention(self, frozen: bool | None = None):
        """Eager attention (its patterns readable) where this pass freezes them; ``frozen`` defaults to the model's."""
        frozen = self.freeze_attention if frozen is None else frozen
        return eager_attention(self.model) if frozen else nullcontext()

    def _cached_patterns(self, window):
        """With frozen attention, the clean patterns in the prompt-once layout (recorded on first use; ``False``
        where the model's cache cannot be shared over rows); ``None`` without frozen attention."""
        if not self.freeze_attention:
            return None
        if self.cached_patterns is None:
            clean = {layer: _replacement(self.layers.get(layer), self.errors[layer], None, [], None,
                                         self.prompt_length, window) for layer in range(self.n_layers)}
            recorded: list = []
            with self._attention():
                shared = _read_cached(self.model, self.batch, self.prompt_length, self.answers, clean, window,
                                      _Patterns(recorded, False))
            self.cached_patterns = recorded if shared is not None else False
        return self.cached_patterns

    def run(self, interventions=(), *, keep_only=None, ablation=None, scope=None, free_attention: bool = False
            ) -> tuple[float | None, np.ndarray | None]:
        """The target and the candidates' normalized log-probabilities with these changes (see :func:`intervene`).

        ``scope``: per candidate row, how many leading positions ``keep_only`` ablates; features after them are
        left as they are (recomputed), e.g. on a rival answer's own tokens, which a traced sequence does not hold.
        ``free_attention``: let attention move in this run though the model was built with it frozen (one clean
        pass serves both kinds of patching).
        """
        frozen = self.freeze_attention and not free_attention
        interventions = [interventions] if isinstance(interventions, Intervention) else list(interventions)
        kept, changes = _masks(interventions, keep_only, self.batch.shape[1], self.batch.shape[0], self.prompt_length,
                               self.layers)
        if kept is not None and scope is not None:
            if len(scope) != self.batch.shape[0]:
                raise ValueError(f"scope has {len(scope)} entries; there are {self.batch.shape[0]} candidate rows.")
            for mask in kept.values():
                for row, until in enumerate(scope):
                    mask[row, int(until):] = True
        window = {"rows": slice(None), "start": 0}
        replacements = {layer: _replacement(self.layers.get(layer), self.errors[layer],
                                            None if kept is None else kept.get(layer), changes.get(layer, []),
                                            None if ablation is None else ablation.get(layer), self.prompt_length,
                                            window)
                        for layer in range(self.n_layers)}
        if self._shared_prompt(kept, changes) and (not frozen or self._cached_patterns(window) is not False):
            with self._attention(frozen):
                scores = _read_cached(self.model, self.batch, self.prompt_length, self.answers, replacements, window,
                                      _Patterns(self.cached_patterns, True) if frozen else None)
            if scores is not None:
                return None, _normalized(scores)
        patterns = _Patterns(self.patterns, True) if frozen else None
        with self._attention(frozen):
            value, scores = _read(self.model, self.batch, self.target, self.prompt_length, self.answers, replacements,
                                  patterns)
        return value, _normalized(scores)


@renamed_keywords(model="lm", candidates="answer_ids")
def intervene(lm, transcoders: dict, input_ids, interventions=(), *, target: Target | None = None,
              answer_ids=None, freeze_attention: bool = False, keep_only=None, ablation=None) -> InterventionResult:
    """Run the replacement model on one input with features set or scaled, and read the target and the answers.

    Parameters
    ----------
    lm, transcoders
        A causal LM and ``{layer: Transcoder}`` (a layer without one keeps its MLP output as on the clean input).
    input_ids
        One prompt, ``(tokens,)``.
    interventions
        :class:`Intervention` s (set or scale a feature at a position, or everywhere).
    target
        A logit or logit-difference :class:`Target`, read at its position in the prompt.
    answer_ids
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
    replacement = ReplacementModel(lm, transcoders, input_ids, target=target, answer_ids=answer_ids,
                                   freeze_attention=freeze_attention)
    clean_value, clean = replacement.run()
    value, changed = replacement.run(interventions, keep_only=keep_only, ablation=ablation)
    return InterventionResult(value, clean_value, changed, clean)


@renamed_keywords(model="lm")
def feature_means(lm, transcoders: dict, inputs) -> dict:
    """``{layer: (d_hidden,)}``: each feature's mean activation over every token of ``inputs`` (for mean ablation)."""
    layers = {int(k): v for k, v in transcoders.items()}
    sums = {layer: 0.0 for layer in layers}
    count = 0
    device = next(lm.parameters()).device
    for ids in inputs:
        ids = torch.as_tensor(ids, device=device).reshape(1, -1)
        with torch.no_grad(), MLPCapture(lm, sorted(layers)) as capture:
            lm(ids, use_cache=False)
            for layer, tc in layers.items():
                sums[layer] = sums[layer] + tc.encode(capture.inputs[layer][0].float()).sum(0)
        count += ids.shape[1]
    if count == 0:
        raise ValueError("feature_means needs at least one input.")
    return {layer: s / count for layer, s in sums.items()}
