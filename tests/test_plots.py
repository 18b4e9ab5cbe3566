import matplotlib

matplotlib.use("Agg")

import sctranscoder as sct  # noqa: E402


def test_rank_expression_plot(pbmc, tmp_path):
    sct.pp.cell_sentences(pbmc, progress=False)
    sct.pp.fit_rank_expression(pbmc)
    ax = sct.pl.rank_expression(pbmc, n_cells=50, show=False)
    assert ax.get_xlabel().startswith("log10") and len(ax.lines) == 1
    per_cell = pbmc.obsm["c2s_ranks"].getnnz(axis=1)
    n_points = len(ax.collections[0].get_offsets())
    assert 50 * per_cell.min() <= n_points <= 50 * per_cell.max()
    sct.pl.rank_expression(pbmc, n_cells=50, save=tmp_path / "fit.png")
    assert (tmp_path / "fit.png").stat().st_size > 1000
