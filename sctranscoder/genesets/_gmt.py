"""GMT files (one gene set a line: name, description, genes, tab-separated), read and written."""

from __future__ import annotations

from pathlib import Path

from .._atomic import atomic_path
from ._gene_lists import gene_names


def normalize_genes(genes) -> list[str]:
    """Gene symbols as cell2sentence writes them: stripped, uppercased, first occurrence kept, empties dropped.

    ``genes`` is anything :func:`gene_names` reads (a list, a Series, a table with a gene column).
    """
    out = (str(g).strip().upper() for g in gene_names(genes))
    return list(dict.fromkeys(g for g in out if g))


def read_gmt(path, *, with_descriptions: bool = False):
    """Read a GMT file into ``{term: [genes]}`` (genes uppercased, de-duplicated).

    With ``with_descriptions=True`` also return ``{term: description}``. Lines
    with fewer than three fields or no genes are skipped, as gseapy does; a term
    repeated in the file is an error (gseapy would silently keep the last).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No GMT file at {path}.")
    sets, descriptions = {}, {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 3 or not fields[0].strip():
                continue
            term = fields[0].strip()
            if term in sets:
                raise ValueError(f"{path}:{number}: the term {term!r} appears twice; term names must be unique.")
            genes = normalize_genes(fields[2:])
            if genes:
                sets[term], descriptions[term] = genes, fields[1]
    if not sets:
        raise ValueError(f"{path} holds no gene sets (expected lines 'name<TAB>description<TAB>gene<TAB>...').")
    return (sets, descriptions) if with_descriptions else sets


def write_gmt(gene_sets: dict, path, descriptions: dict | None = None) -> Path:
    """Write ``{term: [genes]}`` as a GMT file, atomically (whole or not at all)."""
    path = Path(path)
    lines = []
    for term, genes in gene_sets.items():
        term = str(term)
        if not term or "\t" in term or "\n" in term:
            raise ValueError(f"Gene-set name {term!r} is empty or holds a tab or newline; GMT cannot store it.")
        description = str((descriptions or {}).get(term, "")).replace("\t", " ").replace("\n", " ")
        lines.append("\t".join([term, description, *normalize_genes(genes)]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
