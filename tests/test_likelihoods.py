"""Each likelihood equals the matching torch.distributions log_prob summed over dimensions."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, ContinuousBernoulli, Normal

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
