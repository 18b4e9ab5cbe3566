"""The package as it installs: a built wheel carries the default model and the gene sets, and finds them."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sctranscoder
from sctranscoder.genesets._library import BUNDLED_FOLDER
from sctranscoder.models._default import DEFAULT_FOLDER

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(sctranscoder.__file__).resolve().parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # build from a copy of what the build reads: setuptools reuses a stale build/ folder in the tree
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "sctranscoder", source / "sctranscoder",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.training"))
    out = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out), str(source)], check=True, cwd=tmp, timeout=120)
    (built,) = out.glob("sctranscoder-*.whl")
    return built


@pytest.mark.parametrize(("folder", "needed"), [
    (DEFAULT_FOLDER, {"config.json", "model.safetensors", "tokenizer.json", "sctranscoder.json", "evaluation.json"}),
    (BUNDLED_FOLDER, {"manifest.json", "README.md", "hallmark.gmt", "reactome.gmt", "go_bp.gmt"}),
], ids=["default_model", "genesets"])
def test_wheel_carries_the_bundled_data(wheel, folder, needed):
    relative = folder.relative_to(PACKAGE)  # where the loader looks, inside the installed package
    shipped = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert needed <= set(shipped)
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
        for name in shipped:
            member = f"sctranscoder/{relative.as_posix()}/{name}"
            assert member in members, f"{member} is not in the wheel"
            assert archive.getinfo(member).file_size == (folder / name).stat().st_size


def test_installed_wheel_finds_model_and_genesets_offline(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # a pure-Python wheel installs by unpacking
        archive.extractall(site)
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SCTRANSCODER_DEFAULT_MODEL", "SCTRANSCODER_GENESETS")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    code = ("import sys; from pathlib import Path; import sctranscoder as sct; "
            "assert Path(sct.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), sct.__file__; "
            "m = sct.models.default(); assert len(m.labels) == 10; "
            "print(len(sct.genesets.load('hallmark')))")
    result = subprocess.run([sys.executable, "-c", code, str(site)], cwd=away, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "50"
