"""Gene-set libraries: the bundled ones (sctranscoder/data/genesets/), GMT paths, dicts, Enrichr names (cached)."""

from __future__ import annotations

import json
import os
import socket
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ._gmt import normalize_genes, read_gmt, write_gmt

# package data (pyproject.toml), so a wheel or a plain pip install carries it, not only a source checkout
BUNDLED_FOLDER = Path(__file__).resolve().parents[1] / "data" / "genesets"
ENRICHR_HOST = "maayanlab.cloud"


def bundled_folder() -> Path:
    """Where the bundled libraries live: ``$SCTRANSCODER_GENESETS``, else the package's ``data/genesets``."""
    return Path(os.environ.get("SCTRANSCODER_GENESETS", BUNDLED_FOLDER))


@lru_cache(maxsize=4)
def _manifest(folder: str) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"The bundled gene sets are not at {folder} (no manifest.json). They ship inside "
                                "the package (sctranscoder/data/genesets); an install without them is incomplete: "
                                "reinstall sctranscoder, or rebuild them from a source checkout with python "
                                "data/make_genesets.py; SCTRANSCODER_GENESETS may point to another copy.")
    return json.loads(path.read_text())


def libraries() -> pd.DataFrame:
    """The bundled libraries: one row per name, with set counts, source, version, license and attribution."""
    manifest = _manifest(str(bundled_folder()))
    table = pd.DataFrame.from_dict(manifest["libraries"], orient="index")
    table.index.name = "name"
    return table


def provenance(names=None) -> dict:
    """Source, version, license and attribution of bundled libraries (all when ``names`` is None)."""
    info = _manifest(str(bundled_folder()))["libraries"]
    return {n: info[n] for n in (info if names is None else names) if n in info}


@lru_cache(maxsize=16)
def _load_bundled(folder: str, name: str) -> dict:
    return read_gmt(Path(folder) / _manifest(folder)["libraries"][name]["file"])


def load(name: str, *, organism: str = "Human", cache_dir=None) -> dict[str, list[str]]:
    """One library as ``{term: [genes]}``.

    ``name`` is a bundled library (see :func:`libraries`), a path to a GMT file,
    or an Enrichr library name (e.g. ``"GO_Biological_Process_2025"``), which is
    downloaded once through gseapy and cached as GMT (``cache_dir``, default
    ``$SCTRANSCODER_CACHE`` or ``~/.cache/sctranscoder``) under ``genesets/``.
    """
    sets = _load_shared(name, organism, cache_dir)
    return {term: list(genes) for term, genes in sets.items()}


def _load_shared(name: str, organism: str, cache_dir) -> dict[str, list[str]]:
    """As :func:`load`, but a bundled library is the cached object itself (callers must not change it)."""
    folder = str(bundled_folder())
    if name in _manifest(folder)["libraries"]:
        return _load_bundled(folder, name)
    path = Path(name)
    if path.suffix.lower() == ".gmt" or path.is_file():
        return read_gmt(path)
    return _enrichr(name, organism, cache_dir)


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("SCTRANSCODER_CACHE", Path.home() / ".cache" / "sctranscoder"))


def _enrichr(name: str, organism: str, cache_dir) -> dict[str, list[str]]:
    if not name or any(c in name for c in "/\\\t\n"):
        raise ValueError(f"{name!r} is neither a bundled library, a GMT file nor an Enrichr library name.")
    cached = _cache_root(cache_dir) / "genesets" / "enrichr" / organism.lower() / f"{name}.gmt"
    if cached.is_file():
        return read_gmt(cached)
    bundled = ", ".join(_manifest(str(bundled_folder()))["libraries"])
    try:  # fail at once offline, instead of gseapy's retries with back-off
        socket.create_connection((ENRICHR_HOST, 443), timeout=3).close()
    except OSError as error:
        raise ConnectionError(
            f"{name!r} is not a bundled library ({bundled}) nor a GMT file, so it was taken as an Enrichr library "
            f"name, but Enrichr ({ENRICHR_HOST}) cannot be reached: {error}. Offline, use a bundled library or "
            f"a GMT file; or download it where there is network and copy it to {cached}."
        ) from error
    import gseapy

    available = gseapy.get_library_name(organism=organism)
    if name not in available:
        raise ValueError(f"{name!r} is not an Enrichr library for organism {organism!r} "
                         f"(gseapy.get_library_name lists {len(available)}), nor a bundled library ({bundled}).")
    sets = {term: normalize_genes(genes) for term, genes in gseapy.download_library(name, organism).items()}
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_gmt(sets, cached)
    return sets


