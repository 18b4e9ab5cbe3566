"""AnnData-facing tools (scanpy's ``sc.tl`` shape); filled in by the model, harvest and transcoder steps."""

__all__: list[str] = []
