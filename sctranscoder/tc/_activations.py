"""Sparse activation functions of transcoders, with the gradients they need in training."""

from __future__ import annotations

import torch


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLU(torch.autograd.Function):
    """``z * (z > threshold)``; the threshold learns through a straight-through estimator
    with a rectangle kernel of width ``bandwidth`` (Rajamanoharan et al. 2024, "Jumping Ahead")."""

    @staticmethod
    def forward(ctx, z, threshold, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        z, threshold = ctx.saved_tensors
        bandwidth = ctx.bandwidth
        grad_z = grad * (z > threshold).to(z.dtype)
        grad_threshold = -(threshold / bandwidth) * _rectangle((z - threshold) / bandwidth) * grad
        return grad_z, grad_threshold.reshape(-1, threshold.shape[-1]).sum(0), None


class Step(torch.autograd.Function):
    """``z > threshold`` as a float, with the same straight-through gradient for the threshold (for the L0 penalty)."""

    @staticmethod
    def forward(ctx, z, threshold, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        z, threshold = ctx.saved_tensors
        bandwidth = ctx.bandwidth
        grad_threshold = -(1.0 / bandwidth) * _rectangle((z - threshold) / bandwidth) * grad
        return torch.zeros_like(z), grad_threshold.reshape(-1, threshold.shape[-1]).sum(0), None


class ChosenPreactivations(torch.autograd.Function):
    """The pre-activations ``x W^T + b`` at each row's chosen features (``indices``), computed beforehand without
    gradients (``values``), with the gradient of those entries alone.

    A sparse activation's loss depends on k entries a row, so the encoder's gradient is a sum over those
    (row, feature) pairs: gathered per feature (rows sorted by feature), it costs ``rows x k x d_in`` instead of
    the dense ``rows x d_hidden x d_in`` matrix product and the ``rows x d_hidden`` gradient it reads, which were
    most of a TopK training step.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, indices, values):
        ctx.save_for_backward(x, weight, indices)
        return values

    @staticmethod
    def backward(ctx, grad):
        x, weight, indices = ctx.saved_tensors
        k, width = indices.shape[-1], weight.shape[1]
        grad = grad.reshape(-1, k).to(weight.dtype)
        chosen = indices.reshape(-1, k)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # sum over a row's chosen features of grad * their encoder rows
            grad_x = torch.nn.functional.embedding_bag(chosen, weight, per_sample_weights=grad, mode="sum")
            grad_x = grad_x.reshape(x.shape).to(x.dtype)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            flat, flat_grad = chosen.reshape(-1), grad.reshape(-1)
            order = flat.argsort()
            counts = torch.bincount(flat, minlength=weight.shape[0])
            offsets = counts.cumsum(0) - counts
            rows = x.reshape(-1, width).to(weight.dtype)
            grad_weight = torch.nn.functional.embedding_bag(order // k, rows, offsets,
                                                            per_sample_weights=flat_grad[order], mode="sum")
            grad_bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
            grad_bias.index_add_(0, flat, flat_grad)
        return grad_x, grad_weight, grad_bias, None, None


def topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and (non-negative) values of each row's ``k`` largest pre-activations."""
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return indices, torch.relu(values)


def batch_topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``k * rows`` largest positive pre-activations of the whole batch (Bussmann et al. 2024).

    Returns the dense activations and the smallest kept value (for the inference threshold).
    """
    flat = torch.relu(pre).flatten()
    values, indices = flat.topk(min(k * pre.shape[0], flat.numel()), sorted=False)
    dense = torch.zeros_like(flat).scatter(0, indices, values).view_as(pre)
    positive = values[values > 0]
    return dense, positive.min().detach() if positive.numel() else values.new_zeros(())


# -- the built-in activations, as the registry calls them ------------------------------------------
# activate(transcoder, pre) -> (dense features or None, indices or None, values or None)
def relu_activate(transcoder, pre):
    return torch.relu(pre), None, None


def topk_activate(transcoder, pre):
    return None, *topk(pre, transcoder.cfg.k)


def batchtopk_activate(transcoder, pre):
    if transcoder.training:
        dense, smallest = batch_topk(pre, transcoder.cfg.k)
        transcoder.threshold.lerp_(smallest.to(transcoder.threshold), 0.01)
        return dense, None, None
    return pre * (pre > transcoder.threshold).to(pre.dtype), None, None


def batchtopk_prepare(transcoder, x):
    """Start the inference threshold at the mean k-th largest pre-activation of the sample."""
    kth = transcoder.pre_activations(x).topk(transcoder.cfg.k, dim=-1).values[:, -1]
    transcoder.threshold.copy_(kth.clamp_min(0).mean())


def jumprelu_setup(transcoder, device, dtype):
    cfg = transcoder.cfg
    start = torch.full((cfg.d_hidden,), cfg.jumprelu_threshold, device=device, dtype=dtype)
    transcoder.log_threshold = torch.nn.Parameter(start.log())
    transcoder.register_buffer("bandwidth", torch.tensor(cfg.jumprelu_bandwidth, device=device, dtype=dtype))


def jumprelu_calibrate(transcoder, x):
    """Thresholds and kernel width in units of the pre-activations' spread."""
    spread = transcoder.pre_activations(x).std()
    transcoder.log_threshold.fill_(float((transcoder.cfg.jumprelu_threshold * spread).log()))
    transcoder.bandwidth.fill_(float(transcoder.cfg.jumprelu_bandwidth * spread))


def jumprelu_activate(transcoder, pre):
    return JumpReLU.apply(pre, transcoder.log_threshold.exp(), float(transcoder.bandwidth)), None, None


def l1_penalty(transcoder, pre, features):
    """Feature activations weighted by decoder norms, relative to the outputs' norm."""
    weighted = (features * transcoder.W_dec.norm(dim=1)).sum(-1).mean()
    return transcoder.cfg.l1_coefficient * weighted / transcoder.cfg.d_out**0.5


def l0_penalty(transcoder, pre, features):
    """Active features per token, with straight-through gradients for the thresholds."""
    l0 = Step.apply(pre, transcoder.log_threshold.exp(), float(transcoder.bandwidth)).sum(-1).mean()
    return transcoder.cfg.l0_coefficient * l0
