"""The core that grows: the model protocol, batches that carry labels, priors as objects.

- a model written from scratch against the protocol alone (no vaekit base class) trains with
  ``fit`` and gets exact answers from the estimators;
- a labelled dataset's labels reach the model's ``elbo(batch)`` in training and in ``evaluate``,
  paired with their own examples; an unlabelled one yields none and nothing breaks;
- a new prior is a few lines, registered, trained through ``vaekit.train`` and rebuilt by
  ``vaekit.load``; its KL, estimated by sampling, agrees with torch's closed form.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

import vaekit
from vaekit import ModelConfig, TrainConfig, VaekitError
from vaekit.evaluation import ppca
from vaekit.evaluation.estimators import log_likelihood, naive_log_likelihood
from vaekit.models import MODELS, PRIORS, VAE, Headline, Prior, build_model, check_model, register_model, register_prior


# -- 1. a model that implements only the protocol ------------------------------------------------

class Terms(NamedTuple):
    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


class LinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x|z) = N(W z + b, c I), q(z|x) = N(A x + a, diag s^2): written from
    scratch, with no vaekit base class, so only the protocol connects it to vaekit."""

    headline = Headline("elbo", "ELBO", bounds_log_likelihood=True)
    trains_by_gradient = True
    conditions = ()

    def __init__(self, D: int, L: int, c: float):
        super().__init__()
        self.config = ModelConfig(data_shape=(D,), latent_dim=L, likelihood="gaussian")
        self.W, self.b = nn.Parameter(torch.randn(D, L) * 0.3), nn.Parameter(torch.zeros(D))
        self.A, self.a = nn.Parameter(torch.randn(L, D) * 0.1), nn.Parameter(torch.zeros(L))
        self.log_s = nn.Parameter(torch.full((L,), -1.0))
        self.c = c

    @property
    def device(self):
        return self.W.device

    def prior(self):
        return Independent(Normal(torch.zeros(self.W.shape[1]), 1.0), 1)

    def encode(self, batch):
        return Independent(Normal(batch["x"] @ self.A.T + self.a, self.log_s.exp()), 1)

    def decode(self, z, batch=None):
        return Independent(Normal(z @ self.W.T + self.b, math.sqrt(self.c)), 1)

    def log_weights(self, batch, k):
        qz = self.encode(batch)
        z = qz.rsample((k,))  # (k, B, L)
        return self.decode(z).log_prob(batch["x"]) + self.prior().log_prob(z) - qz.log_prob(z)

    def training_loss(self, batch, *, beta=1.0, free_bits=0.0, noise=None):
        qz = self.encode(batch)
        z = qz.mean + qz.stddev * noise if noise is not None else qz.rsample()
        rec = self.decode(z).log_prob(batch["x"])
        kl = kl_divergence(qz, self.prior())
        return -(rec - beta * kl), Terms(rec - kl, rec, kl)

    forward = training_loss

    def elbo(self, batch, n_samples=1):
        return self.training_loss(batch)[1]

    def draw_noise(self, n, generator):
        return torch.randn(n, self.W.shape[1], generator=generator)

    def sample(self, n, *, generator=None, **conditions):
        return self.decode(self.prior().sample((n,))).mean

    def reconstruct(self, batch):
        return self.decode(self.encode(batch).mean).mean

    def check_values(self, lo, hi, what):  # a Gaussian gives every real value a density
        pass

    def init_output_bias(self, mean):
        with torch.no_grad():
            self.b.copy_(mean)

    def exact(self) -> ppca.LinearGaussian:
        return ppca.LinearGaussian(self.W.detach().double(), self.b.detach().double(), self.c)


def _ppca_data(n=600, D=5, L=2, c=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, L, generator=g)
    return torch.randn(n, L, generator=g) @ W.T + 0.3 + math.sqrt(c) * torch.randn(n, D, generator=g)


def test_a_protocol_only_model_trains_and_the_estimators_find_its_exact_log_likelihood():
    x = _ppca_data()
    torch.manual_seed(0)
    model = LinearGaussian(5, 2, 0.05)
    check_model(model)  # the protocol, nothing else
    before = vaekit.evaluate(model, x)["elbo"]
    rows = vaekit.fit(model, x[:500], x[500:], TrainConfig(epochs=60, batch_size=50, lr=1e-2), progress=False)
    assert rows[-1]["val_elbo"] > before + 5  # it learned
    exact = ppca.exact_log_likelihood(model.exact(), x[500:510]).float()
    iw = log_likelihood(model, x[500:510], n_importance=4000).float()
    naive = naive_log_likelihood(model, x[500:510], n_samples=200_000).float()
    torch.testing.assert_close(iw, exact, atol=0.05, rtol=0)  # importance sampling: tight
    torch.testing.assert_close(naive, exact, atol=0.3, rtol=0)  # prior sampling: far more samples, looser
    elbo = vaekit.evaluate(model, x[500:510])["elbo"]
    assert float(exact.mean()) > elbo  # the bound is below what it bounds


