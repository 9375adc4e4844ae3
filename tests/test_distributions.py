"""The closed-form KLs against torch.distributions and against Monte Carlo."""

import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaekit.models.distributions import diag_normal, kl_diag_normal_standard, kl_gaussian, standard_normal


def test_diag_kl_equals_torch_distributions():
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(50, 7, generator=g, dtype=torch.float64) * 2
    scale = torch.rand(50, 7, generator=g, dtype=torch.float64) * 3 + 0.05
    ours = kl_diag_normal_standard(loc, scale)
    ref = kl_divergence(Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(loc))).sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    ref_indep = kl_divergence(diag_normal(loc, scale), standard_normal(7, dtype=torch.float64))
    torch.testing.assert_close(ours, ref_indep, rtol=1e-12, atol=1e-12)


def test_diag_kl_matches_monte_carlo():
    torch.manual_seed(1)
    loc = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    scale = torch.tensor([0.3, 1.5, 1.0], dtype=torch.float64)
    q, p = diag_normal(loc, scale), standard_normal(3, dtype=torch.float64)
    z = q.sample((400_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean()
    exact = kl_diag_normal_standard(loc, scale)
    # the Monte Carlo standard error is std/sqrt(n); allow 5 of them
    stderr = (q.log_prob(z) - p.log_prob(z)).std() / 400_000**0.5
    assert abs(float(mc - exact)) < 5 * float(stderr)


def test_diag_kl_is_zero_only_at_the_prior():
    zero = kl_diag_normal_standard(torch.zeros(4), torch.ones(4))
    assert float(zero) == 0.0
    assert float(kl_diag_normal_standard(torch.full((4,), 0.1), torch.ones(4))) > 0


def _random_spd(k, g):
    a = torch.randn(k, k, generator=g, dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(k, dtype=torch.float64)


def test_full_covariance_kl_equals_torch_distributions():
    g = torch.Generator().manual_seed(2)
    for k in (1, 3, 6):
        m1, m2 = torch.randn(k, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
        s1, s2 = _random_spd(k, g), _random_spd(k, g)
        ours = kl_gaussian(m1, s1, m2, s2)
        ref = kl_divergence(MultivariateNormal(m1, s1), MultivariateNormal(m2, s2))
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_full_covariance_kl_batched_and_reduces_to_diagonal_case():
    g = torch.Generator().manual_seed(3)
    loc = torch.randn(5, 4, generator=g, dtype=torch.float64)
    scale = torch.rand(5, 4, generator=g, dtype=torch.float64) + 0.2
    eye = torch.eye(4, dtype=torch.float64).expand(5, 4, 4)
    full = kl_gaussian(loc, torch.diag_embed(scale**2), torch.zeros_like(loc), eye)
    torch.testing.assert_close(full, kl_diag_normal_standard(loc, scale), rtol=1e-10, atol=1e-10)


def test_full_covariance_kl_is_not_symmetric():
    g = torch.Generator().manual_seed(4)
    m1, m2 = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    s1, s2 = _random_spd(2, g), 3 * _random_spd(2, g)
    assert abs(float(kl_gaussian(m1, s1, m2, s2) - kl_gaussian(m2, s2, m1, s1))) > 1e-3
