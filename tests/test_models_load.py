import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_models import ARCHITECTURES, save_tiny_model

import sctranscoder as sct


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_load_local_folder(arch, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = save_tiny_model(arch, tokenizer, tmp_path / arch)
    loaded = sct.models.load(folder)
    expected = "gpt_neox" if arch.startswith("gpt_neox") else arch
    assert loaded.architecture == expected and not loaded.model.training
    if arch.startswith("gpt_neox"):
        assert loaded.model.config.use_parallel_residual == (arch == "gpt_neox")
    ids = loaded.tokenizer("FTL CD74 AIF1", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = loaded.model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert loaded.metadata == {} and loaded.labels == []
    half = sct.models.load(str(folder), dtype="bfloat16", device="cpu")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert "M parameters" in repr(half)


def test_unreachable_hub_fails_fast_with_the_fix(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    monkeypatch.setenv("HF_HOME", "/nonexistent-sctranscoder-cache")
    start = time.monotonic()
    with pytest.raises(OSError, match=r"cannot be reached") as error:
        sct.models.load("vandijklab/C2S-Pythia-410m-cell-type-prediction")
    assert time.monotonic() - start < 10
    command = "hf download vandijklab/C2S-Pythia-410m-cell-type-prediction --local-dir ./C2S-Pythia-410m-cell-type-prediction"
    assert f"run `{command}`" in str(error.value)
    assert "sct.models.load('./C2S-Pythia-410m-cell-type-prediction')" in str(error.value)
    with pytest.raises(OSError) as error:
        sct.models.load("someone/model", revision="v2")
    assert "`hf download someone/model --revision v2 --local-dir ./model`" in str(error.value)


def test_offline_message_names_a_command_that_exists():
    from sctranscoder.models._load import _offline_message

    command = re.search(r"run `([^`]+)`", _offline_message("someone/model", "v2")).group(1).split()
    hf = shutil.which(command[0], path=str(Path(sys.executable).parent))  # the environment's own huggingface_hub
    assert hf is not None, f"no {command[0]!r} command beside {sys.executable}"
    # the parser rejects an unknown subcommand or option (exit 2) before it acts on --help
    result = subprocess.run([hf, *command[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    bad = subprocess.run([hf, *command[1:], "--no-such-option", "--help"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def test_offline_flag_is_respected(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not sct.models.hub_reachable()
    with pytest.raises(OSError, match="cannot be reached"):
        sct.models.load("someone/some-model")


def test_bad_paths_and_dtype(tmp_path, tokenizer):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        sct.models.load(tmp_path / "empty")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file"):
        sct.models.load(tmp_path / "weights.bin")
    with pytest.raises(FileNotFoundError, match="neither an existing folder"):
        sct.models.load(str(tmp_path / "missing" / "deeper" / "model"))
    folder = save_tiny_model("gpt2", tokenizer, tmp_path / "gpt2")
    with pytest.raises(ValueError, match="not a torch dtype"):
        sct.models.load(folder, dtype="float33")
