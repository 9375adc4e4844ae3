"""A VAE with two stochastic layers (Burda et al. 2015, section 5; ``--latent-dims 100 50``).

Generative model: ``p(z2) p(z1|z2) p(x|z1)``; inference model: ``q(z1|x) q(z2|z1)``, each
conditional a diagonal Gaussian from an MLP (``hidden_top``) between the layers, the data side
any registered architecture. Everything the protocol asks is written from one draw of both
layers (:meth:`TwoLayerVAE._draw`):

``log w = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1)``,

the ELBO is its mean over draws, split as ``reconstruction = E log p(x|z1)`` and
``kl = E[log q(z1, z2|x) - log p(z1, z2)]`` (estimated by sampling: no closed form), and the
importance-weighted bound its log-mean-exp.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..batch import Batch, as_batch
from ..config import ModelConfig, size_model
from ..errors import VaekitError
from .base import DecoderModel
from .distributions import DiagonalNormal, gaussian_noise
from .likelihoods import make_likelihood
from .networks import GaussianEncoder, build_networks, mlp_layers
from .priors import build_prior
from .protocol import Headline
from .terms import ELBO


class _Draws(NamedTuple):
    qz1: DiagonalNormal
    z1: Tensor  # (S, B, L1)
    log_w: Tensor  # (S, B)
    log_px_z1: Tensor  # (S, B)


def _gaussian_layer(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str) -> GaussianEncoder:
    """``N(loc(h), diag scale(h)^2)`` of ``out_dim`` units from ``in_dim`` inputs through an MLP."""
    trunk = nn.Sequential(*mlp_layers([in_dim, *hidden], activation))
    return GaussianEncoder(trunk, hidden[-1] if hidden else in_dim, out_dim)


class TwoLayerVAE(DecoderModel):
    """Two stochastic layers, ``z1`` (``latent_dims[0]``) near the data and ``z2`` on top.

    ``encode`` gives ``q(z1|x)`` (the embedding, its active units), ``prior()`` is ``p(z2)``,
    ``decode(z1)`` is ``p(x|z1)``.
    """

    headline = Headline("elbo", "ELBO", bounds_log_likelihood=True, kl_estimated=True)

    def __init__(self, config: ModelConfig):
        super().__init__()
        if len(config.latent_dims) != 2:
            raise VaekitError(f"--latent-dims {' '.join(map(str, config.latent_dims))}: give two sizes, z1 then z2")
        if config.n_classes:
            raise VaekitError("two stochastic layers are not conditional yet: use --model vae with --latent-dims")
        if config.prior == "vamp":
            raise VaekitError("--prior vamp with --latent-dims: the VampPrior is for one stochastic layer; "
                              "use --prior standard or mog")
        self.config = config = size_model(config)[0]  # unset sizes chosen from data_shape
        L1, L2 = config.latent_dims
        self.encoder, self.decoder = build_networks(config)  # q(z1|x), p(x|z1): config.latent_dim is L1
        self.encoder_top = _gaussian_layer(L1, config.hidden_top, L2, config.activation)  # q(z2|z1)
        self.decoder_top = _gaussian_layer(L2, tuple(reversed(config.hidden_top)), L1, config.activation)  # p(z1|z2)
        self.likelihood = make_likelihood(config.likelihood, config.data_shape,
                                          gaussian_variance=config.gaussian_variance)
        self.prior = build_prior(config.prior, L2, components=config.prior_components)

    def encode(self, batch: Batch | Tensor) -> DiagonalNormal:
        """``q(z1|x)``."""
        return self.encoder(as_batch(batch)["x"])

    def _draw(self, batch: Batch, n_samples: int, noise: Tensor | None) -> _Draws:
        """Draw both layers, ``(S, B, ...)``, and weigh them. ``noise``: ``(S, B, L1 + L2)``."""
        x = batch["x"]
        L1, L2 = self.config.latent_dims
        qz1 = self.encode(batch)
        if noise is None:
            noise = torch.randn((n_samples, len(x), L1 + L2), device=x.device, dtype=qz1.loc.dtype)
        eps1, eps2 = noise[..., :L1], noise[..., L1:]
        z1 = qz1.loc + qz1.scale * eps1  # (S, B, L1)
        qz2 = self.encoder_top(z1)
        z2 = qz2.loc + qz2.scale * eps2  # (S, B, L2)
        log_px_z1 = self.decode(z1).log_prob(x)
        log_p = log_px_z1 + self.decoder_top(z2).log_prob(z1) + self.prior.log_prob(z2)
        log_q = qz1.log_prob_of_noise(eps1) + qz2.log_prob_of_noise(eps2)
        return _Draws(qz1, z1, log_p - log_q, log_px_z1)

    def _terms(self, batch: Batch | Tensor, n_samples: int, noise: Tensor | None, beta: float,
               objective: str) -> tuple[Tensor, ELBO]:
        d = self._draw(as_batch(batch), n_samples, noise)
        reconstruction = d.log_px_z1.mean(0)
        kl = (d.log_px_z1 - d.log_w).mean(0)  # E[log q(z1, z2|x) - log p(z1, z2)], sampled
        if objective == "elbo":
            loss = beta * kl - reconstruction
        elif objective == "iwae":
            loss = -(torch.logsumexp(d.log_w, 0) - math.log(d.log_w.shape[0]))
        else:
            raise VaekitError(f"--objective {objective}: two stochastic layers train on elbo or iwae")
        return loss, ELBO(reconstruction - kl, reconstruction, kl)

    def elbo(self, batch: Batch | Tensor, n_samples: int = 1, *, noise: Tensor | None = None) -> ELBO:
        return self._terms(batch, n_samples, noise, 1.0, "elbo")[1]

    def training_loss(self, batch: Batch | Tensor, *, beta: float = 1.0, free_bits: float = 0.0,
                      noise: Tensor | None = None, objective: str = "elbo", n_samples: int = 1) -> tuple[Tensor, ELBO]:
        """As :meth:`vaekit.VAE.training_loss`; ``noise`` is ``(B, L1 + L2)`` or
        ``(B, n_samples, L1 + L2)``. Free bits need a per-unit KL in closed form: refused."""
        if free_bits > 0:
            raise VaekitError("--free-bits needs a closed-form KL per unit; two stochastic layers have none")
        if noise is not None:
            noise = noise.unsqueeze(0) if noise.dim() == 2 else noise.movedim(1, 0)
        return self._terms(batch, n_samples, noise, beta, objective)

    def log_weights(self, batch: Batch | Tensor, k: int) -> Tensor:
        return self._draw(as_batch(batch), k, None).log_w

    def draw_noise(self, n: int, generator: torch.Generator, n_samples: int = 1) -> Tensor:
        width = sum(self.config.latent_dims)
        shape = (n, width) if n_samples == 1 else (n, n_samples, width)
        return torch.randn(*shape, generator=generator)

    @torch.inference_mode()
    def sample_latent(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> Tensor:
        """``z1 ~ p(z1|z2)`` for ``z2 ~ p(z2)``, the standard deviations of both layers times
        ``temperature``."""
        pz1 = self.decoder_top(self.prior.sample(n, generator, temperature=temperature))
        return pz1.loc + temperature * pz1.scale * gaussian_noise(pz1.loc.shape, generator, like=pz1.loc)
