"""Freeze a model's nonlinearities outside the MLPs at their values on one input.

With attention patterns and norm scales held fixed (and the MLPs replaced by
transcoder features that are themselves held), everything between the token
embeddings and any later activation is linear: one backward pass gives exact
attributions. Patterns are frozen by detaching every softmax output (attention
runs in the eager implementation so the softmax is visible); norms are frozen by
detaching their per-token scale.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_SOFTMAX = {F.softmax, torch.softmax, torch.Tensor.softmax}


class _DetachSoftmax(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        return out.detach() if func in _SOFTMAX else out


def _layer_norm(module: nn.LayerNorm, x):
    centred = x - x.mean(-1, keepdim=True)
    scale = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + module.eps).detach()
    out = centred * scale
    if module.weight is not None:
        out = out * module.weight
    return out + module.bias if module.bias is not None else out


def _rms_norm(module, x):
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    x32 = x.float()
    scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps).detach()
    # Gemma's norms multiply by (1 + weight); Llama-style ones by weight
    gain = 1.0 + module.weight.float() if "Gemma" in type(module).__name__ else module.weight.float()
    return (x32 * scale * gain).type_as(x)


def _frozen_norm(module):
    if isinstance(module, nn.LayerNorm):
        return _layer_norm
    name = type(module).__name__
    if name.endswith("RMSNorm") and hasattr(module, "weight"):
        return _rms_norm
    return None


def _norm_modules(model):
    return [m for m in model.modules() if isinstance(m, nn.LayerNorm) or type(m).__name__.endswith(("RMSNorm", "LayerNorm"))]


@contextmanager
def _patched_norms(model):
    originals = {}
    for module in _norm_modules(model):
        frozen = _frozen_norm(module)
        if frozen is None:
            raise ValueError(f"Cannot freeze the norm {type(module).__name__}: only LayerNorm and RMSNorm are "
                             "supported for circuits.")

        def forward(x, module=module, frozen=frozen):
            return frozen(module, x)

        originals[module] = module.forward
        module.forward = forward
    try:
        yield
    finally:
        for module, forward in originals.items():
            module.forward = forward


@contextmanager
def checked_norms(model):
    """Within this context, every norm call checks that its frozen version gives the module's output
    (a guard against norm variants this module does not know)."""

    def check(module, args, output):
        frozen = _frozen_norm(module)
        # a bf16/fp16 model rounds its own output: compare to that precision, float32 to 1e-4
        eps = torch.finfo(output.dtype).eps if output.is_floating_point() else 0.0
        rtol, atol = max(1e-4, 4 * eps), max(1e-5, 4 * eps)
        if frozen is None or not torch.allclose(frozen(module, args[0]).float(), output.float(), rtol=rtol, atol=atol):
            raise ValueError(f"Circuits cannot freeze {type(module).__name__}: its frozen version does not match it. "
                             "Only LayerNorm and (Llama- or Gemma-style) RMSNorm are supported.")

    handles = [m.register_forward_hook(check) for m in _norm_modules(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eager_attention(model):
    """Run attention in the eager implementation (its softmax must be visible to be frozen)."""
    previous = model.config._attn_implementation
    if previous != "eager":
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)


@contextmanager
def frozen_nonlinearities(model):
    """Within this context, gradients see attention patterns and norm scales as constants."""
    with ExitStack() as stack:
        stack.enter_context(eager_attention(model))
        stack.enter_context(_patched_norms(model))
        stack.enter_context(_DetachSoftmax())
        yield


def norm_gain(module) -> torch.Tensor:
    """The per-dimension gain a norm applies after scaling (Gemma's RMSNorm stores it minus one)."""
    weight = module.weight.detach().float()
    return 1.0 + weight if "Gemma" in type(module).__name__ else weight


def is_centring(module) -> bool:
    """Whether the norm subtracts the mean (LayerNorm) before scaling."""
    return isinstance(module, nn.LayerNorm)
