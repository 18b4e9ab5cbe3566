import socket

import gseapy
import numpy as np
import pandas as pd
import pytest

from sctranscoder import genesets as gs

PBMC_TYPES = {  # marker set -> a canonical marker it must hold
    "B cell": "MS4A1", "CD4 Naive T cell": "CCR7", "CD8 TEM": "CD8A", "Natural killer cell": "KLRD1",
    "CD14+ Monocyte": "CD14", "CD16+ Monocyte": "FCGR3A", "CD1C+ dendritic cell": "FCER1A",
    "Plasmacytoid dendritic cell": "LILRA4", "Platelet": "PPBP", "T regulatory cell": "FOXP3",
}


@pytest.fixture(scope="module")
def background(pbmc_template):
    return [g.upper() for g in pbmc_template.raw.var_names]


def test_bundled_libraries_and_their_provenance():
    table = gs.libraries()
    assert list(table.index) == ["hallmark", "reactome", "wikipathways", "go_bp", "immune_markers"]
    for name, row in table.iterrows():
        sets = gs.load(name)
        assert len(sets) == row.n_sets > 0
        assert row.license and row.source and row.attribution and row.version
        assert not any(term.upper().startswith("KEGG") for term in sets)
        sizes = [len(g) for g in sets.values()]
        assert min(sizes) >= row.size_range[0]
        if name != "immune_markers":
            assert max(sizes) <= 500
        assert all(g == g.upper() for genes in sets.values() for g in genes)
    assert len(gs.load("hallmark")) == 50
    assert all(t.startswith("REACTOME_") for t in gs.load("reactome"))
    assert all(t.startswith("WP_") for t in gs.load("wikipathways"))
    markers = gs.load("immune_markers")
    for cell_type, gene in PBMC_TYPES.items():
        assert gene in markers[cell_type], cell_type
    # load hands out copies: changing one does not change the next
    markers["B cell"].append("XYZ")
    assert "XYZ" not in gs.load("immune_markers")["B cell"]


def test_gmt_round_trip_is_atomic_and_uppercases(tmp_path):
    path = tmp_path / "sets.gmt"
    gs.write_gmt({"A": ["cd3d", "CD3E", "cd3d"], "B": ["Ms4a1"]}, path, descriptions={"A": "T cells"})
    assert path.read_text() == "A\tT cells\tCD3D\tCD3E\nB\t\tMS4A1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sets.gmt"]
    sets, descriptions = gs.read_gmt(path, with_descriptions=True)
    assert sets == {"A": ["CD3D", "CD3E"], "B": ["MS4A1"]} and descriptions["A"] == "T cells"
    assert gs.load(str(path)) == sets
    assert gs.resolve(str(path)) == {"sets.gmt": sets}
    with pytest.raises(ValueError, match="tab"):
        gs.write_gmt({"bad\tname": ["A"]}, tmp_path / "x.gmt")
    assert not (tmp_path / "x.gmt").exists()
    (tmp_path / "twice.gmt").write_text("A\t\tX\nA\t\tY\n")
    with pytest.raises(ValueError, match="twice"):
        gs.read_gmt(tmp_path / "twice.gmt")
    with pytest.raises(FileNotFoundError):
        gs.read_gmt(tmp_path / "missing.gmt")


def _compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    """Same terms, overlaps and genes; returns the largest relative difference of the statistics."""
    if theirs is None:  # gseapy found no term with an overlap
        assert ours.empty
        return 0.0
    theirs = theirs.set_index("Term")
    ours = ours.set_index(ours.Term.astype(str))
    assert set(ours.index) == set(theirs.index)
    ours = ours.loc[theirs.index]
    assert (ours.Overlap.astype(str).to_numpy() == theirs.Overlap.to_numpy()).all()
    assert all(set(a.split(";")) == set(b.split(";")) for a, b in zip(ours.Genes, theirs.Genes))
    worst = 0.0
    for column in ("P-value", "Adjusted P-value", "Odds Ratio", "Combined Score"):
        a, b = ours[column].to_numpy(), theirs[column].to_numpy()
        worst = max(worst, float(np.max(np.abs(a - b) / np.abs(b))))
    return worst


