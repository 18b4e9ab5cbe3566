"""The model on one input, linearized around that input with transcoders in place of its MLPs.

Sources (leaves of the autograd graph): the residual stream entering the first
block (token embeddings, one node per position), each transcoder feature at each
position, each MLP's error (true output minus transcoder output, or the whole MLP
output where a layer has no transcoder), and each attention head's output at
each position. Attention patterns and norm scales are frozen (``_frozen``), so
every later quantity (a feature's pre-activation, a head's output, a logit) is an
affine function of the sources, and ``value = sum(source * gradient) + bias``
holds exactly. Because the features and errors are set to their values on the
real forward pass, the linearized model reproduces the real model's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._deprecations import renamed_keywords
from ..harvest import MLPCapture, attention_outputs, final_hidden, first_block, n_layers, replace_mlp
from ._frozen import checked_norms, frozen_nonlinearities


@dataclass
class Attribution:
    """Each source's share of one scalar: ``value == total() + bias``."""

    value: float
    embeddings: torch.Tensor
    """``(tokens,)``: each position's embedding."""
    features: dict
    """``{layer: (tokens, d_hidden)}``: activation times gradient."""
    errors: dict
    """``{layer: (tokens,)}``."""
    heads: dict
    """``{layer: (tokens, n_heads)}``."""
    head_gradients: dict
    """``{layer: (tokens, n_heads, head_dim)}``: the gradient at each head output (to expand heads)."""

    def total(self) -> float:
        parts = [self.embeddings.sum()]
        parts += [v.sum() for v in self.features.values()]
        parts += [v.sum() for v in self.errors.values()]
        parts += [v.sum() for v in self.heads.values()]
        return float(torch.stack(parts).sum())

    @property
    def bias(self) -> float:
        return self.value - self.total()

    def total_abs(self) -> float:
        parts = [self.embeddings.abs().sum()]
        parts += [v.abs().sum() for v in self.features.values()]
        parts += [v.abs().sum() for v in self.errors.values()]
        parts += [v.abs().sum() for v in self.heads.values()]
        return float(torch.stack(parts).sum()) + abs(self.bias)


def _first_arg(args, kwargs, name):
    return args[0] if args else kwargs[name]


def _with_first_arg(args, kwargs, name, value):
    if args:
        return (value, *args[1:]), kwargs
    return args, {**kwargs, name: value}


