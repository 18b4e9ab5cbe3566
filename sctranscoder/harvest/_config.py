"""How a harvest runs, in one object (as :class:`sctranscoder.tc.TranscoderConfig` says how training runs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class HarvestConfig:
    """Settings of a harvest (:func:`sctranscoder.harvest.harvest`, :func:`sctranscoder.tl.harvest`,
    :func:`sctranscoder.llm.harvest`)."""

    batch_size: int = 16
    """Documents (cells, texts) per forward pass."""
    chunk_size: int = 256
    """Documents per shard (the unit of resuming)."""
    dtype: str = "float16"
    """Stored float type: ``"float16"``, ``"bfloat16"`` or ``"float32"``."""
    only_spans: bool = False
    """Keep only tokens inside a span (gene tokens); drop prompt text and answer tokens."""
    drop_special: bool = True
    """Drop special tokens (BOS, EOS); padding is never stored."""
    subsample: float = 1.0
    """Keep each remaining token with this probability."""
    seed: int = 0
    """Seed of the token subsampling."""

    @classmethod
    def build(cls, cfg=None, **settings):
        """``cfg`` (default: the defaults) with ``settings`` changing single fields (``None``: unchanged)."""
        return _built(cls, cfg, settings)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StreamConfig:
    """Settings of a live stream of shuffled rows (:func:`sctranscoder.harvest.stream_layers`)."""

    batch_size: int = 4096
    """Rows per yielded batch."""
    buffer_rows: int = 65_536
    """Rows the shuffle buffer holds; batches are drawn from a full buffer, refilled when half empty."""
    documents_per_pass: int = 16
    """Documents per forward pass."""
    only_spans: bool = False
    """Keep only tokens inside a span (gene tokens)."""
    drop_special: bool = True
    """Drop special tokens (BOS, ...)."""
    seed: int = 0
    """Seed of the document order and the shuffles."""
    epochs: int | None = None
    """Passes over the documents (``None``: forever)."""
    skip_batches: int = 0
    """Start after this many batches, as if they had been drawn (to resume training)."""
    max_batches: int | None = None
    """Stop after this many batches in all (skipped ones included)."""
    split_documents: bool = True
    """Under ``torch.distributed``: every process runs its share of each pass's documents."""
    autocast_dtype: object = None
    """Run the model under ``torch.autocast`` in this dtype (``None``: full precision)."""
    buffer_dtype: object = None
    """The buffers' dtype (default float32)."""
    buffer_device: object = None
    """The buffers' device (default: the model's)."""

    @classmethod
    def build(cls, cfg=None, **settings):
        """``cfg`` (default: the defaults) with ``settings`` changing single fields (``None``: unchanged)."""
        return _built(cls, cfg, settings)


def _built(cls, cfg, settings: dict):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"Unknown settings {unknown}; {cls.__name__} has {sorted(known)}.")
    given = {k: v for k, v in settings.items() if v is not None}
    return replace(cfg if cfg is not None else cls(), **given)
