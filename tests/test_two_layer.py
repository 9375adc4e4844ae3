"""Two stochastic layers (``--latent-dims Z1 Z2``): its weights, its bound, its training."""

from __future__ import annotations

import torch
from torch import nn

import vaekit
from cli_helpers import ok, refused
from vaekit import ModelConfig
from vaekit.evaluation.estimators import log_likelihood
from vaekit.models import TwoLayerVAE, build_model


def _linear_two_layer(c=0.3):
    """x = W z1 + b + sqrt(c) e, z1 = A z2 + a + s1 e', z2 ~ N(0, I): p(x) is Gaussian, exactly."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(data_shape=(4,), latent_dims=(3, 2), arch="linear", likelihood="gaussian",
                                    gaussian_variance=c, hidden_top=()))
    with torch.no_grad():
        model.decoder_top.logvar_head.weight.zero_()  # p(z1|z2): a variance that does not depend on z2
        model.decoder_top.logvar_head.bias.copy_(torch.tensor([-1.0, -0.5, 0.0]))
        for q in (model.encoder, model.encoder_top):  # wide proposals
            q.logvar_head.bias.fill_(0.5)
    return model


def test_importance_sampling_finds_the_exact_log_likelihood_of_a_linear_two_layer_model():
    model = _linear_two_layer()
    (dec,) = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    W, b = dec.weight.detach().double(), dec.bias.detach().double()
    A, a = model.decoder_top.loc_head.weight.detach().double(), model.decoder_top.loc_head.bias.detach().double()
    s1_sq = model.decoder_top.logvar_head.bias.detach().double().exp()
    cov = W @ (A @ A.T + torch.diag(s1_sq)) @ W.T + 0.3 * torch.eye(4, dtype=torch.float64)
    x = torch.randn(6, 4)
    exact = torch.distributions.MultivariateNormal(W @ a + b, cov).log_prob(x.double())
    iw = log_likelihood(model, x, n_importance=200_000)
    torch.testing.assert_close(iw, exact, atol=0.03, rtol=0)
    with torch.no_grad():
        assert float(model.elbo(x, n_samples=2000).elbo.mean()) < float(exact.mean())  # the bound is below


def test_iwae_with_one_sample_is_the_elbo_under_the_same_noise():
    model = _linear_two_layer()
    x, eps = torch.randn(8, 4), torch.randn(8, 5)  # (B, L1 + L2)
    loss, terms = model.training_loss(x, objective="iwae", n_samples=1, noise=eps)
    torch.testing.assert_close(-loss, model.elbo(x, noise=eps[None]).elbo)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)


def test_two_layers_train_evaluate_and_reload_through_the_cli(capsys, tmp_path):
    run = tmp_path / "run"
    ok(capsys, "train", "--data", "digits", "--epochs", 3, "--latent-dims", 8, 4, "--hidden", 64,
       "--hidden-top", 16, "--objective", "iwae", "--n-samples", 3, "--run-dir", run)
    rows = vaekit.runs.read_metrics(run)
    assert float(rows[-1]["val_elbo"]) > float(rows[0]["val_elbo"])
    out = ok(capsys, "evaluate", run, "--n-importance", 30, "--n-examples", 40).out
    assert "log p(x)" in out
    model = vaekit.load(run)
    assert isinstance(model, TwoLayerVAE) and model.sample(3).shape == (3, 1, 8, 8)
    refused(capsys, tmp_path, "train", "--latent-dims", 8, 4, "--free-bits", 0.5, "--epochs", 1,
            "--run-dir", tmp_path / "fb", says=("--free-bits",))
    refused(capsys, tmp_path, "train", "--latent-dims", 8, 4, "--prior", "vamp", "--run-dir", tmp_path / "v",
            says=("--prior vamp", "--latent-dims"))
    ok(capsys, "train", "--latent-dims", 8, 4, "--prior", "mog", "--hidden", 32, "--hidden-top", 8, "--epochs", 1,
       "--run-dir", tmp_path / "mog")  # a mixture over z2 does apply
