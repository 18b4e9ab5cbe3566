import html.parser
import io
import re

import anndata as ad
import matplotlib
import networkx as nx

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from browser import Chromium  # noqa: E402

import sctranscoder as sct  # noqa: E402

TYPES = {"CD14+ Monocyte": "CD14+ Monocyte", "CD19+ B": "B cell", "CD56+ NK": "Natural killer cell"}


@pytest.fixture(scope="module")
def adata():
    """Cells of three types and 12 features; features 0-2 fire in one type each and read that type's markers."""
    rng = np.random.default_rng(0)
    markers = sct.genesets.load("immune_markers")
    genes = list(dict.fromkeys(g for name in TYPES.values() for g in markers[name]))
    genes += [g for g in sct.genesets.load("hallmark")["HALLMARK_HYPOXIA"] if g not in genes][:60]
    labels = np.concatenate([np.repeat(list(TYPES), 20), ["Tiny"] * 3])  # a small group of 3 cells
    cells = np.abs(rng.normal(0, 0.2, size=(63, 12))).astype(np.float32)
    cells[rng.random(cells.shape) < 0.5] = 0
    gene_activity = np.abs(rng.normal(0, 0.05, size=(len(genes), 12)))
    for f, (label, marker_set) in enumerate(TYPES.items()):
        cells[labels == label, f] += 2
        for g in markers[marker_set]:
            gene_activity[genes.index(g), f] += 1
    cells[labels == "Tiny", 5] += 3
    data = ad.AnnData(np.zeros((63, 3), np.float32))
    data.obs["bulk_labels"] = pd.Categorical(labels)
    data.obsm["features"] = cells
    data.uns["features"] = {"layer": 1, "pool": "max", "tokens": "genes", "n_genes": 200, "d_hidden": 12,
                            "activation": "topk", "genes": genes, "gene_activity": gene_activity,
                            "gene_occurrences": np.full(len(genes), 10)}
    return data


@pytest.fixture(scope="module")
def report_path(adata, tmp_path_factory):
    enrichment = sct.tl.enrich_beyond_spelling(adata, ["immune_markers", "hallmark"], n_top=10, n_null=100)
    quality = pd.DataFrame({"fvu": [0.004, 0.008, 0.007, 0.0064], "l0": [32.0, 32, 32, 32],
                            "accuracy_kept": [1.0, 1.0, 0.97, 0.96]}, index=pd.Index(["0", "1", "2", "all"],
                                                                                    name="layer"))
    graph = nx.DiGraph()  # a circuit with two features of the activity's layer and one of a layer not computed
    graph.add_node("feature:1:0", kind="feature", layer=1, feature=0, influence=0.5)
    graph.add_node("feature:1:3", kind="feature", layer=1, feature=3, influence=0.2)
    graph.add_node("feature:0:7", kind="feature", layer=0, feature=7, influence=0.4)
    graph.add_node("input:CD14", kind="input", label="CD14", influence=0.3)
    circuit_enrichment = sct.tl.enrich_circuit({"CD14+ Monocyte": ["CD14", "LYZ", "FCN1", "S100A8", "S100A9"]},
                                               ["immune_markers", "hallmark"], background=adata.uns["features"]["genes"])
    content = sct.report.from_adata(adata, "bulk_labels", quality=quality, enrichment=enrichment,
                                    gene_sets=["immune_markers", "hallmark"], model="test model",
                                    parameters={"transcoder steps": 1500}, circuits={"CD14+ Monocyte": graph},
                                    circuit_enrichment=circuit_enrichment,
                                    marker_sets={"Tiny": "T regulatory cell", "CD19+ B": "B cell"})
    content.section("CD19+ B").tables["Knock-out check"] = pd.DataFrame({"gene": ["MS4A1"], "effect": [-0.5]})
    content.section("CD19+ B").html["Interactive view"] = '<div id="hook-view">hook content</div>'
    figure, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    content.section("CD14+ Monocyte").circuit_figure = figure
    content.section("CD14+ Monocyte").input_genes = ["CD14", "LYZ", "S100A8"]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    content.section("CD19+ B").circuit_figure = buffer.getvalue()
    content.section("CD19+ B").input_genes = pd.Series({"MS4A1": 2.0, "CD79A": 3.0})
    plt.close(figure)
    path = tmp_path_factory.mktemp("report") / "report.html"
    sct.report.write_html(path, content)
    return path


