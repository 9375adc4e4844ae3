"""The VAE's mathematics: reparameterization, gradients, the ELBO and its parts."""

import pytest
import torch
from torch.distributions import kl_divergence

from vaekit import VAE, ModelConfig, VaekitError
from vaekit.models.distributions import diag_normal


def _model(**kw):
    torch.manual_seed(0)
    return VAE(ModelConfig(**{"data_shape": (1, 8, 8), "latent_dim": 3, "hidden": (16,), "likelihood": "bernoulli", **kw}))


def test_reparameterized_samples_have_the_right_mean_and_variance():
    torch.manual_seed(0)
    loc = torch.tensor([1.0, -2.0, 0.5])
    scale = torch.tensor([0.5, 2.0, 1.0])
    z = diag_normal(loc, scale).rsample((200_000,))
    n = z.shape[0]
    # mean within 5 standard errors; variance within 5 standard errors of the sample variance
    assert torch.all((z.mean(0) - loc).abs() < 5 * scale / n**0.5)
    var_se = scale**2 * (2 / (n - 1)) ** 0.5
    assert torch.all((z.var(0) - scale**2).abs() < 5 * var_se)


def test_reparameterization_is_loc_plus_scale_times_noise():
    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.1
    torch.manual_seed(5)
    z = diag_normal(loc, scale).rsample()
    torch.manual_seed(5)
    eps = torch.randn(4, 3)
    torch.testing.assert_close(z, loc + scale * eps)


def test_gradients_reach_both_encoder_heads_and_the_decoder():
    model = _model()
    x = torch.rand(8, 1, 8, 8)
    model.loss(x).backward()
    for name in ("encoder.loc_head.weight", "encoder.logvar_head.weight", "encoder.trunk.1.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_sampled_z_carries_gradient_to_loc_and_scale():
    loc = torch.zeros(3, requires_grad=True)
    scale = torch.ones(3, requires_grad=True)
    torch.manual_seed(0)
    z = diag_normal(loc, scale).rsample()
    z.sum().backward()
    torch.testing.assert_close(loc.grad, torch.ones(3))
    torch.manual_seed(0)
    torch.testing.assert_close(scale.grad, torch.randn(3))  # dz/dscale = eps


def test_elbo_is_reconstruction_minus_closed_form_kl():
    model = _model().double()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    torch.manual_seed(3)
    terms = model.elbo(x)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)
    qz = model.encode(x)
    torch.testing.assert_close(terms.kl, kl_divergence(qz, model.prior()))
    # the same noise gives the same reconstruction term, computed by hand
    torch.manual_seed(3)
    z = qz.rsample((1,))
    torch.testing.assert_close(terms.reconstruction, model.decode(z).log_prob(x)[0])


def test_elbo_with_many_samples_averages_the_reconstruction_term():
    model = _model().double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    torch.manual_seed(4)
    many = model.elbo(x, n_samples=64)
    torch.manual_seed(4)
    qz = model.encode(x)
    z = qz.rsample((64,))
    torch.testing.assert_close(many.reconstruction, model.decode(z).log_prob(x).mean(0))


