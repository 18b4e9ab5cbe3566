"""What a circuit explains: a logit, a logit difference, or one feature."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Target:
    """A scalar of the model's forward pass to trace back.

    Logits are read before any final soft-capping (Gemma-2), from the last
    norm's output through the unembedding, so they are linear in the sources.
    """

    token: int | None = None
    """Logit target: the token whose logit is explained."""
    against: tuple[int, ...] = ()
    """Logit difference: ``logit(token) - mean(logit(against))``."""
    position: int = -1
    """The position whose logits (or feature) are explained."""
    feature: tuple[int, int] | None = None
    """Feature target: ``(layer, index)``."""
    label: str = ""

    @classmethod
    def logit(cls, token: int, position: int = -1, label: str = "") -> Target:
        return cls(token=int(token), position=position, label=label or f"logit[{token}]")

    @classmethod
    def logit_difference(cls, token: int, against, position: int = -1, label: str = "") -> Target:
        against = tuple(int(t) for t in (against if hasattr(against, "__iter__") else [against]))
        if not against or int(token) in against:
            raise ValueError("A logit difference needs at least one contrast token, different from the target token.")
        return cls(token=int(token), against=against, position=position,
                   label=label or f"logit[{token}] - logit{list(against)}")

    @classmethod
    def of_feature(cls, layer: int, index: int, position: int = -1, label: str = "") -> Target:
        return cls(feature=(int(layer), int(index)), position=position, label=label or f"L{layer}/F{index}")

    def direction(self, unembedding: torch.Tensor, bias: torch.Tensor | None = None):
        """The residual direction (and constant) whose dot product with the final hidden state is the target."""
        if self.token is None:
            raise ValueError("Feature targets have no unembedding direction.")
        unembedding = unembedding.detach()
        bias = bias.detach() if bias is not None else None
        vector = unembedding[self.token].float()
        constant = bias[self.token].float() if bias is not None else vector.new_zeros(())
        if self.against:
            vector = vector - unembedding[list(self.against)].float().mean(0)
            if bias is not None:
                constant = constant - bias[list(self.against)].float().mean()
        return vector, constant

    def scalar(self, linear) -> torch.Tensor:
        """The target in a :class:`LinearizedModel`, as a function of its sources."""
        position = self.position % linear.n_tokens
        if self.feature is not None:
            layer, index = self.feature
            if layer not in linear.transcoders:
                raise ValueError(f"No transcoder for layer {layer}, so its features cannot be a target.")
            return linear.feature_value(layer, position, index)
        vector, constant = self.direction(*linear.unembedding())
        return linear.final_hidden[position].float() @ vector + constant

    def read(self, final_hidden: torch.Tensor, unembedding, bias=None) -> torch.Tensor:
        """The target's value from final hidden states ``(batch, tokens, d)`` of a real forward pass."""
        vector, constant = self.direction(unembedding, bias)
        return (final_hidden[:, self.position].float() @ vector + constant).detach()