def test_enrich_equals_gseapy(background, tmp_path):
    rng = np.random.default_rng(0)
    hallmark = gs.load("hallmark")
    markers = gs.load("immune_markers")
    gmt = gs.write_gmt(markers, tmp_path / "markers.gmt")
    lists = {f"list{i}": list(rng.choice(background, size, replace=False))
             for i, size in enumerate([10, 25, 25, 60, 200])}
    lists["markers"] = markers["CD14+ Monocyte"] + markers["B cell"] + ["NOT_A_GENE"]  # strong signal, one unseen
    lists["lower"] = [g.lower() for g in lists["list1"]]  # case is handled as C2S does
    ours = gs.enrich(lists, {"hallmark": hallmark, "markers": markers}, background)
    assert list(ours.columns) == gs.COLUMNS
    worst = 0.0
    for name, genes in lists.items():
        mine = ours[ours.List == name]
        for library, sets in (("hallmark", hallmark), ("markers", str(gmt))):
            theirs = gseapy.enrich([g.upper() for g in genes], gene_sets=sets, background=background,
                                   no_plot=True).res2d
            worst = max(worst, _compare(mine[mine.Gene_set == library], theirs))
            # rows sorted by p-value within a list and library; genes in list order
            block = mine[mine.Gene_set == library]
            assert block["P-value"].is_monotonic_increasing
            upper = [g.upper() for g in genes]
            assert all(sorted(s.split(";"), key=upper.index) == s.split(";") for s in block.Genes)
    assert worst <= 1e-9
    strongest = ours[ours.List == "markers"].nsmallest(2, "P-value").Term.astype(str)
    assert set(strongest) == {"CD14+ Monocyte", "B cell"}


def test_fdr_is_per_list_and_library_over_terms_with_an_overlap(background):
    sets_a = {f"A{i}": list(background[i * 7: i * 7 + 12]) for i in range(30)}
    sets_b = {f"B{i}": list(background[300 + i * 5: 300 + i * 5 + 9]) for i in range(20)}
    genes = background[:40] + background[300:320]
    ours = gs.enrich({"q": genes}, {"a": sets_a, "b": sets_b}, background)
    theirs = gseapy.enrich(genes, gene_sets=[sets_a, sets_b], background=background, no_plot=True).res2d
    assert ours.Term.nunique() == len(theirs)  # terms without overlap are neither tested nor reported
    for library, name in (("a", "gs_ind_0"), ("b", "gs_ind_1")):
        assert _compare(ours[ours.Gene_set == library], theirs[theirs.Gene_set == name]) <= 1e-9
    # pooled BH over both libraries would differ: the per-library FDR is what gseapy reports
    p = ours["P-value"].to_numpy()
    pooled = np.minimum.accumulate((np.sort(p) * p.size / np.arange(1, p.size + 1))[::-1])[::-1]
    assert not np.allclose(np.sort(ours["Adjusted P-value"]), np.minimum(pooled, 1))


def test_stricter_fdr_over_every_tested_set_and_minimum_set_size(background):
    from scipy.stats import false_discovery_control

    rng = np.random.default_rng(3)
    lists = {f"f{i}": list(rng.choice(background, 25, replace=False)) for i in range(20)}
    hallmark = gs.load("hallmark")
    visible = {t: sum(g in set(background) for g in genes) for t, genes in hallmark.items()}
    tested = [t for t, n in visible.items() if n >= 10]
    strict = gs.enrich(lists, "hallmark", background, min_set_size=10, fdr_over="tested")
    assert set(strict.Term.astype(str)) <= set(tested)
    loose = gs.enrich(lists, "hallmark", background)
    for name in lists:
        mine = strict[strict.List == name].set_index(strict[strict.List == name].Term.astype(str))
        p = pd.Series(1.0, index=tested)
        p[mine.index] = mine["P-value"]
        expected = pd.Series(false_discovery_control(p.to_numpy()), index=tested)
        np.testing.assert_allclose(mine["Adjusted P-value"], expected[mine.index], rtol=1e-12)
        # p-values do not depend on the FDR choice; the gseapy-style FDR is never larger
        same = loose[loose.List == name].set_index(loose[loose.List == name].Term.astype(str)).loc[mine.index]
        np.testing.assert_array_equal(same["P-value"], mine["P-value"])
        assert (same["Adjusted P-value"] <= mine["Adjusted P-value"] + 1e-15).all()
    with pytest.raises(ValueError, match="fdr_over"):
        gs.enrich(lists, "hallmark", background, fdr_over="all")