def _images(page: str) -> int:
    return len(re.findall(r"<img ", page))


def _first_image(page: str) -> str:
    return re.search(r'<img alt="[^"]*" src="([^"]+)"', page).group(1)


# figures with captions, tables that fit, and a stated result in every cell-type section
LAYOUT_CHECK = """(() => {
    const figures = Array.from(document.querySelectorAll('img'));
    const uncaptioned = figures.filter(img => {
        const figure = img.closest('figure');
        const caption = figure && figure.querySelector('figcaption');
        return !caption || caption.textContent.trim().length < 10;
    }).map(img => img.alt || img.src.slice(0, 30));
    const page = document.documentElement.clientWidth;
    const tooWide = Array.from(document.querySelectorAll('table')).filter(table => {
        const box = table.getBoundingClientRect();
        const holder = table.parentElement;
        return box.right > page + 1 || holder.scrollWidth > holder.clientWidth + 1;
    }).map(table => (table.tHead ? table.tHead.textContent : table.textContent).slice(0, 60));
    const sections = Array.from(document.querySelectorAll('section.celltype'));
    const silent = sections.filter(s => {
        const result = s.querySelector('p.result');
        return !result || result.textContent.replace('Result.', '').trim().length < 20;
    }).map(s => s.querySelector('h2').textContent);
    return {figures: figures.length, uncaptioned: uncaptioned, too_wide: tooWide,
            page_scrolls_sideways: document.documentElement.scrollWidth > page + 1,
            sections: sections.length, silent_sections: silent};
})()"""


def test_report_is_one_self_contained_file(report_path, adata):
    page = report_path.read_text()
    assert [p.name for p in report_path.parent.iterdir()] == ["report.html"]  # written atomically, nothing beside
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no external files or URLs
    assert "<link" not in page and "<script src" not in page
    parser = html.parser.HTMLParser()
    parser.feed(page)  # parses
    for label in TYPES:
        assert f"<h2>{label}</h2>" in page
    assert "test model" in page and "Accuracy kept" in page and "0.6%" in page
    assert "accuracy_kept" not in page and "The second accuracy over the first" in page  # plain names, explained
    assert "Layer 1: 12 of its 12 transcoder features" in page  # the opening line names the layer
    for package in ("sctranscoder", "torch", "transformers", "scanpy", "gseapy", "numpy"):
        assert f"<td>{package}</td>" in page
    assert "MSigDB v7.5.1" in page and "BSD 3-Clause" in page  # gene-set sources cited
    assert "transcoder steps" in page and "1,500" in page
    assert "S100A8" in page and "MS4A1" in page  # circuit input genes
    assert "How much of each gene-set library the model can see" in page and "sets testable" in page
    assert "median_fraction_visible" not in page
    assert "hook content" in page and "Knock-out check" in page  # other parts can add to a section
    assert "The circuit's features" in page and page.count('class="card"') == 2  # layer-1 features get cards
    assert "Circuit enrichment: gene sets among the circuit's input genes" in page
    assert "Feature enrichment: gene sets of these features" in page
    tiny = page[page.index("<h2>Tiny</h2>"):]
    tiny = tiny[:tiny.index("</section>")]
    assert "a small group" in tiny and "nothing is headlined" in tiny and "<table" not in tiny.split("Feature analysis")[0]
    # the top feature of each type is the one planted there, with its marker set enriched
    content = sct.report.from_adata(adata, "bulk_labels", figures=False,
                                    enrichment=sct.tl.enrich_features(adata, "immune_markers", n_top=10))
    for f, (label, marker_set) in enumerate(TYPES.items()):
        section = content.section(label)
        assert section.features.index[0] == f
        assert section.features.AUROC.iloc[0] == 1.0
        best = section.enrichment.sort_values("P-value").iloc[0]
        assert (best.feature, best.Term) == (str(f), marker_set)
    # 2 circuit figures + 4 feature-gene figures (the small group too) + 1 overview dotplot
    assert _images(page) == 7
    assert "Gene sets beyond spelling (both tests) of the two most specific features" in page


