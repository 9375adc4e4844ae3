"""Training objectives beside the ELBO: the importance-weighted bound (IWAE, Burda et al. 2015)
and its doubly reparameterized gradient (DReG, Tucker et al. 2019)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

import vaekit
from cli_helpers import ok, refused
from vaekit import VAE, ModelConfig


def _vae(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(data_shape=(1, 8, 8), latent_dim=4, hidden=(32,), likelihood="bernoulli")
    return VAE(ModelConfig(**{**cfg, **kw}))


def _bound(model, x, objective, k, noise=None):
    return -model.training_loss(x, objective=objective, n_samples=k, noise=noise)[0]


def test_iwae_with_one_sample_is_the_single_draw_elbo_under_the_same_noise():
    model = _vae()
    x = (torch.rand(16, 1, 8, 8) < 0.3).float()
    eps = torch.randn(16, 4)
    with torch.no_grad():
        qz = model.encode(x)
        z = qz.mean + qz.stddev * eps
        by_hand = (model.decode(z).log_prob(x) + Independent(Normal(torch.zeros(4), 1.0), 1).log_prob(z)
                   - Independent(Normal(qz.mean, qz.stddev), 1).log_prob(z))  # torch.distributions throughout
        for objective in ("iwae", "dreg"):
            torch.testing.assert_close(_bound(model, x, objective, 1, eps), by_hand)
        # and its mean over draws is the ELBO (closed-form KL): Monte Carlo, 4000 draws
        many = torch.randn(16, 4000, 4)
        mc = _bound(model, x, "iwae", 4000, many)  # logmeanexp over 4000 is not the mean: use K=1 draws
        singles = torch.stack([_bound(model, x, "iwae", 1, many[:, i]) for i in range(0, 4000, 4)])  # (1000, 16)
        elbo = model.elbo(x, n_samples=20000).elbo  # the ELBO, its expectation taken with 20000 draws
        se = singles.std(0) / math.sqrt(len(singles))
        assert bool(((singles.mean(0) - elbo).abs() < 4 * se + 0.02).all())
        assert bool((mc > elbo).all())  # the K = 4000 bound is above the ELBO


def test_the_importance_weighted_bound_does_not_fall_as_k_grows():
    model = _vae()
    x = (torch.rand(200, 1, 8, 8) < 0.3).float()
    with torch.no_grad():
        bounds = []
        for k in (1, 5, 50, 500):
            torch.manual_seed(1)
            bounds.append(float(_bound(model, x, "iwae", k).mean()))
    assert all(b > a - 0.02 for a, b in zip(bounds, bounds[1:])), bounds
    assert bounds[-1] > bounds[0] + 0.2, bounds  # and it does rise here, ten times the noise


def _mean_grads(model, x, objective, k, copies, chunks):
    """Mean gradient of the bound over ``copies`` noise draws of one example, with its
    standard error from ``chunks`` independent parts."""
    parts = []
    for _ in range(chunks):
        model.zero_grad()
        loss = model.training_loss(x.expand(copies, *x.shape[1:]), objective=objective, n_samples=k)[0].mean()
        loss.backward()
        parts.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    g = torch.stack(parts)
    return g.mean(0), g.std(0) / math.sqrt(chunks)


def test_dreg_gradient_equals_the_iwae_gradient_in_expectation_on_a_linear_gaussian_model():
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(3,), latent_dim=2, arch="linear", likelihood="gaussian",
                            gaussian_variance=0.5))
    with torch.no_grad():  # an encoder far from the posterior, so that the gradients are large
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.tensor([[0.5, -1.0, 0.8]])
    torch.manual_seed(1)
    g_iwae, se_iwae = _mean_grads(model, x, "iwae", 5, 2000, 20)
    g_dreg, se_dreg = _mean_grads(model, x, "dreg", 5, 2000, 20)
    gap = (g_iwae - g_dreg).abs()
    allowed = 4 * torch.sqrt(se_iwae**2 + se_dreg**2) + 1e-4
    assert bool((gap < allowed).all()), (gap, allowed)
    assert float(g_iwae.abs().max()) > 0.05  # gradients large enough that the comparison means something
    assert bool((se_dreg.sum() < se_iwae.sum()))  # DReG's purpose: a less noisy encoder gradient


def test_fit_trains_on_the_iwae_bound_and_still_reports_the_elbo(capsys, tmp_path):
    run = tmp_path / "run"
    r = ok(capsys, "train", "--data", "digits", "--epochs", 3, "--objective", "iwae", "--n-samples", 5,
           "--latent-dim", 4, "--hidden", 32, "--batch-size", 128, "--run-dir", run)
    assert "ELBO" in r.out
    rows = vaekit.runs.read_metrics(run)
    assert float(rows[-1]["val_elbo"]) > float(rows[0]["val_elbo"])  # it learns
    for row in rows:  # the ELBO's own terms, whatever the objective
        assert float(row["train_elbo"]) == pytest.approx(float(row["train_reconstruction"]) - float(row["train_kl"]), abs=1e-4)


def test_bad_objective_options_are_one_line_errors(capsys, tmp_path):
    refused(capsys, tmp_path, "train", "--n-samples", 0, says=("--n-samples",))
    refused(capsys, tmp_path, "train", "--objective", "vimco", says=("--objective",))
    refused(capsys, tmp_path, "train", "--model", "ae", "--objective", "iwae", "--epochs", 1, "--run-dir",
            tmp_path / "ae", says=("--objective iwae", "'ae'"))
    assert not (tmp_path / "ae").exists()
    refused(capsys, tmp_path, "train", "--objective", "dreg", "--n-samples", 5, "--beta", 0.5, "--run-dir",
            tmp_path / "b", says=("--objective dreg", "--beta"))
