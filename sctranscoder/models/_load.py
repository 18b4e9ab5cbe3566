"""Load a C2S model (or any Hugging Face causal LM) with its tokenizer, offline-first."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .._progress import transformers_progress

logger = logging.getLogger(__name__)

METADATA_FILE = "sctranscoder.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PROBE_SECONDS = 3.0


@dataclass
class C2SModel:
    """A causal LM, its tokenizer, and what sctranscoder knows about how it was trained.

    ``metadata`` comes from ``sctranscoder.json`` beside the weights when the model
    was trained by :func:`sctranscoder.models.train_c2s` (labels, prompt settings,
    held-out cells); it is empty for other checkpoints.
    """

    model: object
    tokenizer: object
    name_or_path: str
    metadata: dict = field(default_factory=dict)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def architecture(self) -> str:
        return self.model.config.model_type

    @property
    def labels(self) -> list[str]:
        """Cell-type labels seen in training (empty when unknown)."""
        return list(self.metadata.get("labels", []))

    def to(self, device) -> C2SModel:
        self.model.to(device)
        return self

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return f"C2SModel({self.name_or_path!r}, {self.architecture}, {n / 1e6:.2f}M parameters, device={self.device})"


def _resolve_dtype(dtype):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise ValueError(f"dtype={dtype!r} is not a torch dtype; use e.g. 'float32', 'bfloat16' or torch.float16.")


def hub_reachable(timeout: float = _PROBE_SECONDS) -> bool:
    """Whether the Hugging Face Hub answers a TCP connect within ``timeout`` (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    result = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _offline_message(name: str, revision: str | None = None) -> str:
    folder = "./" + name.split("/")[-1]
    # `hf` is huggingface_hub's command (huggingface_hub 1.x has no huggingface-cli)
    command = f"hf download {name}" + (f" --revision {revision}" if revision else "") + f" --local-dir {folder}"
    return (
        f"Cannot load {name!r}: it is not a local folder, not in the Hugging Face cache, and the Hub "
        f"cannot be reached. On a machine with access, run `{command}`, copy the folder here, and load it "
        f"with sct.models.load('{folder}')."
    )


def load(
    name_or_path,
    *,
    dtype=None,
    device=None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: bool = True,
) -> C2SModel:
    """Load a causal LM and its tokenizer from a local folder or the Hugging Face Hub.

    Parameters
    ----------
    name_or_path
        A folder in the Hugging Face layout (``config.json``, weights, tokenizer
        files), or a Hub id such as ``"vandijklab/C2S-Pythia-410m-cell-type-prediction"``.
        Folders load with no network; a Hub id is taken from the local cache when
        there, and otherwise downloaded only if the Hub answers within seconds.
    dtype
        Weights' dtype (``"float32"``, ``"bfloat16"``, a ``torch.dtype``);
        ``None`` keeps the checkpoint's.
    device
        Where to put the model (``"cpu"``, ``"cuda"``, ...); default CPU.
    trust_remote_code
        Passed to transformers; never on unless you ask.
    revision
        Hub revision (branch, tag or commit).
    progress
        Show transformers' loading and download bars (on a terminal only); False prints nothing.

    Returns
    -------
    A :class:`C2SModel` holding the model (in eval mode) and tokenizer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _resolve_dtype(dtype)
    path = Path(name_or_path).expanduser()
    kwargs = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json; is it a Hugging Face model folder?")
        source, local_only = str(path), True
    elif path.exists():
        raise NotADirectoryError(f"{path} is a file; pass the folder that holds config.json and the weights.")
    else:
        name = str(name_or_path)
        if not _HUB_ID.match(name):
            raise FileNotFoundError(f"{name!r} is neither an existing folder nor a Hugging Face Hub id.")
        source, local_only = name, _in_cache(name, revision)
        if not local_only and not hub_reachable():
            raise OSError(_offline_message(name, revision))
    with transformers_progress(progress):  # transformers draws its bars whatever we are asked
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local_only, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    if device is not None:
        model.to(device)
    metadata = {}
    if path.is_dir() and (path / METADATA_FILE).is_file():
        metadata = json.loads((path / METADATA_FILE).read_text())
    logger.info("loaded %s (%s)", source, model.config.model_type)
    return C2SModel(model, tokenizer, str(name_or_path), metadata)


def _in_cache(name: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json", revision=revision)
        return isinstance(hit, str)
    except Exception:  # an unusual cache layout is not an error: fall back to the network path
        return False
