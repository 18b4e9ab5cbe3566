"""Activation stores: MLP inputs/outputs per token plus token metadata, in shards.

On disk (:class:`ActivationStore`) a store is a folder::

    store.json                  layers, widths, dtype, harvest settings; "complete" once done
    shard-0000000.safetensors   one chunk of documents: "layer{L}.in", "layer{L}.out" (rows x d)
                                and the metadata columns of :data:`METADATA`

Each shard is written to a temporary file, flushed, and renamed into place, so a
shard file either exists whole or not at all; shards are named by the chunk of
documents they hold, so a harvest that is started again skips the chunks already
on disk and ends with the same rows as an uninterrupted run. Several processes
may write shards of different chunks into one store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._atomic import atomic_path

FORMAT = "sctranscoder.activations"
VERSION = 1
DTYPES = ("float32", "float16", "bfloat16")
METADATA = {
    "document": "int64",       # index of the document (cell) in the harvested collection
    "position": "int32",       # token position in its document
    "gene": "int32",           # index of the gene (span) in its document the token belongs to, -1 outside spans
    "gene_id": "int32",        # that gene's index in the store's gene list (info["genes"]), -1 outside spans
    "last_of_gene": "bool",    # the token is the last of its gene
    "token_id": "int32",
}
_SHARD = "shard-{:07d}.safetensors"


def _key(layer: int, side: str) -> str:
    return f"layer{layer}.{side}"


def _torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype={name!r} must be one of {DTYPES}.")
    return getattr(torch, name)


def write_json_atomically(path: Path, content: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1))


class _Store:
    """What both stores share: reading layers and metadata, and shuffled batches."""

    layers: list[int]
    dtype: str

    # subclasses provide: chunks (sorted list), _rows(chunk), _load(chunk, keys) -> dict of tensors
    def __len__(self) -> int:
        return sum(self._rows(c) for c in self.chunks)

    @property
    def n_shards(self) -> int:
        return len(self.chunks)

    def _check_layer(self, layer: int) -> int:
        if layer not in self.layers:
            raise KeyError(f"Layer {layer} was not harvested; this store holds layers {self.layers}.")
        return layer

    def read(self, layer: int, chunks=None, dtype: str = "float32"):
        """All rows of one layer (or of the given chunks) as ``(mlp_in, mlp_out)`` tensors; for small stores."""
        import torch

        keys = [_key(self._check_layer(layer), "in"), _key(layer, "out")]
        parts = [self._load(c, keys) for c in (self.chunks if chunks is None else chunks)]
        target = _torch_dtype(dtype)
        if not parts:
            raise ValueError("The store holds no rows.")
        return tuple(torch.cat([p[k] for p in parts]).to(target) for k in keys)

    def metadata(self, chunks=None) -> dict[str, np.ndarray]:
        """The metadata columns (:data:`METADATA`) of every row, in store order."""
        parts = [self._load(c, list(METADATA)) for c in (self.chunks if chunks is None else chunks)]
        return {k: np.concatenate([p[k].numpy() for p in parts]) if parts else np.zeros(0, v)
                for k, v in METADATA.items()}

    def batches(self, layer: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                shards_in_memory: int = 8, chunks=None, rank: int = 0, world_size: int = 1,
                drop_last: bool = False, dtype: str = "float32"):
        """Batches of ``(mlp_in, mlp_out)`` rows of one layer, reading a few shards at a time.

        Shard order and rows are shuffled with ``seed`` and ``epoch`` (a new order each
        epoch, the same order for the same pair): shards are visited in a random
        order, ``shards_in_memory`` at a time, and rows are mixed across the shards
        in memory. With ``world_size > 1`` each rank reads its own share of the shards.
        Memory is bounded by ``shards_in_memory`` shards of one layer.
        """
        import torch

        keys = [_key(self._check_layer(layer), "in"), _key(layer, "out")]
        order = list(self.chunks if chunks is None else chunks)
        rng = np.random.default_rng([seed, epoch])
        if shuffle:
            order = [order[i] for i in rng.permutation(len(order))]
        order = order[rank::world_size]
        target = _torch_dtype(dtype)
        carry = None
        for start in range(0, len(order), max(1, shards_in_memory)):
            loaded = [self._load(c, keys) for c in order[start : start + shards_in_memory]]
            xs = [p[keys[0]] for p in loaded]
            ys = [p[keys[1]] for p in loaded]
            if carry is not None:
                xs.insert(0, carry[0])
                ys.insert(0, carry[1])
            x, y = torch.cat(xs), torch.cat(ys)
            if shuffle:
                perm = torch.from_numpy(rng.permutation(len(x)))
                x, y = x[perm], y[perm]
            full = len(x) - len(x) % batch_size
            for i in range(0, full, batch_size):
                yield x[i : i + batch_size].to(target), y[i : i + batch_size].to(target)
            carry = (x[full:], y[full:])
        if carry is not None and len(carry[0]) and not drop_last:
            yield carry[0].to(target), carry[1].to(target)


def shard_tensors(layers, mlp_in: dict, mlp_out: dict, metadata: dict, dtype: str) -> dict:
    """Tensors of one shard in their stored types, checked for consistent row counts."""
    import torch

    target = _torch_dtype(dtype)
    rows = len(metadata["document"])
    tensors = {}
    for name, kind in METADATA.items():
        value = torch.as_tensor(np.asarray(metadata[name], dtype=kind))
        if len(value) != rows:
            raise ValueError(f"Metadata column {name!r} has {len(value)} rows, 'document' has {rows}.")
        tensors[name] = value.contiguous()
    for layer in layers:
        for side, source in (("in", mlp_in), ("out", mlp_out)):
            value = source[layer]
            if value.shape[0] != rows:
                raise ValueError(f"Layer {layer} MLP {side}put has {value.shape[0]} rows, the metadata {rows}.")
            tensors[_key(layer, side)] = value.detach().to("cpu", target).contiguous()
    return tensors


class MemoryStore(_Store):
    """An activation store held in memory (tests, notebooks, small harvests)."""

    def __init__(self, layers, d_in: dict, d_out: dict, dtype: str = "float32", info: dict | None = None):
        _torch_dtype(dtype)
        self.layers, self.dtype = sorted(int(v) for v in layers), dtype
        self.d_in, self.d_out = {int(k): int(v) for k, v in d_in.items()}, {int(k): int(v) for k, v in d_out.items()}
        self.info = dict(info or {})
        self._shards: dict[int, dict] = {}

    @property
    def chunks(self) -> list[int]:
        return sorted(self._shards)

    def has_chunk(self, chunk: int) -> bool:
        return chunk in self._shards

    def write_shard(self, chunk: int, tensors: dict) -> None:
        self._shards[int(chunk)] = tensors

    def _rows(self, chunk):
        return len(self._shards[chunk]["document"])

    def _load(self, chunk, keys):
        return {k: self._shards[chunk][k] for k in keys}

    def finish(self, n_chunks: int) -> None:
        self.info["complete"], self.info["n_chunks"] = True, int(n_chunks)


class ActivationStore(_Store):
    """A sharded activation store in a folder (see the module docstring for the layout).

    Open an existing store with ``ActivationStore(path)``; create one with
    :meth:`create` (which also reopens a store with the same settings, to resume).
    """

    def __init__(self, path):
        self.path = Path(path)
        manifest = self.path / "store.json"
        if not manifest.exists():
            raise FileNotFoundError(f"{self.path} is not an activation store (no store.json); "
                                    "create one with ActivationStore.create or sct.tl.harvest.")
        self.manifest = json.loads(manifest.read_text())
        if self.manifest.get("format") != FORMAT or self.manifest.get("version", 0) > VERSION:
            raise ValueError(f"{manifest} is not a version <= {VERSION} {FORMAT} manifest.")
        self.layers = [int(v) for v in self.manifest["layers"]]
        self.dtype = self.manifest["dtype"]
        self.d_in = {int(k): v for k, v in self.manifest["d_in"].items()}
        self.d_out = {int(k): v for k, v in self.manifest["d_out"].items()}
        self._index: dict[int, int] = {}
        self.refresh()

    @classmethod
    def create(cls, path, layers, d_in: dict, d_out: dict, dtype: str = "float16", info: dict | None = None,
               resume: bool = True) -> ActivationStore:
        """Make a new store, or reopen one made with the same settings when ``resume`` is true.

        ``info`` is free-form (model name, harvest settings) and must match too,
        so that a resumed harvest cannot mix rows made differently.
        """
        _torch_dtype(dtype)
        path = Path(path)
        settings = {"format": FORMAT, "version": VERSION, "layers": sorted(int(v) for v in layers),
                    "d_in": {str(k): int(v) for k, v in sorted(d_in.items())},
                    "d_out": {str(k): int(v) for k, v in sorted(d_out.items())}, "dtype": dtype,
                    "info": json.loads(json.dumps(info or {}))}
        manifest = path / "store.json"
        if manifest.exists():
            existing = json.loads(manifest.read_text())
            if not resume:
                raise FileExistsError(f"{path} already holds an activation store; pass resume=True to continue it "
                                      "or choose a new folder.")
            stale = [k for k in settings if existing.get(k) != settings[k]]
            if stale:
                raise ValueError(f"{path} holds a store made with other settings ({', '.join(stale)} differ: "
                                 f"{[existing.get(k) for k in stale]} vs {[settings[k] for k in stale]}); "
                                 "use a new folder, or the same settings to resume.")
        else:
            if path.exists() and any(path.iterdir()):
                raise FileExistsError(f"{path} exists and is not an activation store; choose an empty or new folder.")
            path.mkdir(parents=True, exist_ok=True)
            write_json_atomically(manifest, {**settings, "complete": False})
        return cls(path)

    @property
    def info(self) -> dict:
        return self.manifest.get("info", {})

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete", False))

    @property
    def chunks(self) -> list[int]:
        return sorted(self._index)

    def refresh(self) -> None:
        """Re-read which shards exist (after another process wrote some)."""
        from safetensors import safe_open

        for file in self.path.glob("shard-*.safetensors"):
            chunk = int(file.name[6:13])
            if chunk not in self._index:
                with safe_open(file, framework="pt") as handle:
                    self._index[chunk] = int(handle.metadata()["rows"])

    def has_chunk(self, chunk: int) -> bool:
        return chunk in self._index or (self.path / _SHARD.format(chunk)).exists()

    def write_shard(self, chunk: int, tensors: dict) -> None:
        """Write one chunk's shard atomically (temporary file, fsync, rename)."""
        from safetensors.torch import save_file

        rows = len(tensors["document"])
        with atomic_path(self.path / _SHARD.format(chunk)) as tmp:
            save_file(tensors, tmp, metadata={"rows": str(rows), "chunk": str(chunk)})
        self._index[int(chunk)] = rows

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a killed writer; returns how many."""
        stale = list(self.path.glob(".tmp-*"))
        for file in stale:
            file.unlink(missing_ok=True)
        return len(stale)

    def finish(self, n_chunks: int) -> None:
        """Mark the store complete once all ``n_chunks`` chunks are on disk."""
        self.refresh()
        missing = sorted(set(range(n_chunks)) - set(self._index))
        if missing:
            raise RuntimeError(f"{len(missing)} chunks are missing (first: {missing[:5]}); run the harvest again "
                               "to resume it.")
        self.manifest.update(complete=True, n_chunks=int(n_chunks), rows=len(self))
        write_json_atomically(self.path / "store.json", self.manifest)

    def _rows(self, chunk):
        return self._index[chunk]

    def _load(self, chunk, keys):
        from safetensors import safe_open

        with safe_open(self.path / _SHARD.format(chunk), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in keys}

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return (f"ActivationStore({str(self.path)!r}, layers={self.layers}, {len(self):,} rows in {self.n_shards} "
                f"shards, {self.dtype}, {state})")
