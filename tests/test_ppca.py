"""The autoencoder/PCA relation, made checkable: linear models trained by vaekit recover the
closed-form probabilistic-PCA solution (Tipping and Bishop 1999) and the PCA subspace."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA as SkPCA

from vaekit import ModelConfig, TrainConfig, fit
from vaekit.evaluation import ppca
from vaekit.models.baselines import PCA, Autoencoder
from vaekit.models.distributions import kl_gaussian
from vaekit.models import VAE, build_model
from vaekit.seeding import seeded

D, L = 6, 2


@pytest.fixture(scope="module")
def data():
    """2000 draws from a PPCA model with well separated principal directions."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, L, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0], dtype=torch.float64)
    true = ppca.LinearGaussian(W, torch.randn(D, generator=g, dtype=torch.float64), 0.3)
    with seeded(1):
        x = ppca.marginal(true).sample((2000,)).float()
    return x, ppca.ml_solution(x, L)


def test_ml_solution_maximizes_the_exact_likelihood(data):
    x, ml = data
    best = float(ppca.exact_log_likelihood(ml, x).mean())
    g = torch.Generator().manual_seed(2)
    for _ in range(5):  # any perturbation of the closed form is worse
        W = ml.W + 0.05 * torch.randn(ml.W.shape, generator=g, dtype=torch.float64)
        assert float(ppca.exact_log_likelihood(ppca.LinearGaussian(W, ml.b, ml.c), x).mean()) < best
        assert float(ppca.exact_log_likelihood(ppca.LinearGaussian(ml.W, ml.b, ml.c * 1.1), x).mean()) < best
    # the same optimum as scikit-learn's PCA read as PPCA (which divides by N - 1, not N)
    sk = SkPCA(n_components=L).fit(x.double().numpy())
    assert abs(float(np.mean(sk.score_samples(x.double().numpy()))) - best) < 1e-2


def test_posterior_is_bayes_rule(data):
    x, ml = data
    loc, cov = ppca.posterior(ml, x[:3])
    # p(z|x) ∝ p(x|z) p(z): compare log densities on a grid of z up to a per-x constant
    z = torch.randn(50, L, dtype=torch.float64)
    xi = x[0].double()
    log_joint = torch.distributions.MultivariateNormal(z @ ml.W.T + ml.b, ml.c * torch.eye(D, dtype=torch.float64)).log_prob(xi) \
        + torch.distributions.MultivariateNormal(torch.zeros(L, dtype=torch.float64), torch.eye(L, dtype=torch.float64)).log_prob(z)
    log_post = torch.distributions.MultivariateNormal(loc[0], cov).log_prob(z)
    diff = log_joint - log_post
    torch.testing.assert_close(diff, diff.mean().expand_as(diff))
    torch.testing.assert_close(diff.mean(), ppca.exact_log_likelihood(ml, x[:1])[0])
    # and KL(posterior || prior) through the seed's full-covariance formula is positive
    assert float(kl_gaussian(loc[0], cov, torch.zeros(L, dtype=torch.float64), torch.eye(L, dtype=torch.float64))) > 0


def test_trained_linear_vae_reaches_the_ppca_maximum_likelihood(data):
    x, ml = data
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(D,), latent_dim=L, arch="linear", likelihood="gaussian", gaussian_variance=ml.c))
    fit(model, x, None, TrainConfig(epochs=100, batch_size=100, lr=3e-2), progress=False)
    model = model.double()
    fitted = ppca.from_model(model)
    best = float(ppca.exact_log_likelihood(ml, x).mean())
    reached = float(ppca.exact_log_likelihood(fitted, x).mean())
    with torch.no_grad(), seeded(0):
        elbo = float(model.elbo(x.double(), n_samples=200).elbo.mean())
    # Adam at a fixed step size leaves the decoder a few hundredths of a nat from the optimum
    # (measured: 0.01); the ELBO is below the model's own log-likelihood by the encoder's
    # remaining gap (measured: 0.05). Both shrink with a decaying step size.
    assert best - 0.03 < reached <= best + 1e-9
    assert best - 0.1 < elbo < reached + 0.01
    angles = ppca.principal_angles(fitted.W, ml.W)
    assert float(angles.max()) < 0.05, angles


def test_linear_autoencoder_spans_the_pca_subspace(data):
    x, ml = data
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="ae", data_shape=(D,), latent_dim=L, arch="linear", likelihood="gaussian"))
    assert isinstance(model, Autoencoder)
    fit(model, x, None, TrainConfig(epochs=100, batch_size=100, lr=3e-2), progress=False)
    (layer,) = [m for m in model.decoder.net.modules() if isinstance(m, torch.nn.Linear)]
    top = SkPCA(n_components=L).fit(x.numpy()).components_.T  # (D, L)
    angles = ppca.principal_angles(layer.weight.detach(), torch.as_tensor(top))
    assert float(angles.max()) < 0.05, angles
    # and its squared error matches PCA's, the optimum among rank-L linear maps
    pca = PCA(ModelConfig(model="pca", data_shape=(D,), latent_dim=L)).fit_closed_form(x)
    err_ae = float((model.reconstruct(x) - x).square().sum(1).mean())
    err_pca = float((pca.reconstruct(x) - x).square().sum(1).mean())
    assert err_pca <= err_ae + 1e-4 and err_ae < err_pca * 1.01


def test_pca_baseline_is_scikit_learns_pca_read_as_ppca(data):
    x, _ = data
    model = PCA(ModelConfig(model="pca", data_shape=(D,), latent_dim=L)).double().fit_closed_form(x)
    sk = SkPCA(n_components=L, svd_solver="full").fit(x.double().numpy())
    xd = x.double()
    np.testing.assert_allclose(model.elbo(xd).log_likelihood.numpy(), sk.score_samples(xd.numpy()), rtol=1e-9)
    np.testing.assert_allclose(model.reconstruct(xd).numpy(), sk.inverse_transform(sk.transform(xd.numpy())), atol=1e-9)
    np.testing.assert_allclose(model.encode(xd).mean.numpy(), sk.transform(xd.numpy()), atol=1e-9)
    assert model.sample(7).shape == (7, D)
