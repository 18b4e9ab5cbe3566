"""The activations a transcoder can use, by name: one registry read by the config, the module, the trainer and
the command line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import _activations as act


@dataclass(frozen=True)
class Activation:
    """How one kind of transcoder turns pre-activations into features.

    Every callable takes the :class:`~sctranscoder.tc.Transcoder` first, so it can
    read ``transcoder.cfg`` and the parameters its ``setup`` added.
    """

    name: str
    """What ``TranscoderConfig.activation`` and ``--activation`` call it."""
    activate: Callable
    """``(transcoder, pre) -> (features, indices, values)``: dense features ``(rows, d_hidden)``, or, when
    ``sparse``, ``None`` and each row's active feature indices and values. Look at ``transcoder.training``
    where training and inference differ."""
    description: str = ""
    """One line for help texts."""
    sparse: bool = False
    """``activate`` returns (indices, values), decoded by a gather-and-sum without the dense matrix. The values
    must be the ReLU of the pre-activations at those indices: with gradients on, the transcoder recomputes them so
    that only the chosen entries carry gradient (:class:`~sctranscoder.tc._activations.ChosenPreactivations`)."""
    uses_k: bool = False
    """It reads ``cfg.k`` (the config checks ``k <= d_hidden``)."""
    unit_decoder: bool = True
    """Keep decoder rows at unit norm (False when the penalty reads their norms instead)."""
    penalty: Callable | None = None
    """``(transcoder, pre, features) -> scalar``: a sparsity loss, already weighted; None: no penalty."""
    setup: Callable | None = None
    """``(transcoder, device, dtype)``: add the parameters or buffers it needs, at construction."""
    prepare: Callable | None = None
    """``(transcoder, x)``: set data-dependent state before the initial output scale is measured."""
    calibrate: Callable | None = None
    """``(transcoder, x)``: set data-dependent state after the encoder is rescaled to the data."""
    averaged_buffers: tuple[str, ...] = ()
    """Buffers updated in the forward pass that data-parallel processes average after each step."""


_REGISTRY: dict[str, Activation] = {}


def register_activation(activation: Activation, *, replace: bool = False) -> Activation:
    """Make ``activation`` available by its name (to configs, saved transcoders and the command line)."""
    if activation.name in _REGISTRY and not replace:
        raise ValueError(f"An activation named {activation.name!r} is already registered; pass replace=True.")
    _REGISTRY[activation.name] = activation
    return activation


def unregister_activation(name: str) -> None:
    """Remove a registered activation (transcoders using it can no longer be built or loaded)."""
    _REGISTRY.pop(name, None)


def get_activation(name: str) -> Activation:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"activation={name!r} must be one of {activation_names()}.") from None


def activation_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


class _Names(Sequence):
    """The registered names, read at each use (so activations registered later are included)."""

    def __getitem__(self, index):
        return activation_names()[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    def __hash__(self):
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(activation_names())


ACTIVATIONS = _Names()

register_activation(Activation(
    "relu", act.relu_activate, "ReLU, L1 penalty weighted by decoder norms", unit_decoder=False,
    penalty=act.l1_penalty))
register_activation(Activation("topk", act.topk_activate, "the k largest per token", sparse=True, uses_k=True))
register_activation(Activation(
    "batchtopk", act.batchtopk_activate, "k x batch largest per batch in training, a learned threshold in inference",
    uses_k=True, prepare=act.batchtopk_prepare, averaged_buffers=("threshold",)))
register_activation(Activation(
    "jumprelu", act.jumprelu_activate, "learned per-feature thresholds, L0 penalty", penalty=act.l0_penalty,
    setup=act.jumprelu_setup, calibrate=act.jumprelu_calibrate))