def test_elbo_is_below_zero_for_binary_data_under_bernoulli():
    """ELBO = E_q[log p(x|z) + log p(z) - log q(z|x)] <= log p(x) <= 0 for binary x, each side
    computed apart from vaekit's likelihood and KL code: torch.distributions' Bernoulli and Normal,
    and log p(x) by brute force over prior draws (3 latent units: 10^4 draws give it to ~0.01)."""
    import math

    from torch.distributions import Bernoulli, Normal

    model = _model().double()
    with torch.no_grad():  # q(z|x) away from the prior, so that the KL (~3 nats) weighs in the ELBO
        model.encoder.loc_head.bias.copy_(torch.tensor([1.0, -1.5, 0.5]))
        model.encoder.logvar_head.bias.fill_(math.log(0.25))
    torch.manual_seed(1)
    x = (torch.rand(4, 1, 8, 8, dtype=torch.float64) > 0.5).double()
    n = 10_000

    def log_px_given_z(z):  # torch's Bernoulli on the decoder's means, summed over the 64 pixels
        return Bernoulli(probs=model.decode(z).mean).log_prob(x).flatten(-3).sum(-1)

    with torch.no_grad():
        log_px = torch.logsumexp(log_px_given_z(torch.randn(n, 4, 3, dtype=torch.float64)), 0) - math.log(n)
        qz = model.encode(x)
        q = Normal(qz.mean, qz.stddev)
        z = q.sample((n,))
        terms = log_px_given_z(z) + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        elbo = model.elbo(x, n_samples=n).elbo
    se = terms.std(0) / math.sqrt(n)  # each Monte Carlo ELBO's standard error, about 0.01 here
    assert torch.all((elbo - terms.mean(0)).abs() < 5 * math.sqrt(2) * se), (elbo, terms.mean(0), se)
    # the gap is KL(q(z|x) || p(z|x)): 3 to 4 nats for this encoder, far above the noise
    assert torch.all(elbo < log_px - 0.1), (elbo, log_px)
    assert torch.all(log_px < 0)


@pytest.mark.parametrize("arch,shape", [("mlp", (1, 8, 8)), ("mlp", (13,)), ("linear", (13,)),
                                        ("conv", (1, 8, 8)), ("conv", (1, 28, 28)), ("conv", (3, 9, 7))])
def test_architectures_map_data_shape_to_itself(arch, shape):
    model = _model(arch=arch, data_shape=shape, likelihood="gaussian")
    x = torch.randn(4, *shape)
    qz = model.encode(x)
    assert qz.batch_shape == (4,) and qz.event_shape == (3,)
    px_z = model.decode(qz.rsample((2,)))
    assert px_z.batch_shape == (2, 4) and px_z.event_shape == shape
    assert model.sample(5).shape == (5, *shape)
    assert model.reconstruct(x).shape == (4, *shape)
    assert model.interpolate(x[0], x[1], steps=6).shape == (6, *shape)


def test_conv_refuses_flat_data():
    with pytest.raises(VaekitError, match="conv.*C x H x W"):
        _model(arch="conv", data_shape=(64,))


def test_unknown_arch_is_one_clear_error():
    with pytest.raises(VaekitError, match="unknown arch 'transformer'"):
        _model(arch="transformer")


def test_encoder_scale_stays_positive_and_finite_for_extreme_inputs():
    model = _model()
    with torch.no_grad():
        model.encoder.logvar_head.bias.fill_(1e4)
    qz = model.encode(torch.rand(2, 1, 8, 8))
    assert torch.isfinite(qz.base_dist.scale).all() and (qz.base_dist.scale > 0).all()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("arch", ["mlp", "conv", "resnet"])
def test_init_output_bias_starts_the_decoder_at_the_data_mean(likelihood, arch):
    model = _model(arch=arch, likelihood=likelihood)
    x = torch.rand(50, 1, 8, 8) * 0.8 + 0.1
    model.init_output_bias(x.mean(0))
    last = [m for m in model.decoder.net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d))][-1]
    with torch.no_grad():
        last.weight.zero_()  # isolate the bias: the output no longer depends on z
    mean = model.decode(torch.randn(3, 3)).mean
    if arch == "mlp":  # one bias per pixel: the data mean itself
        target = x.mean(0)
    else:  # one bias per channel: the spatial average of the per-pixel outputs
        out = model.likelihood.output_for_mean(x.mean(0))
        target = model.likelihood(out.mean((1, 2), keepdim=True).expand_as(out)).mean
    torch.testing.assert_close(mean, target.expand_as(mean), rtol=1e-5, atol=1e-5)


def test_auto_likelihood_must_be_resolved_before_building():
    with pytest.raises(VaekitError, match="likelihood 'auto' is chosen from the data"):
        VAE(ModelConfig(data_shape=(4,)))