def test_figures_and_bad_input():
    assert sct.report.figure_png(b"\x89PNG\r\n\x1a\nrest").startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="not a PNG"):
        sct.report.figure_png(b"GIF89a")
    with pytest.raises(TypeError, match="matplotlib Figure"):
        sct.report.figure_png(42)
    with pytest.raises(TypeError, match="not both"):
        sct.report.write_html("x.html", sct.report.ReportContent(), title="t")


@pytest.mark.browser
def test_report_in_headless_chromium(report_path):
    page = report_path.read_text()
    with Chromium() as browser:
        session = browser.open(report_path.as_uri())
        state = browser.evaluate(session, """(() => {
            const images = Array.from(document.images);
            return {images: images.length,
                    rendered: images.filter(i => i.complete && i.naturalWidth > 0).length,
                    widths: images.map(i => i.naturalWidth),
                    marked: document.body.getAttribute('data-figures-rendered'),
                    problems: document.body.getAttribute('data-problems'),
                    banner_hidden: document.getElementById('page-errors').hidden,
                    tables: document.querySelectorAll('table.sortable').length};
        })()""")
        assert state["images"] == _images(page) == 7
        assert state["rendered"] == 7 and min(state["widths"]) > 50
        assert state["marked"] == "7" and state["problems"] == "0" and state["banner_hidden"]
        # sortable: click the quality table's FVU header twice
        sorted_values = browser.evaluate(session, """(() => {
            const table = document.querySelector('table.sortable');
            const header = Array.from(table.tHead.rows[0].cells).find(th => th.textContent.startsWith('Variance missed'));
            const column = header.cellIndex;
            const read = () => Array.from(table.tBodies[0].rows).map(r => parseFloat(r.cells[column].dataset.value));
            header.click(); const up = read();
            header.click(); const down = read();
            return {up, down};
        })()""")
        assert sorted_values["up"] == sorted(sorted_values["up"]) == [0.004, 0.0064, 0.007, 0.008]
        assert sorted_values["down"] == sorted(sorted_values["up"], reverse=True)
        assert browser.errors(session) == []
        layout = browser.evaluate(session, LAYOUT_CHECK)
        assert layout["figures"] == state["images"] and layout["uncaptioned"] == []  # every figure has a caption
        assert layout["too_wide"] == [] and layout["page_scrolls_sideways"] is False  # every table fits the page
        assert layout["sections"] == 4 and layout["silent_sections"] == []  # each says its result or its absence

        # the layout checks catch a table too wide, a figure without caption and a section without a result
        bad = report_path.with_name("bad_layout.html")
        wide_row = "".join(f"<td>{'W' * 30}_{i}</td>" for i in range(40))
        bad.write_text(page.replace("</body>", f'<div class="scroll"><table><tr>{wide_row}</tr></table></div>'
                                               f'<figure><img src="{_first_image(page)}"></figure>'
                                               '<section class="celltype"><h2>Silent</h2></section></body>'))
        session = browser.open(bad.as_uri())
        layout = browser.evaluate(session, LAYOUT_CHECK)
        assert layout["too_wide"] and layout["uncaptioned"] and layout["silent_sections"] == ["Silent"]

        # the same checks catch a broken page: a figure that does not decode and a script error
        broken = report_path.with_name("broken.html")
        broken.write_text(page.replace("</body>", '<img src="data:image/png;base64,AAAA">'
                                                  "<script>notAFunction();</script></body>"))
        session = browser.open(broken.as_uri())
        state = browser.evaluate(session, "({problems: document.body.getAttribute('data-problems'), "
                                          "text: document.getElementById('page-errors').textContent})")
        assert int(state["problems"]) >= 2 and "did not render" in state["text"]
        assert any("notAFunction" in e for e in browser.errors(session))