def test_enrich_filters_and_errors(background):
    rng = np.random.default_rng(1)
    lists = {f"f{i}": list(rng.choice(background, 25, replace=False)) for i in range(50)}
    full = gs.enrich(lists, "hallmark", background)
    strict = gs.enrich(lists, "hallmark", background, max_fdr=0.5, min_overlap=2)
    expected = full[(full["Adjusted P-value"] <= 0.5) & (full.Overlap.astype(str).str.split("/").str[0].astype(int)
                                                           >= 2)]
    as_text = {"List": str, "Gene_set": str, "Term": str, "Overlap": str}
    pd.testing.assert_frame_equal(strict.astype(as_text).reset_index(drop=True),
                                  expected.astype(as_text).reset_index(drop=True))
    assert len(expected) < len(full)
    assert (gs.enrich(lists, "hallmark", background, genes=False).Genes == "").all()
    with pytest.raises(ValueError, match="background is required"):
        gs.enrich(lists, "hallmark", None)
    with pytest.raises(ValueError, match="gene_sets is required"):
        gs.enrich(lists, None, background)
    with pytest.raises(TypeError, match="dict"):
        gs.enrich("CD3D", "hallmark", background)
    with pytest.raises(ValueError, match="min_overlap"):
        gs.enrich(lists, "hallmark", background, min_overlap=0)


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_enrichr_names_offline_error_and_cache(monkeypatch, tmp_path):
    _no_network(monkeypatch)
    with pytest.raises(ConnectionError, match="cannot be reached.*bundled library"):
        gs.load("GO_Biological_Process_2025", cache_dir=tmp_path)
    cached = tmp_path / "genesets" / "enrichr" / "human" / "GO_Biological_Process_2025.gmt"
    cached.parent.mkdir(parents=True)
    gs.write_gmt({"T cell activation (GO:0042110)": ["CD3E", "CD28"]}, cached)
    assert gs.load("GO_Biological_Process_2025", cache_dir=tmp_path) == {"T cell activation (GO:0042110)":
                                                                         ["CD3E", "CD28"]}


def test_coverage_reports_visible_genes(background):
    sets = {"seen": background[:4], "half": background[:2] + ["NOPE1", "NOPE2"], "none": ["NOPE3"]}
    table = gs.coverage(sets, background)
    assert table.set_index("Term").n_visible.to_dict() == {"seen": 4, "half": 2, "none": 0}
    assert table.set_index("Term").fraction_visible["half"] == 0.5
    summary = gs.coverage_summary(["hallmark", {"mine": sets}], background)
    assert summary.loc["mine", "n_sets_testable"] == 2 and summary.loc["mine", "n_genes_visible"] == 4
    assert 0 < summary.loc["hallmark", "n_genes_visible"] < summary.loc["hallmark", "n_genes"]


def test_prerank_finds_a_planted_set_offline(background, monkeypatch):
    _no_network(monkeypatch)
    rng = np.random.default_rng(0)
    scores = pd.Series(rng.normal(size=len(background)), index=[g.lower() for g in background])
    planted = list(background[100:130])
    scores[[g.lower() for g in planted]] += 4
    sets = {"planted": planted, "random": list(rng.choice(background, 30, replace=False))}
    table = gs.prerank(scores, {"toy": sets}, background, permutations=50)
    assert list(table.columns) == gs._prerank.PRERANK_COLUMNS
    row = table.set_index("Term").loc["planted"]
    assert row.NES > 1.5 and row["NOM p-val"] <= 0.05
    assert table.Term.iloc[0] == "planted"


def test_every_gene_list_shape_is_read_as_gene_names(background):
    ranked = pd.DataFrame({"gene": ["MS4A1", "CD79A", "CD79B", "CD19"], "attribution": [0.4, 0.3, 0.2, 0.1]})
    by_list = gs.enrich({"B": list(ranked.gene)}, "immune_markers", background)
    for shape in (ranked, ranked.gene, ranked.set_index("gene").attribution, tuple(ranked.gene)):
        table = gs.enrich({"B": shape}, "immune_markers", background)
        pd.testing.assert_frame_equal(table, by_list)
    assert gs.gene_names(pd.Series([0.1, 0.9], index=["LOW", "HIGH"])) == ["HIGH", "LOW"]  # scores: strongest first
    assert gs.gene_names(pd.DataFrame({"names": ["A", "B"], "scores": [2, 1]})) == ["A", "B"]  # scanpy's table
    with pytest.raises(ValueError, match=r"no gene column .* columns are \['feature', 'score'\]"):
        gs.enrich({"B": pd.DataFrame({"feature": ["MS4A1"], "score": [1.0]})}, "immune_markers", background)


def test_a_list_sharing_no_gene_with_the_background_is_an_error(background):
    with pytest.raises(ValueError, match=r"1 of 2 gene lists share no gene with the background .*'ids': ENSG0000"):
        gs.enrich({"symbols": ["MS4A1", "CD79A"], "ids": ["ENSG00000177455", "ENSG00000156738"]}, "immune_markers",
                  background)


def test_enrich_circuit_reads_a_ranked_gene_table(background):
    from sctranscoder.tl import enrich_circuit

    ranked = pd.DataFrame({"gene": ["MS4A1", "CD79A", "CD79B", "CD19", "CD3D"], "attribution": [5, 4, 3, 2, -1]})
    table = enrich_circuit({"B": ranked}, "immune_markers", background=background, n_top=4)
    expected = enrich_circuit({"B": ["MS4A1", "CD79A", "CD79B", "CD19"]}, "immune_markers", background=background)
    pd.testing.assert_frame_equal(table, expected)
    assert len(table) > 0
