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