def test_build_model_refuses_a_registered_model_that_lacks_part_of_the_protocol():
    @register_model("half-a-model")
    class Half(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = config

        def encode(self, batch):
            return None

    try:
        with pytest.raises(VaekitError, match="Half does not implement the vaekit model protocol: it lacks headline"):
            build_model(ModelConfig(model="half-a-model", data_shape=(3,)))
    finally:
        del MODELS["half-a-model"]


# -- 2. labels reach the model --------------------------------------------------------------------

class LabelSpy(VAE):
    """A VAE that records the labels each batch carried and checks they belong to its examples."""

    truth: dict[bytes, int] = {}
    seen: list[tuple[str, int, bool]] = []  # (where, examples, every label right)

    def _terms(self, batch, *args):
        where = "train" if self.training else "eval"
        if "y" in batch:
            keys = [bytes(np.asarray(r.cpu(), dtype=np.float32).tobytes()) for r in batch["x"]]
            right = all(self.truth[k] == int(y) for k, y in zip(keys, batch["y"]))
            LabelSpy.seen.append((where, len(batch["x"]), right))
        else:
            LabelSpy.seen.append((where, len(batch["x"]), False))
        return super()._terms(batch, *args)


@pytest.fixture
def label_spy():
    MODELS["label-spy"] = LabelSpy
    LabelSpy.seen = []
    yield LabelSpy
    del MODELS["label-spy"]


def test_a_labelled_datasets_labels_reach_elbo_in_training_and_evaluate(label_spy, tmp_path):
    ds = vaekit.load_dataset("digits")
    label_spy.truth = {bytes(np.asarray(x, dtype=np.float32).tobytes()): int(y)
                       for xs, ys in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)) for x, y in zip(xs, ys)}
    model, summary = vaekit.train(ModelConfig(model="label-spy", latent_dim=2, hidden=(16,)),
                                  TrainConfig(data="digits", epochs=2, batch_size=256), tmp_path / "run", progress=False)
    train_batches = [s for s in label_spy.seen if s[0] == "train"]
    eval_batches = [s for s in label_spy.seen if s[0] == "eval"]
    # every training example, twice, after train's check of the options on the first two
    assert [n for _, n, _ in train_batches][0] == 2
    assert sum(n for _, n, _ in train_batches[1:]) == 2 * round(0.9 * len(ds.train))
    assert eval_batches and all(right for _, _, right in label_spy.seen)  # labels present and paired right
    label_spy.seen = []
    vaekit.evaluate(model, vaekit.load_examples(TrainConfig(data="digits"), "test"))
    assert sum(n for _, n, _ in label_spy.seen) == len(ds.test) and all(r for _, _, r in label_spy.seen)


def test_an_unlabelled_file_yields_no_labels_and_trains(label_spy, tmp_path):
    np.save(tmp_path / "x.npy", (np.random.default_rng(0).random((60, 4)) < 0.5).astype(np.float32))
    vaekit.train(ModelConfig(model="label-spy", latent_dim=2, hidden=(8,)),
                 TrainConfig(data=str(tmp_path / "x.npy"), epochs=1, batch_size=16), tmp_path / "run", progress=False)
    assert label_spy.seen and not any(right for _, _, right in label_spy.seen)  # no batch had labels


# -- 3. a prior is an object: a new one in a few lines --------------------------------------------

@pytest.fixture
def wide_prior():
    @register_prior("wide-test")
    class Wide(Prior):
        """N(0, 2^2 I) with no closed-form KL declared: vaekit estimates it by sampling."""

        def forward(self):
            zeros = self.zeros()
            return Independent(Normal(zeros, 2.0 + zeros), 1)

    yield Wide
    del PRIORS["wide-test"]


def test_a_prior_without_a_closed_form_has_its_kl_estimated_by_sampling(wide_prior):
    prior = wide_prior(3)
    assert not prior.analytic_kl and PRIORS["standard"](3).analytic_kl
    g = torch.Generator().manual_seed(0)
    qz = vaekit.diag_normal(torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.2)
    z = qz.sample((20000,))  # (S, B, L)
    exact = kl_divergence(qz, prior())  # torch's closed form, which the prior did not declare
    torch.testing.assert_close(prior.kl(qz, z), exact, atol=0.03, rtol=0)


