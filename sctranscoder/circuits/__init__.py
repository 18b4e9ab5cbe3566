"""Circuits: which transcoder features, heads and input tokens carry a model's output (model-agnostic core)."""

from ._linear import Attribution, LinearizedModel
from ._targets import Target
from ._trace import trace

__all__ = ["Attribution", "LinearizedModel", "Target", "trace"]
