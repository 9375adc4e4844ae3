"""The log-likelihood estimators against an exactly solvable model (probabilistic PCA)."""

import math

import torch

from vaekit import VAE, ModelConfig
from vaekit.evaluation import ppca
from vaekit.evaluation.estimators import active_units, log_likelihood, naive_log_likelihood
from vaekit.seeding import seeded

D, L, C = 5, 2, 0.5


def _linear_vae(W, b, c=C):
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(W.shape[0],), latent_dim=W.shape[1], arch="linear",
                            likelihood="gaussian", gaussian_variance=c)).double()
    ppca.set_decoder(model, ppca.LinearGaussian(W, b, c))
    return model


def _wide_encoder(model, params, factor=4.0):
    """q(z|x): the exact posterior mean with a diagonal variance ``factor`` times the exact
    marginal posterior variances. For L = 2 any factor >= 2 makes q wider than p(z|x) in every
    direction, so the importance weights have finite variance."""
    W, b, c = params
    M = W.T @ W + c * torch.eye(W.shape[1], dtype=W.dtype)
    A = torch.linalg.solve(M, W.T)
    with torch.no_grad():
        model.encoder.loc_head.weight.copy_(A)
        model.encoder.loc_head.bias.copy_(-A @ b)
        model.encoder.logvar_head.weight.zero_()
        model.encoder.logvar_head.bias.copy_(torch.log(factor * c * torch.linalg.inv(M).diagonal()))
    return model