def resolve(gene_sets, *, organism: str = "Human", cache_dir=None) -> dict[str, dict[str, list[str]]]:
    """Any accepted gene-set input as ``{library: {term: [genes]}}`` (genes normalized).

    Accepted: a name or GMT path (see :func:`load`), ``"all"`` (every bundled
    library), ``{term: [genes]}`` (one library called ``"custom"``),
    ``{library: {term: [genes]}}``, or a list of any of these.
    """
    if gene_sets is None:
        raise ValueError("gene_sets is required: a bundled library name (sct.genesets.libraries()), a GMT path, "
                         "a dict {term: [genes]} or a list of these.")
    if isinstance(gene_sets, (str, os.PathLike)):
        name = str(gene_sets)
        if name == "all":
            return {n: _load_shared(n, organism, cache_dir) for n in libraries().index}
        label = Path(name).name if Path(name).suffix.lower() == ".gmt" else name
        return {label: _load_shared(name, organism, cache_dir)}
    if isinstance(gene_sets, dict):
        if not gene_sets:
            raise ValueError("gene_sets is an empty dict.")
        if all(isinstance(v, dict) for v in gene_sets.values()):
            return {str(lib): _checked(sets, lib) for lib, sets in gene_sets.items()}
        return {"custom": _checked(gene_sets, "custom")}
    if isinstance(gene_sets, (list, tuple)):
        out = {}
        for item in gene_sets:
            for lib, sets in resolve(item, organism=organism, cache_dir=cache_dir).items():
                if lib in out:
                    raise ValueError(f"The library name {lib!r} appears twice in gene_sets; name them in a dict.")
                out[lib] = sets
        return out
    raise TypeError(f"gene_sets of type {type(gene_sets).__name__} is not understood; pass a library name, "
                    "a GMT path, a dict {term: [genes]} or a list of these.")


def _checked(sets: dict, library) -> dict[str, list[str]]:
    out = {}
    for term, genes in sets.items():
        if isinstance(genes, dict):
            raise TypeError(f"Library {library!r}: term {term!r} maps to a dict; expected a list of genes.")
        out[str(term)] = normalize_genes(genes)
    return out


def coverage(gene_sets, background) -> pd.DataFrame:
    """How much of each gene set the model can see: per term its size, how many of its genes are in
    ``background`` (the genes the model sees), and that fraction."""
    visible = set(normalize_genes(background))
    rows = []
    for library, sets in resolve(gene_sets).items():
        for term, genes in sets.items():
            n_visible = sum(g in visible for g in genes)
            rows.append((library, term, len(genes), n_visible, n_visible / len(genes)))
    return pd.DataFrame(rows, columns=["Gene_set", "Term", "n_genes", "n_visible", "fraction_visible"])


def coverage_summary(gene_sets, background, min_visible: int = 1) -> pd.DataFrame:
    """Per library: its sets, genes, and how many of each the background holds (sets with at least
    ``min_visible`` visible genes are the testable ones), and the median fraction of a set visible."""
    visible = set(normalize_genes(background))
    rows = {}
    for library, sets in resolve(gene_sets).items():
        counts = pd.Series([sum(g in visible for g in genes) for genes in sets.values()], dtype=float)
        sizes = pd.Series([len(genes) for genes in sets.values()], dtype=float)
        genes = {g for members in sets.values() for g in members}
        rows[library] = {"n_sets": len(sets), "n_sets_testable": int((counts >= min_visible).sum()),
                         "n_genes": len(genes), "n_genes_visible": len(genes & visible),
                         "median_fraction_visible": float((counts / sizes).median())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "Gene_set"
    return table