def test_a_two_gene_overlap_is_not_a_headline():
    """A circuit's genes sharing 2 of a 3-gene marker set of another cell type pass the FDR, but the result says
    why that names nothing rather than headlining it."""
    from types import SimpleNamespace

    from sctranscoder.report._from_adata import _result

    heads = sct.tl.headline_sets(pd.DataFrame({
        "List": ["T reg"], "Gene_set": ["immune_markers"], "Term": ["Memory B cell"], "Overlap": ["2/3"],
        "P-value": [1e-4], "Adjusted P-value": [0.039], "Odds Ratio": [50.0], "Genes": ["CD27;CRIP1"]}))
    section = SimpleNamespace(small_group=False, n_cells=8)
    said = _result("T reg", section, None, None, heads, None, "", True, 0.05, None)
    assert "enriched for" not in said
    assert "reach Memory B cell" in said and "only 2 of its genes are shared (CD27, CRIP1)" in said
    # when the genes tested are the measured ones (they pass their rank-matched null), the result says so
    table = pd.DataFrame({"gene": ["CD27"], "knockout_effect": [0.1], "effect": [0.2], "passes": [True]})
    section.validation = {"genes_by_knockout": table, "n_cells_knockout": 9}
    said = _result("T reg", section, None, None, heads, None, "", True, 0.05, None)
    assert said.startswith("The 1 gene whose knockout lowers P(T reg) beyond a random gene at the same rank (in 9 "
                           "cells) reach Memory B cell")
    section.validation = {"genes_by_knockout": table.assign(passes=False), "n_cells_knockout": 9}
    said = _result("T reg", section, None, None, heads, None, "", True, 0.05, None)
    assert said.startswith("No gene's knockout moved P(T reg) more than knocking out a random gene at the same rank "
                           "in these 9 cells. Its circuit's input genes reach Memory B cell")
    # knockout effects never set against their null are not called measured
    section.validation = {"genes_by_knockout": table.drop(columns=["effect", "passes"])}
    said = _result("T reg", section, None, None, heads, None, "", True, 0.05, None)
    assert said.startswith("Its circuit's input genes reach Memory B cell")


def test_measured_gene_ranking_is_shown_beside_the_attributed_one(tmp_path):
    """With a knockout check, the genes that pass their rank-matched null are the measured list; the circuit's
    ranking sits beside it."""
    from sctranscoder.cli._commands import read_validation, write_validation

    attributed = pd.DataFrame({"gene": ["LYZ", "CD79A", "MS4A1"], "attribution": [0.9, 0.5, -0.1],
                               "influence": [0.3, 0.2, 0.1], "n_cells": [2, 2, 1], "fraction_of_cells": [1, 1, 0.5]})
    measured = pd.DataFrame({"gene": ["CD79A", "MS4A1", "LYZ"], "knockout_effect": [0.8, 0.3, -0.2],
                             "knockout_effect_logodds": [1.1, 0.4, -0.3], "attribution": [0.5, -0.1, 0.9],
                             "n_cells": [8, 5, 8], "features": ["L1/F7, L2/F3", "", "L0/F1"],
                             "effect": [1.1, 0.4, -0.3], "ci_low": [0.6, 0.1, -0.6], "ci_high": [1.6, 0.7, 0.0],
                             "null_mean": [0.01, -0.02, 0.0], "null_sd": [0.05, 0.05, 0.05], "z": [21.8, 8.4, -6.0],
                             "p_value": [1e-9, 1e-6, 1.0], "fdr": [3e-9, 1.5e-6, 1.0], "passes": [True, True, False]})
    validation = {"n_cells": 2, "n_cells_knockout": 8, "max_fdr": 0.05, "min_cells": 3, "message": "", "n_genes": 3, "spearman": -0.5, "sign_agreement_top5": 2 / 3, "feature_share": 0.83,
                  "ablation": "zero", "circuit_features_cells": [140, 152], "genes_by_knockout": measured,
                  "genes": attributed[["gene", "attribution"]].assign(knockout_effect=[-0.2, 0.8, 0.3])}
    write_validation(validation, tmp_path, "CD19+_B")  # what `circuits` writes and `report` reads back
    again = read_validation(tmp_path, "CD19+_B")
    pd.testing.assert_frame_equal(again["genes_by_knockout"], measured)
    for shown in (validation, again):
        page = sct.report.render_html(sct.report.ReportContent(cell_types=[
            sct.report.CellTypeSection("CD19+ B", input_genes=attributed, validation=shown)]))
        genes = page[page.index("Circuit genes: measured and attributed"):]
        # the measured table comes first, in its own order, labelled; the attributed one beside it
        left, right = genes.index('tag measured">measured</span> Genes whose knockout passes a random gene at the '
                                  'same rank (2 of 3 tested, in 8 cells)'), \
            genes.index('tag attributed">attributed</span> The circuit')
        assert left < right
        table = genes[left:right]
        assert table.index(">CD79A<") < table.index(">MS4A1<") and ">LYZ<" not in table  # LYZ does not pass
        assert "knockout effect (measured)" in table and "circuit features it feeds (attributed)" in table
        assert "random gene, same rank" in table and "0.6 to 1.6" in table and "list to read" not in table
        assert "L1/F7, L2/F3" in table
        assert genes[right:].index(">LYZ<") < genes[right:].index(">CD79A<")
        assert "83%" in page and "140, 152 features per cell" in page
    older = {**validation, "genes_by_knockout": measured.drop(columns=["passes"])}  # effects without their null
    page = sct.report.render_html(sct.report.ReportContent(cell_types=[
        sct.report.CellTypeSection("CD19+ B", input_genes=attributed, validation=older)]))
    assert "Genes ranked by knockout effect (no null)" in page and "none is called measured" in page
    alone = sct.report.render_html(sct.report.ReportContent(cell_types=[
        sct.report.CellTypeSection("CD19+ B", input_genes=attributed)]))
    section = alone.split("<section", 1)[1].split("</section>", 1)[0]  # the glossary after it explains both words
    assert "measured" not in section and 'tag attributed">attributed' in section