def _random_params(seed=0, orthogonal=False):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, L, generator=g, dtype=torch.float64)
    if orthogonal:  # orthogonal columns: the exact posterior is diagonal
        q, _ = torch.linalg.qr(W)
        W = q * torch.tensor([2.0, 0.7], dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    return ppca.LinearGaussian(W, b, C)


def _data(params, n=64, seed=1):
    with seeded(seed):
        return ppca.marginal(params).sample((n,))


def test_importance_sampling_converges_to_the_exact_log_likelihood():
    params = _random_params()
    model = _wide_encoder(_linear_vae(params.W, params.b), params)  # a proposal, not the posterior
    x = _data(params)
    exact = ppca.exact_log_likelihood(params, x)
    errors = []
    for k in (1, 10, 100, 10_000):
        est = log_likelihood(model, x, n_importance=k, chunk_size=2000)
        errors.append(float((est - exact).abs().mean()))
        # a lower bound in expectation: the mean over examples never overshoots by more than noise
        assert float((est - exact).mean()) < 0.02
    assert errors == sorted(errors, reverse=True), errors
    # With K = 10^4 the remaining error is the O(1/K) bias plus noise of the log of a mean of
    # 10^4 weights: over generator seeds 0-5 the mean absolute error lies in 0.0076-0.0106,
    # while a wrong weight (a missing log q or log p term) is off by nats.
    assert errors[-1] < 0.015, errors
    elbo = model.elbo(x, n_samples=2000).elbo
    assert torch.all(elbo < exact), "the ELBO bounds log p(x) from below"


def test_with_the_exact_posterior_the_gap_is_zero():
    params = _random_params(orthogonal=True)
    model = _linear_vae(params.W, params.b)
    ppca.set_exact_posterior(model, params)
    x = _data(params)
    exact = ppca.exact_log_likelihood(params, x)
    loc, cov = ppca.posterior(params, x)
    qz = model.encode(x)
    torch.testing.assert_close(qz.base_dist.loc, loc)
    torch.testing.assert_close(qz.base_dist.scale.square(), cov.diagonal().expand_as(loc))
    # log p(x, z) - log q(z|x) = log p(x) for every z, so even one sample is exact
    torch.testing.assert_close(log_likelihood(model, x, n_importance=1), exact, rtol=0, atol=1e-9)
    torch.testing.assert_close(log_likelihood(model, x, n_importance=50), exact, rtol=0, atol=1e-9)
    # the ELBO with its closed-form KL equals log p(x) up to Monte Carlo error in E_q[log p(x|z)]
    with torch.no_grad():
        elbo = model.elbo(x, n_samples=20_000).elbo
    assert float((elbo - exact).abs().max()) < 0.02


def test_one_importance_sample_is_the_elbo_under_the_same_noise():
    params = _random_params()
    model = _linear_vae(params.W, params.b)
    x = _data(params, n=8)
    iw1 = log_likelihood(model, x, n_importance=1, generator_seed=11)
    with seeded(11):
        qz = model.encode(x)
        z = qz.rsample((1,))
    by_hand = (model.decode(z).log_prob(x) + model.prior().log_prob(z) - qz.log_prob(z))[0]
    torch.testing.assert_close(iw1, by_hand)
    with seeded(11):
        terms = model.elbo(x)
    # same z, so the reconstruction terms agree; the rest is the Monte Carlo KL vs the closed form
    torch.testing.assert_close(iw1 - (model.prior().log_prob(z) - qz.log_prob(z))[0], terms.reconstruction)
    # averaged over many noise draws, K = 1 is the ELBO
    many = torch.stack([log_likelihood(model, x, n_importance=1, generator_seed=s) for s in range(400)])
    closed = model.elbo(x, n_samples=4000).elbo
    se = many.std(0) / math.sqrt(len(many))
    assert torch.all((many.mean(0) - closed).abs() < 5 * se + 0.05)


def test_the_estimate_does_not_fall_as_k_grows():
    params = _random_params(seed=3)
    model = _linear_vae(params.W, params.b)
    x = _data(params, n=200)
    means = [float(log_likelihood(model, x, n_importance=k, generator_seed=5).mean()) for k in (1, 5, 50, 500)]
    for a, b in zip(means, means[1:]):
        assert b >= a - 0.01, means


def test_chunking_and_batching_keep_the_estimate():
    params = _random_params(orthogonal=True)
    model = _linear_vae(params.W, params.b)
    ppca.set_exact_posterior(model, params)  # every weight equals p(x): any error is arithmetic
    x = _data(params, n=10)
    exact = ppca.exact_log_likelihood(params, x)
    for k, chunk, batch in ((300, 300, 100), (300, 7, 3), (20, 1, 5)):
        est = log_likelihood(model, x, n_importance=k, chunk_size=chunk, batch_size=batch)
        torch.testing.assert_close(est, exact, rtol=0, atol=1e-9)

    # The prior-sampling estimator, arithmetic alone: with W = 0, p(x|z) = N(b, cI) = p(x) for
    # every z, so every layout of chunks and batches must give log p(x) exactly (a wrong divisor,
    # a dropped or doubled chunk, rows of a batch paired with the wrong x all show here).
    flat = ppca.LinearGaussian(torch.zeros_like(params.W), params.b, params.c)
    flat_model = _linear_vae(flat.W, flat.b)
    flat_exact = ppca.exact_log_likelihood(flat, x)
    for k, chunk, batch in ((300, 300, 100), (300, 7, 3), (20, 1, 5)):
        est = naive_log_likelihood(flat_model, x, n_samples=k, chunk_size=chunk, batch_size=batch)
        torch.testing.assert_close(est, flat_exact, rtol=0, atol=1e-9)

    # ...and its sampling: with W != 0 each layout must still estimate log p(x). With K = 2000 the
    # Monte Carlo spread of the mean error over these 10 points is about 0.02 nats; a chunk that
    # reused its draws (K = 3 in effect) or z drawn from another distribution is off by > 0.5.
    for k, chunk, batch in ((2000, 2000, 10), (2000, 3, 3)):
        est = naive_log_likelihood(model, x, n_samples=k, chunk_size=chunk, batch_size=batch)
        assert abs(float((est - exact).mean())) < 0.1, (chunk, batch, est - exact)


def test_naive_estimator_is_unbiased_in_p_not_in_log_p():
    params = ppca.LinearGaussian(torch.tensor([[1.5], [0.5]], dtype=torch.float64),
                                 torch.zeros(2, dtype=torch.float64), 0.3)
    model = VAE(ModelConfig(data_shape=(2,), latent_dim=1, arch="linear", likelihood="gaussian",
                            gaussian_variance=0.3)).double()
    ppca.set_decoder(model, params)
    x = torch.tensor([[0.8, 0.1]], dtype=torch.float64)
    exact = float(ppca.exact_log_likelihood(params, x))
    runs = naive_log_likelihood(model, x.expand(20_000, 2), n_samples=3, generator_seed=0)
    p_hat = runs.exp()
    se = float(p_hat.std() / math.sqrt(len(p_hat)))
    assert abs(float(p_hat.mean()) - math.exp(exact)) < 4 * se, "unbiased for p(x)"
    log_se = float(runs.std() / math.sqrt(len(runs)))
    assert float(runs.mean()) < exact - 5 * log_se, "biased low for log p(x) (Jensen)"


def test_naive_needs_more_samples_than_importance_sampling():
    # A posterior much narrower than the prior (posterior sd about 0.08 and 0.1): few prior draws
    # land where p(x|z) is large. The proposal is the wide encoder, not the exact posterior, so
    # importance sampling has an error of its own to compare with.
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, L, generator=g, dtype=torch.float64))
    params = ppca.LinearGaussian(q * torch.tensor([4.0, 3.0], dtype=torch.float64),
                                 torch.randn(D, generator=g, dtype=torch.float64), 0.1)
    model = _wide_encoder(_linear_vae(params.W, params.b, params.c), params)
    x = _data(params, n=32)
    exact = ppca.exact_log_likelihood(params, x)

    def error(est):
        return float((est - exact).abs().mean())

    iw = error(log_likelihood(model, x, n_importance=100))
    assert 0.01 < iw < 0.2, iw  # a proposal that is not the posterior: a small, nonzero error
    # ten times the samples, and the prior-sampling estimate is still far worse (here by ~20x)
    naive_10x = error(naive_log_likelihood(model, x, n_samples=1000))
    assert naive_10x > 5 * iw, (naive_10x, iw)
    # yet it estimates the same log p(x): with 10^4 samples it comes close (about 0.2 nats here)
    naive_100x = error(naive_log_likelihood(model, x, n_samples=10_000))
    assert naive_100x < min(0.35, naive_10x / 3), (naive_100x, naive_10x)


def test_active_units_counts_units_that_vary_with_x():
    params = _random_params()
    model = _linear_vae(params.W, params.b)
    with torch.no_grad():
        model.encoder.loc_head.weight.zero_()
        model.encoder.loc_head.weight[0, 0] = 1.0  # unit 0 follows x_0; unit 1 is constant
    x = _data(params, n=500)
    assert active_units(model, x) == 1
    with torch.no_grad():
        model.encoder.loc_head.weight[1, 1] = 1e-3  # variance ~1e-6: below 0.01
    assert active_units(model, x) == 1
