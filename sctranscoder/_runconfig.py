"""Run configuration: one YAML file with a section of settings per pipeline step.

The quickstart writes the file it ran with; any ``sctranscoder`` subcommand given
``--config FILE`` takes its section's values as defaults (options on the command
line still win), so a run can be repeated exactly.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ._atomic import atomic_path

RUN_FILE = "run.yaml"


def write_run_config(path, sections: dict) -> Path:
    """Write ``{step: {option: value}}`` (plain values only) atomically."""
    from . import __version__

    path = Path(path)
    document = {"sctranscoder": __version__, **{k: _plain(v) for k, v in sections.items()}}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def read_run_config(path, step: str) -> dict:
    """The settings of one step, or a ``ValueError`` naming what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"run configuration {path} is not a file")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"run configuration {path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"run configuration {path} must be a mapping of step names to settings")
    section = document.get(step, {})
    if not isinstance(section, dict):
        raise ValueError(f"section {step!r} of {path} must be a mapping of option names to values")
    return section


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
