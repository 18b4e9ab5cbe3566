"""Transcoder settings: one dataclass for the architecture and its training, with the rules that fill in the
automatic ones (``None``) from the width and the data."""

from __future__ import annotations

import ast
import inspect
import math
from dataclasses import asdict, dataclass, fields, replace
from functools import cache

from ._registry import ACTIVATIONS, get_activation

REVIVAL = ("auxk", "resample", "none")
AUTO = ("learning_rate", "batch_size", "n_tokens")
MAX_BATCH = 4096
MIN_BATCH = 64

__all__ = ["ACTIVATIONS", "AUTO", "REVIVAL", "TranscoderConfig"]


@dataclass
class TranscoderConfig:
    """Shape, sparsity and training of a transcoder (an MLP's sparse, wide replacement)."""

    d_in: int
    """Width of the MLP input (the model's residual width)."""
    d_out: int
    """Width of the MLP output."""
    d_hidden: int = 4096
    """Number of sparse features."""
    activation: str = "topk"
    """A registered activation (:func:`sctranscoder.tc.register_activation`): ``"relu"`` (L1 penalty
    weighted by decoder norms), ``"topk"`` (k largest per token), ``"batchtopk"`` (k x batch largest per
    batch in training, a learned threshold in inference), or ``"jumprelu"`` (learned per-feature
    thresholds, L0 penalty through straight-through estimators)."""
    k: int = 32
    """Active features per token for TopK and BatchTopK."""
    skip: bool = False
    """Add a linear skip connection from input to output (a skip transcoder)."""
    l1_coefficient: float = 0.05
    """Weight of the L1 penalty (ReLU): feature activations times decoder norms, summed per token and
    divided by sqrt(d_out) (features act on outputs normalized to unit variance per dimension)."""
    l0_coefficient: float = 1e-3
    """Weight of the L0 penalty (JumpReLU): features active per token."""
    jumprelu_threshold: float = 1.0
    """Initial JumpReLU threshold, in standard deviations of the pre-activations at initialization."""
    jumprelu_bandwidth: float = 0.2
    """Width of the rectangle kernel of JumpReLU's straight-through gradients, in the same units."""
    revival: str = "auxk"
    """How dead features come back: ``"auxk"`` (auxiliary loss on the residual error),
    ``"resample"`` (re-initialize them towards badly reconstructed tokens), or ``"none"``."""
    auxk_k: int = 256
    """Dead features the AuxK loss may use per token."""
    auxk_coefficient: float = 1 / 32
    """Weight of the AuxK loss."""
    dead_window: int = 1_000_000
    """A feature that has not fired in this many training tokens counts as dead."""
    dense_threshold: float = 0.1
    """A feature firing on more than this fraction of tokens counts as dense."""
    learning_rate: float | None = None
    """Peak Adam learning rate (after warmup). None: ``2e-4 / sqrt(d_hidden / 2**14)``, scaled to the
    dictionary width as in Gao et al. 2024 ("Scaling and evaluating sparse autoencoders") and sparsify."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    decay: str = "cosine"
    """Learning-rate decay after warmup: ``"cosine"``, ``"linear"`` (both to 10% of the peak) or ``"none"``."""
    batch_size: int | None = None
    """Tokens per optimizer step (over all processes). None: 4096, halved (down to 64) while a pass over
    the training rows would give fewer than ``min_steps_per_epoch`` (256) steps; 4096 when the row count is
    unknown (a stream)."""
    n_tokens: int | None = None
    """Training tokens in all (the step count is ``n_tokens // batch_size``). None: ``auto_steps`` steps."""
    auto_steps: int = 1000
    """Optimizer steps when ``n_tokens`` is None (the automatic length: ``auto_steps * batch_size`` tokens)."""
    min_steps_per_epoch: int = 256
    """Steps a pass over the training rows should give at least, for the automatic batch size."""
    seed: int = 0
    """Seed of the initialization and of the data order."""

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} must be one of {ACTIVATIONS}.")
        if self.revival not in REVIVAL:
            raise ValueError(f"revival={self.revival!r} must be one of {REVIVAL}.")
        if self.decay not in ("cosine", "linear", "none"):
            raise ValueError(f"decay={self.decay!r} must be 'cosine', 'linear' or 'none'.")
        for name in ("d_in", "d_out", "d_hidden", "k", "batch_size", "n_tokens", "auto_steps", "min_steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be at least 1.")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be positive.")
        if get_activation(self.activation).uses_k and self.k > self.d_hidden:
            raise ValueError(f"k={self.k} is larger than d_hidden={self.d_hidden}.")

    @property
    def n_steps(self) -> int:
        if self.n_tokens is None or self.batch_size is None:
            raise ValueError("n_tokens or batch_size is automatic (None); resolve the config first "
                             "(TranscoderConfig.resolve).")
        return max(1, self.n_tokens // self.batch_size)

    @property
    def automatic(self) -> tuple[str, ...]:
        """The settings left to the rules (None)."""
        return tuple(name for name in AUTO if getattr(self, name) is None)

    def resolve(self, n_rows: int | None = None, *, world_size: int = 1) -> TranscoderConfig:
        """A copy with every automatic setting filled in by its rule.

        Parameters
        ----------
        n_rows
            Training rows available (a store's rows); None when unknown (a stream).
        world_size
            Data-parallel processes; the automatic batch size is a multiple of it.
        """
        values = {}
        if self.learning_rate is None:
            values["learning_rate"] = 2e-4 / math.sqrt(self.d_hidden / 2**14)
        batch_size = self.batch_size
        if batch_size is None:
            batch_size = MAX_BATCH
            # small data: smaller batches, so a pass over it is many distinct updates, not a few large ones
            while n_rows is not None and batch_size > MIN_BATCH and n_rows < batch_size * self.min_steps_per_epoch:
                batch_size //= 2
            values["batch_size"] = batch_size = max(world_size, batch_size - batch_size % world_size)
        if self.n_tokens is None:
            values["n_tokens"] = self.auto_steps * batch_size
        return replace(self, **values)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TranscoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown transcoder settings: {sorted(unknown)}.")
        return cls(**values)


@cache
def field_docs() -> dict[str, str]:
    """Each :class:`TranscoderConfig` field's docstring (the string after it in the class body), for help
    texts: the dataclass doubles as the command line's transcoder options."""
    body = ast.parse(inspect.getsource(TranscoderConfig)).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