class LinearizedModel:
    """One input's forward pass, held for repeated attribution (one backward pass per scalar).

    Parameters
    ----------
    model
        A Hugging Face causal LM of a supported architecture, in eval mode.
    transcoders
        ``{layer: Transcoder}``. Layers without one count their whole MLP output as error.
    input_ids
        One sequence, ``(tokens,)``.
    """

    @renamed_keywords(model="lm")
    def __init__(self, lm, transcoders: dict, input_ids: torch.Tensor):
        self.model = lm
        self.transcoders = {int(k): v for k, v in transcoders.items()}
        device = next(lm.parameters()).device
        self.input_ids = torch.as_tensor(input_ids, device=device).reshape(1, -1)
        self.n_layers = n_layers(lm)
        self.n_heads = int(lm.config.num_attention_heads)
        unknown = set(self.transcoders) - set(range(self.n_layers))
        if unknown:
            raise IndexError(f"Transcoders given for layers {sorted(unknown)}; the model has layers 0..{self.n_layers - 1}.")
        self._clean_pass()
        self._linear_pass()

    # -- the real forward pass -----------------------------------------------------------
    def _clean_pass(self) -> None:
        with torch.no_grad(), checked_norms(self.model), MLPCapture(self.model) as capture:
            self.final_hidden_clean = final_hidden(self.model, self.input_ids)[0]
        self.activations, self.errors = {}, {}
        for layer in range(self.n_layers):
            x, y = capture.inputs[layer][0].float(), capture.outputs[layer][0].float()
            tc = self.transcoders.get(layer)
            if tc is None:
                self.errors[layer] = y
                continue
            with torch.no_grad():
                features = tc.encode(x.to(tc.device))
                self.activations[layer] = features
                self.errors[layer] = y - tc.decode(features, x.to(tc.device)).to(y)

    # -- the linearized pass -------------------------------------------------------------
    def _linear_pass(self) -> None:
        model = self.model
        self.feature_leaves = {layer: f.clone().requires_grad_() for layer, f in self.activations.items()}
        self.error_leaves = {layer: e.clone().requires_grad_() for layer, e in self.errors.items()}
        self.mlp_inputs, self.head_outputs, self.head_leaves = {}, {}, {}
        handles = []

        def head_leaf(layer):
            def hook(module, args):
                z = args[0]
                self.head_outputs[layer] = z[0]
                leaf = z[0].detach().float().requires_grad_()
                self.head_leaves[layer] = leaf
                return (leaf[None].to(z.dtype), *args[1:])
            return hook

        def mlp(layer):
            tc = self.transcoders.get(layer)

            def replacement(x):
                self.mlp_inputs[layer] = x[0]
                out = self.error_leaves[layer]
                if tc is not None:
                    out = out + tc.decode(self.feature_leaves[layer], x[0].float())
                return out[None].to(x.dtype)
            return replacement

        for layer, projection in attention_outputs(model).items():
            handles.append(projection.register_forward_pre_hook(head_leaf(layer)))
        self._run_replaced(mlp, handles)

    def _run_replaced(self, mlp, handles: list) -> None:
        """The linearized forward pass: a leaf at the embeddings, every MLP replaced by ``mlp(layer)``, the final
        hidden state kept and checked against the clean pass; ``handles`` (hooks already set) are removed after."""
        model, state = self.model, {}

        def embed_leaf(module, args, kwargs):
            hidden = _first_arg(args, kwargs, "hidden_states")
            state["embeddings"] = hidden[0].detach().float().requires_grad_()
            return _with_first_arg(args, kwargs, "hidden_states", state["embeddings"][None].to(hidden.dtype))

        handles = [*handles, first_block(model).register_forward_pre_hook(embed_leaf, with_kwargs=True)]
        try:
            with torch.enable_grad(), frozen_nonlinearities(model), \
                    replace_mlp(model, {layer: mlp(layer) for layer in range(self.n_layers)}):
                self.final_hidden = final_hidden(model, self.input_ids)[0]
        finally:
            for handle in handles:
                handle.remove()
        self.embeddings = state["embeddings"]
        gap = (self.final_hidden.detach().float() - self.final_hidden_clean.float()).abs().max()
        scale = self.final_hidden_clean.float().abs().max().clamp_min(1e-6)
        # a bf16/fp16 model rounds every layer: allow a few of its epsilons, float32 to 1e-3
        tolerance = max(1e-3, 4 * torch.finfo(self.final_hidden_clean.dtype).eps)
        if float(gap / scale) > tolerance:
            raise RuntimeError(f"The linearized model does not reproduce the forward pass (relative gap "
                               f"{float(gap / scale):.2e}); the architecture may have a nonlinearity circuits do "
                               "not freeze.")

    # -- scalars to attribute ------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return self.input_ids.shape[1]

    def feature_value(self, layer: int, position: int, index: int) -> torch.Tensor:
        """A feature's pre-activation (its activation where it fires), as a function of the sources."""
        tc = self.transcoders[layer]
        x = tc.normalized_input(self.mlp_inputs[layer][position].float())
        return x @ tc.W_enc[index] + tc.b_enc[index]

    def head_value(self, layer: int, position: int, head: int, direction: torch.Tensor) -> torch.Tensor:
        """A head's output at ``position`` read along ``direction`` (``(head_dim,)``)."""
        z = self.head_outputs[layer][position].float()
        width = z.shape[-1] // self.n_heads
        return z[head * width : (head + 1) * width] @ direction

    def unembedding(self):
        head = self.model.get_output_embeddings()
        return head.weight, getattr(head, "bias", None)

    def attribute(self, scalar: torch.Tensor) -> Attribution:
        """Split ``scalar`` over all sources with one backward pass."""
        layers_f, layers_e, layers_h = list(self.feature_leaves), list(self.error_leaves), list(self.head_leaves)
        leaves = [self.embeddings] + [self.feature_leaves[layer] for layer in layers_f] \
            + [self.error_leaves[layer] for layer in layers_e] + [self.head_leaves[layer] for layer in layers_h]
        grads = torch.autograd.grad(scalar, leaves, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]
        g_emb, rest = grads[0], grads[1:]
        g_feat, rest = rest[: len(layers_f)], rest[len(layers_f):]
        g_err, g_head = rest[: len(layers_e)], rest[len(layers_e):]
        with torch.no_grad():
            heads, head_grads = {}, {}
            for layer, g in zip(layers_h, g_head):
                shape = (self.n_tokens, self.n_heads, -1)
                heads[layer] = (self.head_leaves[layer] * g).reshape(shape).sum(-1)
                head_grads[layer] = g.reshape(shape)
            return Attribution(
                value=float(scalar.detach()),
                embeddings=(self.embeddings * g_emb).sum(-1),
                features={layer: self.feature_leaves[layer].detach() * g for layer, g in zip(layers_f, g_feat)},
                errors={layer: (self.error_leaves[layer] * g).sum(-1) for layer, g in zip(layers_e, g_err)},
                heads=heads,
                head_gradients=head_grads,
            )
