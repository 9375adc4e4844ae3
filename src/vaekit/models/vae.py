"""The variational autoencoder: one object owning the prior, the networks, the likelihood and
the ELBO, by composition.

Generative model (the seeds): ``p(z)`` (``N(0, I)`` by default, any registered prior),
``p(x|z)`` from the decoder ``f(z; theta)`` and the chosen likelihood, ``p(x) = int p(x|z) p(z) dz``.
Inference model: ``q(z|x) = N(loc(x), diag scale(x)^2)``.

``log p(x) - KL(q(z|x) || p(z|x)) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = ELBO``.

The ELBO, the training loss and the importance weights are computed by one private method,
:meth:`VAE._draw`, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..batch import Batch, as_batch
from ..config import ModelConfig, size_model
from ..errors import VaekitError
from .base import DecoderModel, ModelBase
from .distributions import LOG_2PI, DiagonalNormal
from .terms import ELBO
from .two_layer import TwoLayerVAE
from .likelihoods import make_likelihood
from .networks import build_networks
from .priors import build_prior
from .protocol import Headline
from .registry import register_model


class _Draws(NamedTuple):
    qz: DiagonalNormal
    eps: Tensor  # (S, B, L)
    z: Tensor  # (S, B, L), z = loc + scale * eps
    log_px_z: Tensor  # (S, B)


@register_model("cvae", needs_labels=True)
def conditional_vae(config: ModelConfig) -> "VAE":
    """A conditional VAE (Sohn et al. 2015): ``q(z|x, y)`` and ``p(x|z, y)`` with the data's
    labels; the same VAE, its networks conditioned on a one-hot label."""
    if config.n_classes < 1:
        raise VaekitError("--model cvae needs labelled data: a built-in dataset, a folder of images with one "
                          "subfolder per class, or a table with --label-column")
    return VAE(config)


def _scale_by(factor: Tensor):
    """A gradient hook multiplying the gradient by ``factor``."""
    return lambda grad: grad * factor


@register_model("vae")
def vae(config: ModelConfig) -> ModelBase:
    """The VAE of ``config``: one stochastic layer, or two with ``latent_dims`` (z1, z2)."""
    if config.latent_dims:
        return TwoLayerVAE(config)
    return VAE(config)


class VAE(DecoderModel):
    """A variational autoencoder (Kingma and Welling, 2013, https://arxiv.org/abs/1312.6114).

    Parameters
    ----------
    config : ModelConfig
        Networks, latent size, prior and likelihood. Saved with the weights; see :func:`vaekit.load`.

    Examples
    --------
    >>> import torch
    >>> from vaekit import VAE, ModelConfig
    >>> model = VAE(ModelConfig(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,), likelihood="bernoulli"))
    >>> x = torch.rand(5, 1, 8, 8)
    >>> model.elbo({"x": x}).elbo.shape
    torch.Size([5])
    """

    headline = Headline("elbo", "ELBO", bounds_log_likelihood=True)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config = size_model(config)[0]  # unset sizes chosen from data_shape
        # conditioned on labels (a conditional VAE, --model cvae) when the config counts classes
        self.conditions = ("y",) if config.n_classes else ()
        self.encoder, self.decoder = build_networks(config)
        self.likelihood = make_likelihood(config.likelihood, config.data_shape,
                                          gaussian_variance=config.gaussian_variance)
        self.prior = build_prior(config.prior, config.latent_dim, components=config.prior_components,
                                 encoder=self.encoder, data_shape=config.data_shape,
                                 support=self.likelihood.support)
        if not self.prior.analytic_kl:  # say so wherever the figure is shown
            self.headline = dataclasses.replace(self.headline, kl_estimated=True)

    # -- the three distributions: model.prior() is p(z) ----------------------------------------
    def encode(self, batch: Batch | Tensor) -> DiagonalNormal:
        """``qz = q(z|x)`` (``q(z|x, y)`` for a conditional model), batch shape ``(B,)``, event
        shape ``(latent_dim,)``."""
        batch = as_batch(batch)
        return self.encoder(batch["x"], self._one_hot(batch))

    def decode(self, z: Tensor, batch: Batch | None = None) -> Distribution:
        """``px_z = p(x|z)`` (``p(x|z, y)`` for a conditional model); ``z`` may have leading
        axes, e.g. ``(K, B, latent_dim)``."""
        return self.likelihood(self.decoder(z, self._one_hot(batch)))

    def _one_hot(self, batch: Batch | None) -> Tensor | None:
        """The labels of a conditional model's batch as one-hot rows ``(B, n_classes)``."""
        if not self.conditions:
            return None
        y = None if batch is None else batch.get("y")
        if y is None:
            raise VaekitError(f"a conditional model ('{self.config.model}') needs the labels of its data, "
                              "and these data have none")
        C = self.config.n_classes
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= C):
            bad = int(y.max()) if int(y.max()) >= C else int(y.min())
            raise VaekitError(f"label {bad}: outside the {C} training classes 0-{C - 1}")
        return torch.nn.functional.one_hot(y.long(), C).to(self.encoder.loc_head.weight.dtype)

    # -- the objective ---------------------------------------------------------------------------
    def _draw(self, batch: Batch, n_samples: int, noise: Tensor | None) -> _Draws:
        """Encode, draw ``z = loc + scale * eps`` (reparameterized: gradients reach both encoder
        heads), decode, and score ``x``: the one path of the ELBO, the loss and the weights."""
        qz = self.encode(batch)
        if noise is None:
            noise = torch.randn((n_samples, *qz.loc.shape), device=qz.loc.device, dtype=qz.loc.dtype)
        z = qz.loc + qz.scale * noise  # (S, B, L)
        return _Draws(qz, noise, z, self.decode(z, batch).log_prob(batch["x"]))

    def _terms(self, batch: Batch | Tensor, n_samples: int, noise: Tensor | None,
               beta: float, free_bits: float, objective: str = "elbo") -> tuple[Tensor, ELBO]:
        batch = as_batch(batch)
        d = self._draw(batch, n_samples, noise)
        reconstruction = d.log_px_z.mean(0)  # (B,)
        if free_bits > 0:
            kl_units = self.prior.kl_per_unit(d.qz)  # (B, L)
            if kl_units is None:
                raise VaekitError(f"--free-bits needs a prior with a closed-form KL per unit; "
                                  f"the {self.config.prior!r} prior has none")
            kl = kl_units.sum(-1)
            # a unit whose batch-mean KL is below the floor costs the floor, with no gradient
            active = kl_units.mean(0, keepdim=True) > free_bits
            penalty = torch.where(active, kl_units, torch.full_like(kl_units, free_bits)).sum(-1)
        else:
            kl = penalty = self.prior.kl(d.qz, d.z)
        if objective == "elbo":
            loss = beta * penalty - reconstruction
        else:
            loss = -self._importance_weighted(d, objective)
        return loss, ELBO(reconstruction - kl, reconstruction, kl)

    def _importance_weighted(self, d: _Draws, objective: str) -> Tensor:
        """The importance-weighted bound ``log 1/K sum_k w_k`` (Burda et al. 2015, eq. 8) per
        example, ``(B,)``, from the ELBO's own draws; with ``dreg`` its encoder gradient is the
        doubly reparameterized one (Tucker et al. 2019, eq. 5), its value the same.

        DReG: ``log q`` with its parameters held fixed (the score-function term, zero in
        expectation, is dropped), and the gradient reaching ``z`` scaled by the normalized
        weight, so that the encoder sees ``sum_k w_k^2 d log w_k / dz dz/dphi`` while the
        decoder still sees the IWAE gradient ``sum_k w_k d log w_k / dtheta``.
        """
        K = d.z.shape[0]
        log_p = d.log_px_z + self.prior.log_prob(d.z)  # (K, B)
        if objective == "iwae":
            log_w = log_p - d.qz.log_prob_of_noise(d.eps)
            return torch.logsumexp(log_w, 0) - math.log(K)
        if objective != "dreg":
            raise VaekitError(f"--objective {objective}: choose one of elbo, iwae, dreg")
        loc, scale, logvar = d.qz.loc.detach(), d.qz.scale.detach(), d.qz.logvar.detach()
        log_w = log_p - (-0.5 * (((d.z - loc) / scale).square() + logvar + LOG_2PI).sum(-1))
        bound = torch.logsumexp(log_w, 0) - math.log(K)
        if not d.z.requires_grad:
            return bound
        w = torch.softmax(log_w.detach(), 0)  # (K, B): the normalized weights
        d.z.register_hook(_scale_by(w.unsqueeze(-1)))  # the gradient reaching z, times w_k
        surrogate = (w * log_w).sum(0)  # its gradient is DReG's; added with value zero
        return bound.detach() + surrogate - surrogate.detach()

    def elbo(self, batch: Batch | Tensor, n_samples: int = 1, *, noise: Tensor | None = None) -> ELBO:
        """The evidence lower bound per example, with its two parts.

        ``E_q[log p(x|z)]`` is estimated with ``n_samples`` reparameterized draws; the KL is
        the prior's (exact for N(0, I)). ``noise``, ``(n_samples, B, latent_dim)``, gives
        ``eps`` explicitly.
        """
        return self._terms(batch, n_samples, noise, 1.0, 0.0)[1]

    def training_loss(self, batch: Batch | Tensor, *, beta: float = 1.0, free_bits: float = 0.0,
                      noise: Tensor | None = None, objective: str = "elbo", n_samples: int = 1) -> tuple[Tensor, ELBO]:
        """Per-example training loss ``(B,)`` and the true ELBO terms it was computed from.

        ``objective="elbo"``: ``loss = -(E_q[log p(x|z)] - beta * KL')``. With ``beta = 1`` and
        no free bits it is the negative ELBO. ``beta`` weighs the KL (beta-VAE, Higgins et al.
        2017; a KL warm-up ramps it). Free bits (Kingma et al. 2016, eq. 15): each latent unit's
        KL, averaged over the batch, costs at least ``free_bits`` nats, so the encoder is not
        pushed to collapse a unit whose KL is already small. ``objective="iwae"`` or ``"dreg"``:
        the negative importance-weighted bound with ``n_samples`` draws (beta and free bits do
        not apply). Whatever the objective, the terms returned are the true ELBO's under the
        same draws. ``noise``: ``eps``, examples first, as :meth:`draw_noise` gives it:
        ``(B, latent_dim)`` for one draw, ``(B, n_samples, latent_dim)`` for several (the
        training loop draws it from the run's generator, so that runs resume and shard exactly).
        """
        if noise is not None:
            noise = noise.unsqueeze(0) if noise.dim() == 2 else noise.movedim(1, 0)  # (S, B, L)
        return self._terms(batch, n_samples, noise, beta, free_bits, objective)

    def log_weights(self, batch: Batch | Tensor, k: int) -> Tensor:
        """``(k, B)``: ``log p(x|z_k) + log p(z_k) - log q(z_k|x)``, ``z_k ~ q(z|x)``."""
        batch = as_batch(batch)
        d = self._draw(batch, k, None)
        return d.log_px_z + self.prior.log_prob(d.z) - d.qz.log_prob_of_noise(d.eps)

    def draw_noise(self, n: int, generator: torch.Generator, n_samples: int = 1) -> Tensor:
        """``eps ~ N(0, I)`` for ``n`` examples, on the CPU: ``(n, latent_dim)``, or
        ``(n, n_samples, latent_dim)`` for several draws each."""
        if n_samples == 1:
            return torch.randn(n, self.latent_dim, generator=generator)
        return torch.randn(n, n_samples, self.latent_dim, generator=generator)

    def loss(self, batch: Batch | Tensor) -> Tensor:
        """``-mean ELBO`` over the batch: what training minimizes."""
        return -self.elbo(batch).elbo.mean()
