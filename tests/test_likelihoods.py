"""Each likelihood equals the matching torch.distributions log_prob summed over dimensions."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, ContinuousBernoulli, MultivariateNormal, Normal

from vaekit import VaekitError
from vaekit.models.likelihoods import LIKELIHOODS, make_likelihood

SHAPE = (1, 4, 3)


def _out_and_x(binary=False):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(6, *SHAPE, generator=g, dtype=torch.float64)
    x = torch.rand(6, *SHAPE, generator=g, dtype=torch.float64)
    return out, (x > 0.5).double() if binary else x


def test_bernoulli_is_summed_bernoulli_and_cross_entropy():
    out, x = _out_and_x(binary=True)
    lp = make_likelihood("bernoulli", SHAPE)(out).log_prob(x)
    assert lp.shape == (6,)
    ref = Bernoulli(logits=out).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(lp, ref)
    bce = F.binary_cross_entropy_with_logits(out, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(lp, -bce)


def test_bernoulli_on_grey_levels_is_the_cross_entropy():
    out, x = _out_and_x()
    lp = make_likelihood("bernoulli", SHAPE)(out).log_prob(x)
    torch.testing.assert_close(lp, -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum((1, 2, 3)))


def test_continuous_bernoulli_is_normalized_density():
    out, x = _out_and_x()
    lp = make_likelihood("continuous-bernoulli", SHAPE)(out).log_prob(x)
    torch.testing.assert_close(lp, ContinuousBernoulli(logits=out).log_prob(x).sum((1, 2, 3)))
    # integrates to one on [0, 1] (one dimension, trapezoid rule)
    lik = make_likelihood("continuous-bernoulli", (1,))
    grid = torch.linspace(1e-6, 1 - 1e-6, 20001, dtype=torch.float64).unsqueeze(1)
    dens = lik(torch.full_like(grid, 1.3)).log_prob(grid).exp()
    assert abs(float(torch.trapezoid(dens, grid[:, 0])) - 1) < 1e-3


@pytest.mark.parametrize("c", [0.01, 0.1, 1.0, 4.0])
def test_gaussian_fixed_variance_is_weighted_l2_plus_constant(c):
    out, x = _out_and_x()
    lik = make_likelihood("gaussian", SHAPE, gaussian_variance=c)
    lp = lik(out).log_prob(x)
    ref = Normal(out, math.sqrt(c)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(lp, ref)
    d = math.prod(SHAPE)
    l2 = ((x - out) ** 2).sum((1, 2, 3)) / (2 * c) + 0.5 * d * math.log(2 * math.pi * c)
    torch.testing.assert_close(lp, -l2)
    assert list(lik.parameters()) == []  # fixed: nothing to learn


def test_gaussian_learned_variance_is_a_parameter_with_a_floor():
    out, x = _out_and_x()
    lik = make_likelihood("gaussian-learned", SHAPE, gaussian_variance=0.25).double()
    torch.testing.assert_close(lik.scale, torch.full(SHAPE, 0.5, dtype=torch.float64))
    lp = lik(out).log_prob(x)
    torch.testing.assert_close(lp, Normal(out, lik.scale).log_prob(x).sum((1, 2, 3)))
    lp.sum().backward()
    assert lik.raw_scale.grad is not None and lik.raw_scale.grad.abs().sum() > 0
    with torch.no_grad():
        lik.raw_scale.fill_(-1e4)
    assert float(lik.scale.detach().min()) >= lik.min_scale


def test_gaussian_lowrank_is_the_multivariate_normal_with_that_covariance():
    """Against torch's full-covariance MultivariateNormal (Cholesky, no Woodbury), over the data's
    own shape: the flattening must put each value with its own mean and row of the factor."""
    out, x = _out_and_x()
    lik = make_likelihood("gaussian-lowrank", SHAPE, gaussian_variance=0.25).double()
    d = math.prod(SHAPE)
    assert lik.cov_factor.shape == (d, d)  # r = D below the cap: a full covariance
    with torch.no_grad():
        lik.cov_factor.copy_(torch.randn(d, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.3)
    cov = lik.cov_factor @ lik.cov_factor.T + torch.diag(lik.scale.flatten().square())
    want = MultivariateNormal(out.flatten(1), covariance_matrix=cov).log_prob(x.flatten(1))
    px = lik(out)
    torch.testing.assert_close(px.log_prob(x), want)
    assert px.mean.shape == out.shape and torch.equal(px.mean, out)
    draws = px.sample((4000,))  # (4000, 6, 1, 4, 3): its covariance is the one above
    centred = (draws - out).flatten(2)[:, 0]
    torch.testing.assert_close(centred.T @ centred / len(centred), cov, atol=0.12, rtol=0)
    lp = px.log_prob(x).sum()
    lp.backward()
    assert lik.cov_factor.grad.abs().sum() > 0 and lik.raw_scale.grad.abs().sum() > 0
    big = make_likelihood("gaussian-lowrank", (1, 28, 28))
    assert big.cov_factor.shape == (784, big.max_rank)  # images: capped rank, O(D r) per example


def test_a_lowrank_decoder_learns_noise_that_a_diagonal_one_cannot():
    """Six correlated Gaussian columns, a VAE with one latent unit: with a diagonal p(x|z) it must
    explain the correlations through z and cannot; the low-rank factor takes them, and its
    importance-weighted log-likelihood on fresh rows comes near the true density's."""
    from vaekit import ModelConfig, TrainConfig, build_model, fit
    from vaekit.evaluation.estimators import log_likelihood

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g)
    truth = MultivariateNormal(torch.zeros(6), covariance_matrix=a @ a.T / 6 + 0.05 * torch.eye(6))
    torch.manual_seed(0)
    train, fresh = truth.sample((2000,)), truth.sample((1000,))
    exact = truth.log_prob(fresh).mean().item()
    got = {}
    for name in ("gaussian-lowrank", "gaussian-learned"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(data_shape=(6,), latent_dim=1, hidden=(32,), likelihood=name))
        fit(model, train, None, TrainConfig(epochs=40, batch_size=64, lr=3e-3, seed=0, device="cpu", patience=0),
            progress=False)
        with torch.no_grad():
            got[name] = log_likelihood(model.eval(), fresh, 100, generator_seed=0).mean().item()
    assert got["gaussian-lowrank"] > exact - 0.15, (got, exact)
    assert got["gaussian-learned"] < got["gaussian-lowrank"] - 0.5, (got, exact)  # measured: 1.15 nats worse


