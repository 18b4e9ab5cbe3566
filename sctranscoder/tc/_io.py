"""Transcoders on disk: safetensors weights and a JSON config beside them; nothing is unpickled."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ._config import TranscoderConfig

FORMAT = "sctranscoder.transcoder"
VERSION = 1
WEIGHTS = "transcoder.safetensors"
CONFIG = "config.json"


def save(transcoder, folder, *, hook_point: str = "mlp", model_name: str | None = None, layer: int | None = None,
         metrics: dict | None = None) -> Path:
    """Write ``transcoder`` to ``folder`` (replaced atomically if it exists).

    ``config.json`` records the format version, the :class:`TranscoderConfig`, what
    it replaces (``hook_point``, ``model_name``, ``layer``) and any ``metrics``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in transcoder.state_dict().items()}
        save_file(state, staging / WEIGHTS)
        meta = {"format": FORMAT, "version": VERSION, "config": transcoder.cfg.to_dict(), "hook_point": hook_point,
                "model_name": model_name, "layer": layer, "metrics": metrics or {}}
        (staging / CONFIG).write_text(json.dumps(meta, indent=1))
        for file in staging.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(staging, folder)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_config(folder) -> dict:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no transcoder ({CONFIG} missing); save one with sct.tc.save.")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("version", 0) > VERSION:
        raise ValueError(f"{path} is not a version <= {VERSION} {FORMAT} file.")
    return meta


def load(folder, *, device=None):
    """Load a transcoder saved by :func:`save`; its metadata is in ``transcoder.metadata``."""
    from safetensors.torch import load_file

    from ._model import Transcoder

    meta = read_config(folder)
    transcoder = Transcoder(TranscoderConfig.from_dict(meta["config"]), device=device)
    state = load_file(Path(folder) / WEIGHTS, device=str(device) if device is not None else "cpu")
    transcoder.load_state_dict(state)
    transcoder.metadata = {k: v for k, v in meta.items() if k != "config"}
    return transcoder.eval()


def load_layers(folder, *, device=None) -> dict:
    """Every transcoder saved under ``folder/layer{L}/`` (as :func:`sctranscoder.tl.train_transcoders` and
    ``sctranscoder train`` write them), as ``{layer: Transcoder}``."""
    folder = Path(folder)
    found = sorted((int(p.name[5:]), p) for p in folder.glob("layer*")
                   if p.name[5:].isdigit() and (p / CONFIG).is_file())
    if not found:
        raise FileNotFoundError(f"No layer*/ transcoder folders with {CONFIG} under {folder}.")
    return {layer: load(path, device=device) for layer, path in found}