def test_a_gene_at_the_top_of_two_circuits_is_explained_by_its_knockouts():
    """A gene in the top 10 of two types' circuits is read through its rank-matched knockout in each type: a gene
    the model uses for both calls where it passes in both, a position artefact where it does not; a gene in one top list is not listed."""
    from sctranscoder.report._shared_genes import shared_circuit_genes

    def section(name, attributed, knockouts):
        genes = pd.DataFrame({"gene": attributed, "attribution": np.linspace(1, 0.1, len(attributed))})
        table = pd.DataFrame([{"gene": g, "effect": e, "z": z, "passes": p, "n_cells": 12, "mean_rank": r}
                              for g, e, z, p, r in knockouts])
        return sct.report.CellTypeSection(name, input_genes=genes, validation={"genes_by_knockout": table,
                                                                               "n_cells_knockout": 12})

    b = section("B", ["CD79A", "CD52", "HLA-DRA", "MS4A1"],
                [("CD79A", 0.5, 9.0, True, 14), ("CD52", 0.01, 0.3, False, 3), ("HLA-DRA", 0.4, 7.0, True, 5)])
    mono = section("Monocyte", ["LYZ", "CD52", "HLA-DRA"],
                   [("LYZ", 0.6, 8.0, True, 2), ("CD52", 0.02, 0.5, False, 4), ("HLA-DRA", 0.3, 6.0, True, 6)])
    table = shared_circuit_genes([b, mono]).set_index("gene")
    assert sorted(table.index) == ["CD52", "HLA-DRA"]  # CD79A, MS4A1 and LYZ are in one type's list only
    assert "the model uses HLA-DRA for each" in table.loc["HLA-DRA", "reading"] and "artefact" not in table.loc["HLA-DRA", "reading"]
    assert "position artefact" in table.loc["CD52", "reading"] and "B, Monocyte" in table.loc["CD52", "reading"]
    assert "mean sentence position 3" in table.loc["CD52", "evidence"]
    page = sct.report.render_html(sct.report.ReportContent(cell_types=[b, mono]))
    shared = page[page.index("Genes at the top of more than one cell type"):]
    assert "<strong>CD52</strong> (B, Monocyte)" in shared and "<strong>LYZ</strong>" not in shared
    lone = sct.report.render_html(sct.report.ReportContent(cell_types=[b]))
    assert "more than one cell type" not in lone


def test_the_overview_counts_testable_features_as_the_controls_do():
    """The overview's share and the controls' headline share one denominator: the testable features, where the
    controls read the same firing features; otherwise the firing features, said so."""
    from sctranscoder.report._from_adata import _testable
    from sctranscoder.tl._controls import COLUMNS

    controls = pd.DataFrame([[1, "trained", 50, 40, 12, 0.3, float("nan"), ""],
                             [1, "random_directions", 50, 44, 2, 2 / 44, 0.003, ""]], columns=COLUMNS)
    tested, words = _testable(controls, 1, 50)
    assert tested == 40 and "40 of them list at least 3 genes" in words
    assert _testable(controls, 1, 60) == (60, "Of them, ")  # the controls read other features
    assert _testable(controls, 2, 50) == (50, "Of them, ")  # no control for this layer
    assert _testable(None, 1, 50) == (50, "Of them, ")