def test_leading_sample_axes_broadcast():
    out, x = _out_and_x()
    for name in LIKELIHOODS:
        lik = make_likelihood(name, SHAPE).double()
        lp = lik(out.expand(5, *out.shape)).log_prob(x)
        assert lp.shape == (5, 6)
        torch.testing.assert_close(lp[3], lik(out).log_prob(x))


def test_bernoulli_refuses_data_outside_unit_interval():
    lik = make_likelihood("bernoulli", SHAPE)
    lik.check_range(0.0, 1.0, "ok")
    for lo, hi in ((0.0, 1.5), (-0.1, 1.0)):
        with pytest.raises(VaekitError, match=r"mydata\.npy.*outside \[0, 1\].*gaussian"):
            lik.check_range(lo, hi, "mydata.npy")
    make_likelihood("gaussian", SHAPE).check_range(-5.0, 5.0, "fine for gaussian")


def test_learned_gaussian_refuses_a_start_variance_at_its_floor():
    """A start variance at or below the floor (scale 1e-3) is one clear error, not a traceback."""
    for c in (1e-7, 1e-6):
        with pytest.raises(VaekitError, match=r"--gaussian-variance .*floor 1e-06"):
            make_likelihood("gaussian-learned", SHAPE, gaussian_variance=c)
    for c in (1.01e-6, 0.1, 1e6):  # just above the floor, the default, and huge (no overflow)
        lik = make_likelihood("gaussian-learned", SHAPE, gaussian_variance=c)
        torch.testing.assert_close(lik.scale, torch.full(SHAPE, c**0.5), rtol=1e-5, atol=0)


def test_unknown_likelihood_is_one_clear_error():
    with pytest.raises(VaekitError, match="unknown likelihood 'poisson'; choose one of: bernoulli"):
        make_likelihood("poisson", SHAPE)


def test_gaussian_lowrank_under_bf16_autocast_computes_in_float32():
    """--precision bf16 hands it bfloat16 decoder outputs; the Cholesky of its capacitance has no
    bfloat16 kernel, so it works in float32 (autocast still runs its products in bfloat16: it
    agrees with the float32 figure to bfloat16's precision)."""
    out, x = _out_and_x()
    lik = make_likelihood("gaussian-lowrank", SHAPE)
    out, x = out.float(), x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = lik(out.bfloat16()).log_prob(x)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, lik(out.bfloat16().float()).log_prob(x), rtol=1e-3, atol=0)