def test_a_new_prior_trains_through_vaekit_train_and_load_rebuilds_it(wide_prior, tmp_path):
    model, summary = vaekit.train(ModelConfig(prior="wide-test", latent_dim=2, hidden=(32,)),
                                  TrainConfig(data="digits", epochs=3, batch_size=128), tmp_path / "run", progress=False)
    assert isinstance(model.prior, wide_prior) and math.isfinite(summary["elbo"])
    rows = vaekit.runs.read_metrics(tmp_path / "run")
    assert float(rows[-1]["val_elbo"]) > float(rows[0]["val_elbo"])  # it learns
    again = vaekit.load(tmp_path / "run")
    assert isinstance(again.prior, wide_prior)
    g = torch.Generator().manual_seed(1)
    x = vaekit.load_split(TrainConfig(data="digits"), "test")[:5]
    z = again.prior.sample(10000, g)
    assert abs(float(z.std()) - 2.0) < 0.05  # samples come from the new prior, not N(0, I)
    assert again.sample(3).shape == (3, 1, 8, 8) and again.elbo(x).kl.shape == (5,)


def test_free_bits_refuse_a_prior_without_a_per_unit_kl(wide_prior):
    model = VAE(ModelConfig(prior="wide-test", data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian"))
    with pytest.raises(VaekitError, match="--free-bits needs a prior with a closed-form KL per unit"):
        model.training_loss(torch.randn(3, 4), free_bits=0.5)


def test_sample_refuses_a_condition_the_model_does_not_take():
    model = VAE(ModelConfig(data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian"))
    with pytest.raises(VaekitError, match="takes no condition 'y'"):
        model.sample(2, y=3)


# -- 4. the mixture-of-Gaussians prior -------------------------------------------------------------

def test_importance_sampling_finds_the_exact_log_likelihood_under_a_mixture_prior():
    """Linear-Gaussian decoder, p(z) a mixture: p(x) = sum_k pi_k N(x | W mu_k + b, W S_k W^T + c I)."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(4,), latent_dim=2, arch="linear", likelihood="gaussian",
                            gaussian_variance=0.3, prior="mog", prior_components=3))
    with torch.no_grad():
        model.prior.logits.copy_(torch.tensor([0.0, 1.0, -0.5]))
        model.prior.loc.copy_(torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.0, -2.0]]))
        model.prior.log_scale.copy_(torch.tensor([[-0.5, 0.0], [0.2, -0.3], [0.0, 0.3]]))
        model.encoder.logvar_head.bias.fill_(math.log(4.0))  # a wide proposal over the modes
        model.encoder.logvar_head.weight.zero_()
    (dec,) = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    W, b = dec.weight.detach().double(), dec.bias.detach().double()
    pi = torch.softmax(model.prior.logits.detach().double(), 0)
    x = torch.randn(6, 4)
    exact = torch.logsumexp(torch.stack([
        pi[k].log() + torch.distributions.MultivariateNormal(
            W @ model.prior.loc[k].detach().double() + b,
            W @ torch.diag(model.prior.log_scale[k].detach().double().exp() ** 2) @ W.T + 0.3 * torch.eye(4),
        ).log_prob(x.double())
        for k in range(3)]), 0)
    iw = log_likelihood(model, x, n_importance=20000)
    torch.testing.assert_close(iw, exact, atol=0.03, rtol=0)
    assert float(vaekit.evaluate(model, x)["elbo"]) < float(exact.mean())


def test_a_mixture_prior_trains_and_is_rebuilt(tmp_path, capsys):
    from cli_helpers import ok, refused

    run = tmp_path / "run"
    out = ok(capsys, "train", "--data", "digits", "--epochs", 2, "--prior", "mog", "--prior-components", 4,
             "--latent-dim", 2, "--hidden", 32, "--run-dir", run).out
    assert "its KL estimated by sampling" in out  # the figure says how it was made
    assert "its KL estimated by sampling" in ok(capsys, "evaluate", run, "--no-probe").out  # evaluate too
    model = vaekit.load(run)
    assert model.prior.logits.shape == (4,)
    start = PRIORS["mog"](2, components=4)
    assert not torch.allclose(model.prior.loc, start.loc)  # its parameters were learned
    refused(capsys, tmp_path, "train", "--prior-components", 0, says=("--prior-components",))


# -- 5. the VampPrior ------------------------------------------------------------------------------

def test_the_vamp_prior_is_the_mixture_of_the_encoders_posteriors_at_its_pseudo_inputs():
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(4,), latent_dim=2, arch="linear", likelihood="gaussian",
                            gaussian_variance=0.3, prior="vamp", prior_components=3))
    u = model.prior.inputs().detach()
    z = torch.randn(7, 2)
    with torch.no_grad():
        qu = [Independent(Normal(*[t[k] for t in model.encoder.params(u)[:2]]), 1) for k in range(3)]
        by_hand = torch.logsumexp(torch.stack([q.log_prob(z) for q in qu]), 0) - math.log(3)
        torch.testing.assert_close(model.prior().log_prob(z), by_hand)
        # a linear-Gaussian decoder under it: p(x) = 1/K sum_k N(x | W m_k + b, W S_k W^T + c I)
        model.encoder.logvar_head.bias.fill_(math.log(2.0))  # a wide proposal (and wider components)
        (dec,) = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]
        W, b = dec.weight.double(), dec.bias.double()
        loc, scale, _ = model.encoder.params(u)
        x = torch.randn(5, 4)
        exact = torch.logsumexp(torch.stack([torch.distributions.MultivariateNormal(
            W @ loc[k].double() + b, W @ torch.diag(scale[k].double() ** 2) @ W.T + 0.3 * torch.eye(4)).log_prob(x.double())
            for k in range(3)]), 0) - math.log(3)
    iw = log_likelihood(model, x, n_importance=20000)
    torch.testing.assert_close(iw, exact, atol=0.03, rtol=0)


def test_a_vamp_prior_trains_and_is_rebuilt(tmp_path, capsys):
    from cli_helpers import ok

    run = tmp_path / "run"
    ok(capsys, "train", "--data", "digits", "--epochs", 2, "--prior", "vamp", "--prior-components", 6,
       "--latent-dim", 2, "--hidden", 32, "--run-dir", run)
    model = vaekit.load(run)
    assert model.prior.pseudo_inputs.shape == (6, 1, 8, 8)
    start = PRIORS["vamp"](2, components=6, encoder=model.encoder, data_shape=(1, 8, 8))
    assert not torch.allclose(model.prior.pseudo_inputs, start.pseudo_inputs)  # learned
    assert model.sample(4).shape == (4, 1, 8, 8)


def test_the_vamp_pseudo_inputs_stay_in_the_likelihoods_support():
    """u_k = Hardtanh(W_k + b) into [0, 1] for Bernoulli pixels, so the encoder only ever sees a
    possible image; no clamp for a Gaussian on real values. The shared bias moves all of them."""
    binary = VAE(ModelConfig(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), likelihood="bernoulli",
                             prior="vamp", prior_components=5)).prior
    real = VAE(ModelConfig(data_shape=(6,), latent_dim=2, hidden=(16,), likelihood="gaussian",
                           prior="vamp", prior_components=5)).prior
    for prior in (binary, real):
        with torch.no_grad():
            prior.pseudo_inputs.copy_(3 * torch.randn_like(prior.pseudo_inputs))
    u = binary.inputs()
    assert u.min() == 0 and u.max() == 1  # clamped, at both ends
    raw = binary.pseudo_inputs + binary.pseudo_bias
    inside = (raw > 0) & (raw < 1)
    torch.testing.assert_close(u[inside], raw[inside])
    torch.testing.assert_close(real.inputs(), real.pseudo_inputs + real.pseudo_bias)  # real values: as they are
    assert real.inputs().min() < -1 and real.inputs().max() > 2
    u.sum().backward()  # the bias is learned from every component
    assert binary.pseudo_bias.grad.abs().sum() > 0


def test_a_vamp_run_saved_before_the_pseudo_bias_loads_and_resumes_as_it_was(tmp_path, capsys, monkeypatch):
    """A run trained with free pseudo-inputs (no ``pseudo_bias``, no clamp: vaekit before
    2026-11-30) is rebuilt with them and resumes with its optimizer state."""
    from cli_helpers import ok

    from vaekit.models.priors import VampPrior
    from vaekit.runs import read_metrics

    init = VampPrior.__init__

    def old_format(self, *args, **kwargs):  # the prior as it was: the per-component inputs alone
        init(self, *args, **kwargs)
        self.pseudo_bias = None

    run = tmp_path / "run"
    monkeypatch.setattr(VampPrior, "__init__", old_format)
    ok(capsys, "train", "--data", "digits", "--epochs", 1, "--prior", "vamp", "--prior-components", 4,
       "--latent-dim", 2, "--hidden", 16, "--run-dir", run)
    monkeypatch.undo()
    ok(capsys, "train", "--resume", run, "--epochs", 2)
    model = vaekit.load(run)
    assert model.prior.pseudo_bias is None and "prior.pseudo_bias" not in model.state_dict()
    with torch.no_grad():
        model.prior.pseudo_inputs.fill_(5.0)  # outside the pixels' range: an old run's inputs were free
        torch.testing.assert_close(model.prior.inputs(), model.prior.pseudo_inputs)
    assert [row["epoch"] for row in read_metrics(run)] == ["1", "2"]  # it trained on from its checkpoint
