"""The transcoder: an MLP's input mapped to its output through many sparse features."""

from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._activations import ChosenPreactivations
from ._config import TranscoderConfig
from ._registry import get_activation


class TranscoderOutput(NamedTuple):
    """What :meth:`Transcoder.forward` returns; loss parts are zero when no target was given."""

    output: torch.Tensor
    """Predicted MLP output."""
    features: torch.Tensor | None
    """Dense feature activations (None on the sparse TopK path)."""
    indices: torch.Tensor | None
    """TopK: indices of each token's active features."""
    values: torch.Tensor | None
    """TopK: their activations."""
    loss: torch.Tensor
    """Total training loss."""
    fvu: torch.Tensor
    """Squared error per row over the targets' variance per row (the reconstruction loss; see
    :func:`fraction_of_variance_unexplained` for the metric on an evaluation set)."""
    sparsity: torch.Tensor
    """Sparsity penalty (ReLU: decoder-norm weighted L1; JumpReLU: L0), already weighted."""
    auxk: torch.Tensor
    """AuxK loss (dead features reconstructing the residual error), already weighted."""
    l0: torch.Tensor
    """Mean number of active features per token."""


def fraction_of_variance_unexplained(prediction, target):
    """Sum of squared errors over the total variance of ``target`` (around its mean over rows)."""
    total = (target - target.mean(0)).pow(2).sum()
    return (prediction - target).pow(2).sum() / total.clamp_min(torch.finfo(target.dtype).tiny)


