"""vaekit.figures and ``vaekit plot``: every figure of a run, for images and for tables."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import QuadMesh
from matplotlib.image import AxesImage
from matplotlib.patches import Ellipse
from PIL import Image

import vaekit
from vaekit import ModelConfig, TrainConfig, figures
from vaekit.cli import _PLOT_KINDS, main
from vaekit.data.prepare import load_examples
from vaekit.errors import VaekitError
from vaekit.runs import load_run, read_metrics

FEATURES = ["height", "weight", "sum", "ratio", "noise"]


def _train(path: Path, data: str, **model) -> object:
    label = {"label_column": "label"} if data.endswith(".csv") else {}
    vaekit.train(ModelConfig(hidden=(32,), **model), TrainConfig(data=data, epochs=1, device="cpu", **label), path,
                 progress=False)
    return load_run(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs, trained once: digits images (a 2-D latent), a labelled table (2-D), a cvae with a
    3-D latent, PCA (3 components) and an autoencoder (2-D)."""
    root = tmp_path_factory.mktemp("figures")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(150, 2))
    table = np.c_[z[:, 0] * 3 + 170, z[:, 1] * 5 + 70, z.sum(1), np.exp(0.3 * z[:, 0]), rng.normal(size=150)]
    lines = [",".join(FEATURES + ["label"])]
    lines += [",".join(f"{v:.4f}" for v in row) + f",{int(row[0] > 170)}" for row in table]
    csv = root / "table.csv"
    csv.write_text("\n".join(lines) + "\n")
    return {
        "image": _train(root / "image", "digits", latent_dim=2),
        "table": _train(root / "table", str(csv), latent_dim=2),
        "cvae": _train(root / "cvae", "digits", model="cvae", latent_dim=3),
        "pca": _train(root / "pca", "digits", model="pca", latent_dim=3),
        "ae": _train(root / "ae", "digits", model="ae", latent_dim=2),
        "csv": csv,
    }


def _images(fig) -> list[AxesImage]:
    return [im for ax in fig.axes for im in ax.get_images()]


def _grid_shape(rows: int, cols: int, side: int = 8, pad: int = 1) -> tuple[int, int]:
    """The array of a grid of ``rows`` x ``cols`` digits (8 x 8) as ``plots.image_grid`` tiles it."""
    return rows * (side + pad) + pad, cols * (side + pad) + pad


def _plot(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["plot", *argv, "--device", "cpu"])
    return code, out.getvalue(), err.getvalue()


def test_kinds_have_one_sentence_each_and_match_the_command_line():
    assert list(figures.KINDS) == ["reconstructions", "samples", "interpolations", "latent", "manifold",
                                   "traversals", "kl-per-unit", "curves"]
    assert list(_PLOT_KINDS) == list(figures.KINDS)  # the parser's copy, kept free of matplotlib
    for caption in figures.KINDS.values():
        assert caption.endswith(".") and caption.count(". ") == 0 and "\n" not in caption


@pytest.mark.parametrize("kind", list(figures.KINDS))
def test_each_figure_of_an_image_run_writes_a_png_of_its_size(runs, kind, tmp_path):
    fig = figures.make_figure(runs["image"], kind, n=4 if kind == "manifold" else None)
    path = figures.save_figure(fig, tmp_path / f"{kind}.png")
    width, height = fig.get_size_inches() * figures.DPI
    with Image.open(path) as png:
        assert png.size == (round(width), round(height))
        pixels = np.asarray(png.convert("L"))
    assert pixels.std() > 10  # something drawn, not a blank page
    assert 4 <= width / figures.DPI <= 12 and 2 <= height / figures.DPI <= 13  # readable, not a poster


def test_a_figure_writes_as_svg(runs, tmp_path):
    path = figures.save_figure(figures.make_figure(runs["image"], "kl-per-unit"), tmp_path / "kl.svg")
    text = path.read_text()
    assert "<svg" in text and "</svg>" in text and "<path" in text
    assert [p.name for p in tmp_path.iterdir()] == ["kl.svg"]  # no temporary file left


def test_image_grids_hold_the_tiles_asked_for(runs):
    run = runs["image"]
    # 6 inputs over 4 columns: two rows of inputs, each above a row of their reconstructions
    (grid,) = _images(figures.make_figure(run, "reconstructions", n=6))
    assert grid.get_array().shape == _grid_shape(4, 4)
    (grid,) = _images(figures.make_figure(run, "samples", n=12))
    assert grid.get_array().shape == _grid_shape(3, 4)
    (grid,) = _images(figures.make_figure(run, "manifold", n=5))
    assert grid.get_array().shape == _grid_shape(5, 5)
    # two panels, linear and spherical: a row a pair, the path's 10 points between the two inputs
    fig = figures.make_figure(run, "interpolations", n=3)
    assert [im.get_array().shape for im in _images(fig)] == [_grid_shape(3, 12)] * 2
    assert [ax.get_title() for ax in fig.axes] == ["linear interpolation between latent means",
                                                   "spherical interpolation between latent means"]
    # the encoded example, then a row per unit (both of a 2-D latent), 9 values from -3 to +3 sd
    fig = figures.make_figure(run, "traversals")
    assert [im.get_array().shape for im in _images(fig)] == [_grid_shape(1, 1), _grid_shape(2, 9)]
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert labels[0] == "\u22123σ" and labels[4] == "0" and labels[-1] == "+3σ"


