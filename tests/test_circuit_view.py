"""The interactive circuit view of the report (headless Chromium: a click changes the panel) and supernodes."""

from types import SimpleNamespace

import networkx as nx
import pytest
from browser import Chromium

import sctranscoder as sct

B_GENES = ["CD79A", "CD79B", "MS4A1", "CD19", "BLK"]
NK_GENES = ["GNLY", "NKG7", "KLRD1", "PRF1", "GZMB"]


def _circuit():
    """A merged two-cell circuit by hand: B-cell genes feed feature 0:1, NK genes feature 0:2, both feed 1:3."""
    graph = nx.DiGraph(target="log-odds(CD19+ B)", n_layers=2, n_graphs=2, replacement=0.9, completeness=0.95,
                       replacement_pruned=0.8, completeness_pruned=0.9)
    graph.add_node("output", kind="output", layer=2, label="log-odds(CD19+ B)", influence=0.0, attribution=3.0)
    graph.add_node("input:prompt template", kind="input", layer=-1, label="prompt template", grouped=True,
                   section="template", influence=0.2, attribution=0.5)
    for i, gene in enumerate(B_GENES + NK_GENES):
        sign = 1 if gene in B_GENES else -1
        graph.add_node(f"input:{gene}", kind="input", layer=-1, label=gene, grouped=True, section="gene",
                       influence=0.1 - 0.005 * i, attribution=sign * (0.5 - 0.02 * i))
    graph.add_node("feature:0:1", kind="feature", layer=0, feature=1, label="L0/F1", influence=0.4, attribution=2.0)
    graph.add_node("feature:0:2", kind="feature", layer=0, feature=2, label="L0/F2", influence=0.3, attribution=-1.0)
    graph.add_node("feature:1:3", kind="feature", layer=1, feature=3, label="L1/F3", influence=0.6, attribution=2.5)
    for gene in B_GENES:
        graph.add_edge(f"input:{gene}", "feature:0:1", weight=1.0)
    for gene in NK_GENES:
        graph.add_edge(f"input:{gene}", "feature:0:2", weight=1.0)
    graph.add_edge("input:prompt template", "feature:1:3", weight=0.3)
    graph.add_edge("feature:0:1", "feature:1:3", weight=2.0)
    graph.add_edge("feature:0:2", "feature:1:3", weight=-1.0)
    graph.add_edge("feature:1:3", "output", weight=2.5)
    cells = [nx.DiGraph(), nx.DiGraph()]
    cells[0].add_nodes_from(["feature:0:1@4", "feature:1:3@9", "output"])
    cells[1].add_nodes_from(["feature:0:2@2", "feature:1:3@9", "output"])
    return SimpleNamespace(graph=graph, graphs=cells, cells=["cell-a", "cell-b"], message="")


def test_supernodes_group_features_by_their_enriched_set():
    circuit = _circuit()
    background = sorted(set(sct.genesets.load("immune_markers")["B cell"]) |
                        set(sct.genesets.load("immune_markers")["Natural killer cell"]) | set(B_GENES + NK_GENES))
    table = sct.tl.circuit_supernodes(circuit, "immune_markers", background=background, max_fdr=0.5)
    groups = table.attrs["supernodes"]
    by_node = dict(zip(table.node, table.supernode))
    assert by_node["feature:0:1"] == "B cell"
    assert by_node["feature:0:2"] != "B cell" and by_node["feature:0:2"]
    assert "feature:1:3" not in by_node  # one gene input: too few to test
    assert groups["B cell"] == ["feature:0:1"]
    from sctranscoder.tl._supernodes import supernode_ids

    export = {"nodes": [{"node_id": "0_1_4", "feature_type": "cross layer transcoder"},
                        {"node_id": "0_1_7", "feature_type": "cross layer transcoder"},
                        {"node_id": "E_5_4", "feature_type": "embedding"}]}
    assert supernode_ids({"B cell": ["feature:0:1"]}, export) == [["B cell", "0_1_4", "0_1_7"]]


def test_view_data_matches_the_figure():
    circuit = _circuit()
    view = sct.report.circuit_view(circuit, supernodes={"B cell": ["feature:0:1"]},
                                   feature_info={(0, 2): {"sets": ["Natural killer cell (immune_markers)"]}})
    labels = {n["label"] for n in view["nodes"]}
    assert {"CD79A", "GNLY", "prompt template", "L0/F1", "log-odds(CD19+ B)"} <= labels
    f1 = next(n for n in view["nodes"] if n["label"] == "L0/F1")
    assert f1["details"]["genes"][:2] == ["CD79A", "CD79B"] and "supernode: B cell" in f1["details"]["sets"]
    assert any("1 of 2" in line and "cell-a" in line for line in f1["details"]["lines"])
    f2 = next(n for n in view["nodes"] if n["label"] == "L0/F2")
    assert f2["details"]["sets"] == ["Natural killer cell (immune_markers)"]
    bare = sct.report.circuit_view(circuit.graph)  # a graph read back from JSON has no cells
    assert {n["label"] for n in bare["nodes"]} == labels
    assert sct.tl.circuit_supernodes(circuit.graph, "immune_markers").attrs["supernodes"] is not None
    html = sct.report.circuit_view_html(view)
    assert "</script>" not in html.split('class="cv-data">', 1)[1].split("</script>", 1)[0]
    assert "edge raises its target" in html and "edge lowers its target" in html


@pytest.mark.browser
def test_clicking_a_node_shows_its_genes_cells_and_sets(tmp_path):
    circuit = _circuit()
    content = sct.report.ReportContent(title="view test")
    section = content.section("CD19+ B")
    section.circuit_view = sct.report.circuit_view(circuit, supernodes={"B cell": ["feature:0:1"]})
    path = sct.report.write_html(tmp_path / "view.html", content)
    page = path.read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # offline: nothing fetched
    with Chromium() as browser:
        session = browser.open(path.as_uri())
        state = browser.evaluate(session, """(() => {
            const view = document.querySelector('.circuit-view');
            const panel = view.querySelector('.cv-panel');
            const before = panel.textContent;
            const circles = Array.from(view.querySelectorAll('.cv-svg circle'));
            const labels = Array.from(view.querySelectorAll('svg text')).map(t => t.textContent);
            const target = circles.find(c => c.querySelector('title').textContent === 'L0/F1');
            target.dispatchEvent(new MouseEvent('click', {bubbles: true}));
            const afterFeature = panel.textContent;
            const gene = circles.find(c => c.querySelector('title').textContent === 'CD79A');
            gene.dispatchEvent(new MouseEvent('mouseenter'));
            return {drawn: view.dataset.drawn, circles: circles.length, labels, before, afterFeature,
                    afterGene: panel.textContent, legend: view.querySelector('.cv-legend').textContent,
                    dimmed: view.querySelectorAll('line.cv-dim').length,
                    lines: view.querySelectorAll('.cv-svg line').length};
        })()""")
        assert int(state["drawn"]) == state["circles"] > 10
        assert "CD79A" in state["labels"] and "L1/F3" in state["labels"]
        assert state["before"] != state["afterFeature"]
        assert "CD79A" in state["afterFeature"] and "supernode: B cell" in state["afterFeature"]
        assert "1 of 2 traced cells" in state["afterFeature"]
        assert "Contribution to the output" in state["afterGene"] and "L0/F1" in state["afterGene"]
        assert "raises" in state["legend"] and "weight" in state["legend"]
        assert 0 < state["dimmed"] < state["lines"]
        assert browser.errors(session) == []
