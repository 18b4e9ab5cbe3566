"""The linearized model as the complete attribution graph needs it: no head nodes, MLP outputs as leaves.

Unlike :class:`LinearizedModel`'s own pass (which stops gradients at every head
output, so a greedy search can expand heads), gradients here flow through the
frozen attention patterns, as in circuit-tracer: a head is part of the edge
between the nodes it connects. Each MLP's output (features decoded plus error,
the skip path excepted) is one leaf per layer, so one gradient at that leaf gives
the error's share and, by a gather over the active features' decoder rows, every
feature's share, without the dense ``(tokens, d_hidden)`` feature gradient.
"""

from __future__ import annotations

import torch

from ._linear import LinearizedModel


class ReplacementPass(LinearizedModel):
    """One input's linearized forward pass, with leaves at the embeddings and at each MLP output."""

    def _linear_pass(self) -> None:
        self.encoder_inputs, self.output_leaves = {}, {}
        for layer in range(self.n_layers):
            tc = self.transcoders.get(layer)
            out = self.errors[layer]
            if tc is not None:
                with torch.no_grad():
                    # the skip path (if any) stays a live function of the input, so it is added in the pass
                    out = out + tc.decode(self.activations[layer], None)
            self.output_leaves[layer] = out.clone().requires_grad_()
        self.head_leaves, self.head_outputs, self.feature_leaves, self.error_leaves = {}, {}, {}, {}

        def mlp(layer):
            tc = self.transcoders.get(layer)

            def replacement(x):
                out = self.output_leaves[layer]
                if tc is not None:
                    self.encoder_inputs[layer] = tc.normalized_input(x[0].float())
                    if tc.W_skip is not None:
                        out = out + torch.nn.functional.linear(self.encoder_inputs[layer], tc.W_skip) * tc.output_scale
                return out[None].to(x.dtype)
            return replacement

        self._run_replaced(mlp, [])

    def feature_value(self, layer: int, position: int, index: int) -> torch.Tensor:
        tc = self.transcoders[layer]
        return self.encoder_inputs[layer][position] @ tc.W_enc[index] + tc.b_enc[index]

    def leaves(self) -> list:
        return [self.embeddings] + [self.output_leaves[layer] for layer in range(self.n_layers)]

    def gradients(self, outputs, grad_outputs, *, batched: bool, retain: bool = True) -> list:
        """Gradients at :meth:`leaves` (``(rows, tokens, d)`` each when ``batched``)."""
        grads = torch.autograd.grad(outputs, self.leaves(), grad_outputs=grad_outputs, retain_graph=retain,
                                    allow_unused=True, is_grads_batched=batched)
        leaves = self.leaves()
        return [torch.zeros((grad_outputs[0].shape[0], *leaf.shape) if batched else leaf.shape, dtype=leaf.dtype,
                            device=leaf.device) if g is None else g for leaf, g in zip(leaves, grads)]
