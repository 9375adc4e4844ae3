"""Generation and figures: ``sample --draw`` and ``--temperature``, ``interpolate --data --seed``,
and reconstruction grids that pair every input with its reconstruction, whatever their count."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Laplace

import vaekit
from cli_helpers import ok, refused
from vaekit import ModelConfig, VaekitError, build_model
from vaekit import outputs, plots
from vaekit.data.examples import Examples
from vaekit.models import Prior

TINY = {"data_shape": (1, 8, 8), "hidden": (16,), "likelihood": "bernoulli"}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _seed(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- sample --draw ---------------------------------------------------------------------------------

def test_sample_draw_gives_bernoulli_draws_fixed_by_the_seed(capsys, digits_run, tmp_path):
    ok(capsys, "sample", digits_run.path, "-n", 16, "-o", "means.npy")
    ok(capsys, "sample", digits_run.path, "-n", 16, "--draw", "-o", "draws.npy")
    ok(capsys, "sample", digits_run.path, "-n", 16, "--draw", "-o", "again.npy")
    means, draws = np.load(tmp_path / "means.npy"), np.load(tmp_path / "draws.npy")
    assert set(np.unique(draws)) == {0.0, 1.0}  # pixels of a Bernoulli, both values drawn
    assert not set(np.unique(means)) <= {0.0, 1.0}  # the means are grey levels
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), draws)  # --seed fixes the draws too
    # The draws follow the means (the same z, drawn first): as often on as the means say.
    assert abs(draws.mean() - means.mean()) < 0.05  # 1024 pixels: 3 standard errors
    assert draws[means > 0.5].mean() > draws[means <= 0.5].mean() + 0.3


def test_draw_from_a_gaussian_adds_its_noise():
    model = build_model(ModelConfig(data_shape=(5,), latent_dim=2, hidden=(8,), likelihood="gaussian",
                                    gaussian_variance=0.25))
    means, draws = model.sample(4000, generator=_seed()), model.sample(4000, generator=_seed(), draw=True)
    # the same z (the generator draws z first), then x ~ N(mean, 0.25 I)
    assert float((draws - means).std()) == pytest.approx(0.5, rel=0.05)


# -- --temperature ----------------------------------------------------------------------------------

def test_temperature_zero_decodes_the_prior_mean(capsys, digits_run, tmp_path):
    ok(capsys, "sample", digits_run.path, "-n", 4, "--temperature", 0, "-o", "cold.npy")
    cold = torch.from_numpy(np.load(tmp_path / "cold.npy"))
    model = vaekit.load(digits_run.path)
    at_mean = model.decode(torch.zeros(1, model.latent_dim)).mean
    torch.testing.assert_close(cold, at_mean.expand_as(cold), atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_config", [{"model": "vae"}, {"model": "ae"}, {"model": "vae", "latent_dims": (4, 2)}],
                         ids=["vae", "ae", "two-layer"])
def test_temperature_scales_the_prior_deviation(model_config):
    model = build_model(ModelConfig(latent_dim=3, **TINY, **model_config))
    z1, z_half = (model.sample_latent(6, _seed(), temperature=t) for t in (1.0, 0.5))
    assert not torch.allclose(z1, z_half)
    cold = model.sample(6, generator=_seed(), temperature=0)
    # every sample the same, to float32 rounding: a batched matmul may round row 4 unlike row 0 (a CPU's SIMD blocks)
    torch.testing.assert_close(cold, cold[:1].expand_as(cold), atol=1e-6, rtol=0)
    warm = model.sample(6, generator=_seed(), temperature=1)
    assert (warm - warm[:1]).abs().amax() > 1e-3  # which a temperature ignored would break
    if not model_config.get("latent_dims"):  # one layer: the same noise, half as far
        torch.testing.assert_close(z_half, 0.5 * z1)


def test_temperature_of_pca_scales_the_scores():
    model = build_model(ModelConfig(model="pca", data_shape=(6,), latent_dim=2))
    model.fit_closed_form(torch.randn(200, 6, generator=_seed()) * torch.arange(1.0, 7.0))
    z1, z_cold = (model.sample_latent(50, _seed(), temperature=t) for t in (1.0, 0.1))
    torch.testing.assert_close(z_cold, 0.1 * z1)
    torch.testing.assert_close(model.sample(3, temperature=0), model.mean.expand(3, 6))


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_temperature_of_a_mixture_scales_each_component(prior):
    model = build_model(ModelConfig(prior=prior, prior_components=3, latent_dim=2, **TINY))
    with torch.no_grad():
        means = model.prior().component_distribution.base_dist.loc.clone()  # (3, 2)
    z = model.sample_latent(200, _seed(), temperature=0)  # every draw a component's mean
    assert float(torch.cdist(z, means).min(1).values.max()) < 1e-5
    assert len(torch.unique(z, dim=0)) > 1  # the components are drawn, not one mean for all
    warm = model.sample_latent(200, _seed(), temperature=0.5)
    assert float(torch.cdist(warm, means).min(1).values.max()) > 1e-3


def test_a_prior_with_no_temperature_refuses_one(monkeypatch):
    class Laplacian(Prior):
        name = "laplace-test"

        def forward(self):
            zeros = self.zeros()
            return Independent(Laplace(zeros, 1 + zeros), 1)

    prior = Laplacian(3)
    assert prior.sample(4, _seed()).shape == (4, 3)  # temperature 1 is the prior itself
    with pytest.raises(VaekitError, match="temperature 0.5: the 'laplace-test' prior is neither Gaussian"):
        prior.sample(4, _seed(), temperature=0.5)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "warm"])
def test_sample_refuses_a_bad_temperature(capsys, digits_run, tmp_path, value):
    line = refused(capsys, tmp_path, "sample", digits_run.path, "--temperature", value, "-o", "x.npy",
                   says=("--temperature", value))
    assert "finite number, at least 0" in line or "not a number" in line


@pytest.mark.parametrize("value", [-1.0, math.nan])
def test_the_model_refuses_a_bad_temperature(value):
    model = build_model(ModelConfig(latent_dim=2, **TINY))
    with pytest.raises(VaekitError, match="must be a finite number, at least 0"):
        model.sample(2, temperature=value)


# -- interpolate --data --seed ----------------------------------------------------------------------

def _interpolate(capsys, run: Path, *options) -> tuple[list[int], np.ndarray]:
    """The examples that ``interpolate`` names, in order, and the lines it wrote."""
    r = ok(capsys, "interpolate", run, "--pairs", 2, "--steps", 3, "-o", "i.npy", *options)
    named = [int(w.strip(",")) for w in r.out.split("between examples ")[1].split() if w.strip(",").isdigit()]
    return named, np.load("i.npy")


def test_interpolate_seed_chooses_the_pairs_of_the_given_data(capsys, digits_run, tmp_path):
    x = vaekit.load_dataset("digits").test[:30]
    np.save(tmp_path / "mine.npy", x.numpy())
    first, lines = _interpolate(capsys, digits_run.path, "--data", "mine.npy", "--seed", 3)
    again, lines_again = _interpolate(capsys, digits_run.path, "--data", "mine.npy", "--seed", 3)
    other, lines_other = _interpolate(capsys, digits_run.path, "--data", "mine.npy", "--seed", 4)
    assert first == again and len(set(first)) == 4 and all(0 <= i < 30 for i in first)
    np.testing.assert_array_equal(lines, lines_again)
    assert other != first and not np.allclose(lines_other, lines)
    # Each line runs from the reconstruction of its first example to that of its second.
    ends = vaekit.load(digits_run.path).reconstruct(x[first]).numpy()
    np.testing.assert_allclose(lines[[0, 2, 3, 5]], ends, atol=1e-5)


def test_interpolate_refuses_data_with_one_example(capsys, digits_run, tmp_path):
    np.save(tmp_path / "one.npy", vaekit.load_dataset("digits").test[:1].numpy())
    refused(capsys, tmp_path, "interpolate", digits_run.path, "--data", "one.npy", "-o", "i.npy",
            says=("one.npy", "1 example", "needs two"))


# -- reconstruction grids ---------------------------------------------------------------------------

def _tile(grid: np.ndarray, row: int, col: int, size: int = 8, pad: int = 1) -> np.ndarray:
    """The pixels of tile (row, col) of an :func:`vaekit.plots.image_grid` of 1 x size x size images."""
    top, left = pad + row * (size + pad), pad + col * (size + pad)
    return grid[top : top + size, left : left + size]


@pytest.mark.parametrize("n", [5, 40])
def test_paired_rows_put_each_input_right_above_its_reconstruction(n):
    # every tile one flat grey, different for each input and each output
    inputs = (torch.arange(n) / (2 * n)).view(n, 1, 1, 1).expand(n, 1, 8, 8)
    outputs = inputs + 0.5
    tiles, cols = plots.paired_rows(inputs, outputs)
    grid = plots.image_grid(tiles, cols)
    rows = 2 * math.ceil(n / cols)
    assert grid.shape == (rows * 9 + 1, cols * 9 + 1)  # nothing beyond the rows of pairs
    assert rows <= cols + 2 and cols <= rows + 2  # about square
    for i in range(n):
        row, col = 2 * (i // cols), i % cols  # the caption: each row of inputs above their outputs
        np.testing.assert_allclose(_tile(grid, row, col), float(inputs[i, 0, 0, 0]), atol=1e-6)
        np.testing.assert_allclose(_tile(grid, row + 1, col), float(outputs[i, 0, 0, 0]), atol=1e-6)
    for k in range(n, rows // 2 * cols):  # the rest of the last pair of rows is blank
        assert (_tile(grid, 2 * (k // cols), k % cols) == 1).all() and (_tile(grid, 2 * (k // cols) + 1, k % cols) == 1).all()


def _capture_grids(monkeypatch, module) -> list[tuple[torch.Tensor, int, str]]:
    grids = []
    monkeypatch.setattr(module, "save_image_grid",
                        lambda images, path, nrow=None, title=None: grids.append((images, nrow, title)))
    return grids


def test_run_figures_pair_inputs_and_reconstructions_with_few_test_images(monkeypatch, tmp_path):
    model = build_model(ModelConfig(latent_dim=2, **TINY))
    test = Examples(vaekit.load_dataset("digits").test[:5])
    grids = _capture_grids(monkeypatch, plots)
    plots.save_run_figures(model, test, tmp_path)
    tiles, cols, title = grids[0]
    expected, expected_cols = plots.paired_rows(test.x, model.reconstruct(test.x))
    assert cols == expected_cols and torch.equal(tiles, expected)
    assert title == "test images (each row) above their reconstructions (the row below)"


def test_reconstruct_png_pairs_each_input_with_its_reconstruction(capsys, monkeypatch, digits_run):
    grids = _capture_grids(monkeypatch, outputs)
    ok(capsys, "reconstruct", digits_run.path, "-n", 5, "-o", "r.png")
    tiles, cols, title = grids[0]
    x = vaekit.load_dataset("digits").test[:5]
    expected, expected_cols = plots.paired_rows(x, vaekit.load(digits_run.path).reconstruct(x))
    assert cols == expected_cols and "above their reconstructions" in title
    torch.testing.assert_close(tiles, expected, atol=1e-6, rtol=0)