def test_samples_at_temperature_zero_are_one_image(runs):
    grid = _images(figures.make_figure(runs["image"], "samples", n=4, temperature=0))[0].get_array()
    tiles = [grid[1 + r * 9: 9 + r * 9, 1 + c * 9: 9 + c * 9] for r in range(2) for c in range(2)]
    assert all(np.allclose(t, tiles[0]) for t in tiles)
    warm = _images(figures.make_figure(runs["image"], "samples", n=4))[0].get_array()
    assert not np.allclose(warm[1:9, 1:9], warm[1:9, 10:18])


@pytest.mark.parametrize("kind", ["reconstructions", "samples", "interpolations", "traversals", "manifold"])
def test_a_table_gets_a_plot_per_feature_not_an_image_grid(runs, kind):
    fig = figures.make_figure(runs["table"], kind)
    panels = [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]  # a manifold's maps carry colorbars
    assert [ax.get_title().split()[0] for ax in panels] == FEATURES
    assert _images(fig) == []
    if kind == "manifold":
        assert all(sum(isinstance(c, QuadMesh) for c in ax.collections) == 1 for ax in panels)


def test_a_tables_samples_are_draws_of_p_x_given_z_and_an_images_are_means(runs, monkeypatch):
    """The histograms set the samples' spread beside the data's: the means of p(x|z) leave out the
    likelihood's noise, so a table draws x ~ p(x|z); an image grid shows the means, as is usual."""
    asked = []
    for kind in ("table", "image"):
        model = runs[kind].model
        monkeypatch.setattr(model, "sample", lambda n, sample=model.sample, **kw:
                            asked.append(kw.get("draw", False)) or sample(n, **kw))
        fig = figures.make_figure(runs[kind], "samples")
        title = fig.get_suptitle() if kind == "table" else fig.axes[0].get_title()
        assert title.startswith("draws x ~ p(x|z)" if kind == "table" else "64 means of p(x|z)")
    assert asked == [True, False]


def test_a_table_is_plotted_in_its_own_units(runs):
    fig = figures.make_figure(runs["table"], "reconstructions")
    heights = fig.axes[0].collections[0].get_offsets()[:, 0]  # inputs, about 170 +- 3, not standardized
    assert 160 < heights.mean() < 180 and heights.std() > 1


def test_latent_projects_a_larger_latent_and_draws_ellipses_of_q(runs):
    fig = figures.make_figure(runs["cvae"], "latent", n=200)
    (ax,) = [a for a in fig.axes if a.get_legend() is not None]
    assert ax.get_xlabel().startswith("principal component 1")
    assert sum(isinstance(p, Ellipse) for p in ax.patches) == 8
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(d) for d in range(10)]
    # PCA's codes are points: no ellipses
    fig = figures.make_figure(runs["pca"], "latent", n=200)
    assert not any(isinstance(p, Ellipse) for ax in fig.axes for p in ax.patches)


@pytest.mark.parametrize("kind", ["samples", "interpolations", "traversals", "kl-per-unit"])
def test_a_conditional_model_draws_with_its_labels(runs, kind):
    fig = figures.make_figure(runs["cvae"], kind, n=3 if kind == "traversals" else None)
    assert _images(fig) or kind == "kl-per-unit"
    if kind == "samples":  # 60 samples, a column a class
        assert _images(fig)[0].get_array().shape == _grid_shape(6, 10)


def test_kl_per_unit_shows_the_mean_kl_of_each_unit_and_the_threshold(runs):
    run = runs["image"]
    fig = figures.make_figure(run, "kl-per-unit")
    (ax,) = fig.axes
    heights = [bar.get_height() for bar in ax.patches if bar.get_width() < 1]
    examples = load_examples(run.train_config, "test", data_info=run.info["data"])
    with torch.no_grad():
        qz = run.model.encode({"x": examples.x})
        expected = run.model.prior.kl_per_unit(qz).mean(0)
    assert np.allclose(heights, np.maximum(expected.numpy(), ax.get_ylim()[0]), rtol=1e-4)
    assert any(np.allclose(line.get_ydata(), figures.ACTIVE_THRESHOLD) for line in ax.get_lines())