class Transcoder(nn.Module):
    """Sparse replacement of one MLP: ``x -> s_out (W_dec f + W_skip x') + b_dec``, with
    ``x' = s_in (x - b_in)`` and ``f = act(W_enc x' + b_enc)``.

    ``s_in`` and ``s_out`` are fixed scales set from data (per-dimension variance 1
    in and out), so features, learning rates, thresholds and penalties mean the
    same at every layer of every model. Decoder rows
    are kept at unit norm for TopK, BatchTopK and JumpReLU; for ReLU the L1
    penalty is weighted by decoder row norms. Either way, sparsity cannot be
    bought by shrinking the encoder and growing the decoder.
    """

    def __init__(self, cfg: TranscoderConfig, *, device=None, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        self.activation = get_activation(cfg.activation)
        generator = torch.Generator().manual_seed(cfg.seed)
        encoder = torch.randn(cfg.d_hidden, cfg.d_in, generator=generator, dtype=dtype)
        encoder /= encoder.norm(dim=1, keepdim=True)
        if cfg.d_in == cfg.d_out:
            decoder = encoder.clone()
        else:
            decoder = torch.randn(cfg.d_hidden, cfg.d_out, generator=generator, dtype=dtype)
            decoder /= decoder.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(encoder.to(device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_hidden, device=device, dtype=dtype))
        self.W_dec = nn.Parameter(decoder.to(device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out, device=device, dtype=dtype))
        self.W_skip = nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in, device=device, dtype=dtype)) if cfg.skip else None
        if self.activation.setup is not None:  # its own parameters (e.g. JumpReLU's thresholds)
            self.activation.setup(self, device, dtype)
        self.register_buffer("b_in", torch.zeros(cfg.d_in, device=device, dtype=dtype))
        self.register_buffer("input_scale", torch.ones((), device=device, dtype=dtype))
        self.register_buffer("output_scale", torch.ones((), device=device, dtype=dtype))
        # the training loss divides squared errors by this (the targets' total variance per row, set from
        # data), so it is a mean over rows that splits exactly over batches and processes
        self.register_buffer("target_variance", torch.ones((), device=device, dtype=dtype))
        # BatchTopK's inference threshold: a running mean of the smallest kept activation
        self.register_buffer("threshold", torch.zeros((), device=device, dtype=dtype))
        # tokens since each feature last fired, for dead-feature detection and revival
        self.register_buffer("tokens_since_fired", torch.zeros(cfg.d_hidden, device=device, dtype=torch.long))

    @property
    def device(self):
        return self.W_enc.device

    @property
    def uses_unit_decoder(self) -> bool:
        return self.activation.unit_decoder

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Set the input centre and scale and the output bias from a sample of (input, output) rows."""
        x, y = x.to(self.W_enc), y.to(self.W_enc)
        self.b_in.copy_(x.mean(0))
        variance = (x - self.b_in).pow(2).mean()
        self.input_scale.copy_(variance.clamp_min(1e-12).rsqrt())
        self.b_dec.copy_(y.mean(0))
        self.target_variance.copy_((y - y.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12))
        self.output_scale.copy_((self.target_variance / self.cfg.d_out).sqrt())
        # start with outputs of the targets' size, not k (or, for ReLU, thousands of) unit vectors' worth
        self.train(False)
        if self.activation.prepare is not None:
            self.activation.prepare(self, x)
        spread = (self.decode(self.encode(x)) - self.b_dec).pow(2).sum(-1).mean()
        scale = (self.target_variance / spread.clamp_min(1e-12)).sqrt()
        self.W_enc *= scale
        self.threshold *= scale
        if self.activation.calibrate is not None:
            self.activation.calibrate(self, x)
        self.train(True)

    # -- encoding ------------------------------------------------------------------------
    def normalized_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_in) * self.input_scale

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.normalized_input(x), self.W_enc, self.b_enc)

    def _activate(self, pre: torch.Tensor):
        """(dense features or None, indices, values) for this activation, in train or eval mode."""
        return self.activation.activate(self, pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense feature activations ``(rows, d_hidden)``."""
        features, indices, values = self._activate(self.pre_activations(x))
        if features is None:
            features = torch.zeros(*indices.shape[:-1], self.cfg.d_hidden, device=values.device, dtype=values.dtype)
            features.scatter_(-1, indices, values)
        return features

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse activations (TopK) only: ``(indices, values)`` of each row's active features, never the dense
        matrix."""
        if not self.activation.sparse:
            raise ValueError(f"encode_sparse needs activation='topk' (or another sparse activation); this "
                             f"transcoder uses {self.cfg.activation!r}.")
        _, indices, values = self._activate(self.pre_activations(x))
        return indices, values

    # -- decoding ------------------------------------------------------------------------
    def _finish(self, decoded, x):
        if x is not None and self.W_skip is not None:
            decoded = decoded + F.linear(self.normalized_input(x), self.W_skip)
        return decoded * self.output_scale + self.b_dec

    def decode(self, features: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """MLP output from dense features (plus the skip path when ``x`` is given)."""
        return self._finish(features @ self.W_dec, x)

    def decode_sparse(self, indices: torch.Tensor, values: torch.Tensor, x: torch.Tensor | None = None):
        """MLP output from each row's active features, a gather-and-sum over ``k`` decoder rows."""
        flat_indices, flat_values = indices.reshape(-1, indices.shape[-1]), values.reshape(-1, values.shape[-1])
        # float32 weights for the gather-and-sum even under bf16 autocast (embedding_bag is not on autocast's lists)
        out = F.embedding_bag(flat_indices, self.W_dec, per_sample_weights=flat_values.to(self.W_dec.dtype),
                              mode="sum")
        return self._finish(out.reshape(*indices.shape[:-1], -1), x)

    # -- forward and losses --------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *, dead: torch.Tensor | None = None):
        """Predict the MLP output of ``x``; with the true output ``y``, also the loss parts.

        ``dead``: a boolean mask of dead features, which the AuxK loss lets
        reconstruct the residual error.
        """
        x_in = self.normalized_input(x)
        # a sparse activation in training: the dense pre-activations without autograd, the chosen k a row with it
        sparse_gradient = self.activation.sparse and torch.is_grad_enabled()
        with torch.no_grad() if sparse_gradient else nullcontext():
            pre = F.linear(x_in, self.W_enc, self.b_enc)
        features, indices, values = self._activate(pre)
        if sparse_gradient:
            values = torch.relu(ChosenPreactivations.apply(x_in, self.W_enc, self.b_enc, indices,
                                                           pre.gather(-1, indices)))
        if features is None:
            output = self.decode_sparse(indices, values, x)
            l0 = (values > 0).sum(-1).float().mean()
        else:
            output = self.decode(features, x)
            l0 = (features > 0).sum(-1).float().mean()
        zero = output.new_zeros(())
        if y is None:
            return TranscoderOutput(output, features, indices, values, zero, zero, zero, zero, l0)
        fvu = (output - y).pow(2).sum(-1).mean() / self.target_variance
        sparsity = self._sparsity(pre, features)
        auxk = zero
        if dead is not None and self.cfg.revival == "auxk" and bool(dead.any()):
            auxk = self.cfg.auxk_coefficient * self._auxk(pre, dead, (y - output).detach(), x_in)
        return TranscoderOutput(output, features, indices, values, fvu + sparsity + auxk, fvu, sparsity, auxk, l0)

    def _sparsity(self, pre, features):
        if self.activation.penalty is None:
            return pre.new_zeros(())
        return self.activation.penalty(self, pre, features)

    def _auxk(self, pre, dead, residual, x_in):
        """Normalized error of the ``auxk_k`` largest dead features reconstructing the residual (Gao et al. 2024)."""
        k = min(self.cfg.auxk_k, int(dead.sum()))
        masked = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
        values, indices = masked.topk(k, dim=-1, sorted=False)
        if not pre.requires_grad:  # the sparse path: the gradient of the chosen entries alone
            values = ChosenPreactivations.apply(x_in, self.W_enc, self.b_enc, indices, values)
        values = torch.relu(values)
        estimate = F.embedding_bag(indices, self.W_dec, per_sample_weights=values.to(self.W_dec.dtype), mode="sum")
        return fraction_of_variance_unexplained(estimate * self.output_scale, residual)

    # -- training-time bookkeeping -------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Unit-norm decoder rows (not for ReLU, whose penalty reads the norms)."""
        if self.uses_unit_decoder:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the decoder gradient along each unit-norm row, which would only change its norm."""
        if self.uses_unit_decoder and self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec

    def dead_features(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.cfg.dead_window

    def __repr__(self) -> str:
        c = self.cfg
        sparsity = f"k={c.k}" if self.activation.uses_k else c.activation
        return (f"Transcoder({c.d_in} -> {c.d_hidden} {c.activation} ({sparsity}) -> {c.d_out}"
                f"{', skip' if c.skip else ''})")
