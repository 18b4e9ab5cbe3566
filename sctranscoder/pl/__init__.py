"""Plots (scanpy's ``sc.pl`` shape)."""

__all__: list[str] = []