def test_curves_plot_the_metrics_against_the_step(runs):
    run = runs["image"]
    fig = figures.make_figure(run, "curves")
    assert [ax.get_title() for ax in fig.axes] == ["ELBO, nats per example", "reconstruction E[log p(x|z)], nats",
                                                   "KL(q(z|x) || p(z)), nats", "KL weight β", "learning rate"]
    rows = read_metrics(run.path)
    train, val = fig.axes[0].get_lines()
    assert list(train.get_xdata()) == [float(r["step"]) for r in rows]
    assert list(train.get_ydata()) == [float(r["train_elbo"]) for r in rows]
    assert list(val.get_ydata()) == [float(r["val_elbo"]) for r in rows]
    assert all(ax.get_xlabel() == "optimizer step" for ax in fig.axes)


def test_applicable_kinds_of_pca_and_of_an_autoencoder(runs):
    # PCA: its codes are points (no KL), it is fitted in closed form (no curves), 3 components (no manifold)
    assert figures.applicable(runs["pca"]) == ["reconstructions", "samples", "interpolations", "latent", "traversals"]
    assert figures.applicable(runs["ae"]) == ["reconstructions", "samples", "interpolations", "latent", "manifold",
                                              "traversals", "curves"]
    assert figures.applicable(runs["image"]) == list(figures.KINDS)
    with pytest.raises(VaekitError, match="'kl-per-unit' does not apply .*'ae' model's codes are points"):
        figures.make_figure(runs["ae"], "kl-per-unit")


@pytest.mark.parametrize("kind", ["reconstructions", "samples", "interpolations", "latent", "manifold", "traversals"])
def test_every_applicable_figure_of_an_autoencoder_and_pca_draws(runs, kind):
    for name in ("ae", "pca"):
        if kind in figures.applicable(runs[name]):
            assert _images(figures.make_figure(runs[name], kind, n=4)) or kind == "latent"


def test_manifold_is_refused_in_one_line_for_a_latent_not_2d(runs, tmp_path):
    with pytest.raises(VaekitError, match="the latent has 3 dimensions; a manifold is drawn for a 2-D latent"):
        figures.make_figure(runs["pca"], "manifold")
    out = tmp_path / "m.png"
    code, stdout, stderr = _plot(str(runs["pca"].path), "--kind", "manifold", "-o", str(out))
    assert code == 2 and stdout == "" and not out.exists()
    assert stderr.count("\n") == 1 and stderr.startswith("vaekit: error: figure 'manifold' does not apply")


def test_an_unknown_kind_is_refused_with_exit_2_and_nothing_written(runs, tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(SystemExit) as stop, redirect_stderr(io.StringIO()) as err:
        main(["plot", str(runs["image"].path), "--kind", "histogram", "-o", str(out)])
    assert stop.value.code == 2 and not out.exists() and list(tmp_path.iterdir()) == []
    assert err.getvalue().count("\n") == 1 and "invalid choice: 'histogram'" in err.getvalue()
    with pytest.raises(VaekitError, match="figure 'histogram': unknown; the kinds are reconstructions, samples"):
        figures.make_figure(runs["image"], "histogram")


def test_bad_options_are_refused_in_one_line(runs, tmp_path):
    run = runs["image"]
    with pytest.raises(VaekitError, match="temperature 0.5: applies to the samples figure"):
        figures.make_figure(run, "latent", temperature=0.5)
    with pytest.raises(VaekitError, match=r"\.pdf'; use \.png or \.svg"):
        figures.save_figure(figures.make_figure(run, "curves"), tmp_path / "c.pdf")
    with pytest.raises(VaekitError, match="does not exist"):
        figures.save_figure(figures.make_figure(run, "curves"), tmp_path / "nowhere" / "c.png")
    assert list(tmp_path.iterdir()) == []
    code, _, stderr = _plot(str(run.path), "--kind", "samples", "-o", str(tmp_path / "s.jpg"))
    assert code == 2 and "unknown output type '.jpg'" in stderr and list(tmp_path.iterdir()) == []


def test_vaekit_plot_writes_the_figure_and_says_where(runs, tmp_path):
    out = tmp_path / "samples.png"
    code, stdout, stderr = _plot(str(runs["table"].path), "--kind", "samples", "-o", str(out), "--n", "50",
                                 "--temperature", "0.5", "--seed", "3")
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    with Image.open(out) as png:
        assert png.size[0] >= 600
    code, _, stderr = _plot(str(runs["table"].path), "--kind", "latent", "-o", str(tmp_path / "z.svg"),
                            "--data", str(runs["csv"]))
    assert code == 0, stderr
    assert "<svg" in (tmp_path / "z.svg").read_text()
