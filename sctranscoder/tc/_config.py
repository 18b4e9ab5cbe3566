"""Transcoder settings: one dataclass for the architecture and its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")
REVIVAL = ("auxk", "resample", "none")


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
    """``"relu"`` (L1 penalty weighted by decoder norms), ``"topk"`` (k largest per token),
    ``"batchtopk"`` (k x batch largest per batch in training, a learned threshold in inference),
    or ``"jumprelu"`` (learned per-feature thresholds, L0 penalty through straight-through estimators)."""
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
    learning_rate: float = 2e-4
    """Peak Adam learning rate (after warmup)."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    decay: str = "cosine"
    """Learning-rate decay after warmup: ``"cosine"``, ``"linear"`` (both to 10% of the peak) or ``"none"``."""
    batch_size: int = 4096
    """Tokens per optimizer step (over all processes)."""
    n_tokens: int = 2_000_000
    """Training tokens in all (the step count is ``n_tokens // batch_size``)."""
    seed: int = 0
    """Seed of the initialization and of the data order."""

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} must be one of {ACTIVATIONS}.")
        if self.revival not in REVIVAL:
            raise ValueError(f"revival={self.revival!r} must be one of {REVIVAL}.")
        if self.decay not in ("cosine", "linear", "none"):
            raise ValueError(f"decay={self.decay!r} must be 'cosine', 'linear' or 'none'.")
        for name in ("d_in", "d_out", "d_hidden", "k", "batch_size", "n_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1.")
        if self.activation in ("topk", "batchtopk") and self.k > self.d_hidden:
            raise ValueError(f"k={self.k} is larger than d_hidden={self.d_hidden}.")

    @property
    def n_steps(self) -> int:
        return max(1, self.n_tokens // self.batch_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TranscoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown transcoder settings: {sorted(unknown)}.")
        return cls(**values)
