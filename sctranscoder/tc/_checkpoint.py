"""Training checkpoints: the transcoder, its optimizer state and the step, in one atomically written file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .._atomic import atomic_path
from ._io import CONFIG, WEIGHTS

CHECKPOINT = "checkpoint.safetensors"


def save_checkpoint(path: Path, transcoder, optimizer, step: int) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in transcoder.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"step": str(step), "config": json.dumps(transcoder.cfg.to_dict())})


def load_checkpoint(path: Path, transcoder, optimizer) -> int:
    """Restore the transcoder and optimizer from ``path``; returns the step to continue from."""
    from safetensors import safe_open

    with safe_open(path, framework="pt", device=str(transcoder.device)) as handle:
        meta = handle.metadata()
        saved = json.loads(meta["config"])
        if saved != transcoder.cfg.to_dict():
            changed = sorted(k for k in saved if saved[k] != transcoder.cfg.to_dict().get(k))
            raise ValueError(f"{path} was written with other settings ({', '.join(changed)} differ); delete it to "
                             "start over, or train with the same settings to resume.")
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    transcoder.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return int(meta["step"])


def move_final_into_place(out_dir: Path) -> None:
    """The finished transcoder replaces the checkpoint folder's content: weights, config, no checkpoint."""
    final = out_dir.with_name(out_dir.name + ".final")
    for name in (WEIGHTS, CONFIG):  # config last: it marks the folder as a finished transcoder
        os.replace(final / name, out_dir / name)
    final.rmdir()
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
