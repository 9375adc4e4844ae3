"""The variational autoencoder: one object owning the prior, the networks, the likelihood and
the ELBO, by composition.

Generative model (the seeds): ``p(z) = N(0, I)``, ``p(x|z)`` from the decoder ``f(z; theta)``
and the chosen likelihood, ``p(x) = int p(x|z) p(z) dz``.
Inference model: ``q(z|x) = N(loc(x), diag scale(x)^2)``.

``log p(x) - KL(q(z|x) || p(z|x)) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = ELBO``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from ..config import ModelConfig
from .distributions import kl_diag_normal_standard, standard_normal
from .likelihoods import make_likelihood
from .networks import build_networks


MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {}


def register_model(name: str):
    """Class decorator adding a model to ``MODELS`` (``ModelConfig.model`` names it)."""

    def wrap(cls):
        MODELS[name] = cls
        return cls

    return wrap


def build_model(config: ModelConfig) -> nn.Module:
    """The model that ``config.model`` names, built from ``config``."""
    from . import baselines  # noqa: F401  (registers ae and pca)

    if config.model not in MODELS:
        from ..errors import VaekitError

        raise VaekitError(f"unknown model {config.model!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[config.model](config)


class LatentVariableModel(nn.Module):
    """What every model offers once trained, written once in terms of ``prior``, ``encode``
    and ``decode``: generation, reconstruction and interpolation."""

    config: ModelConfig

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    def check_data(self, x: Tensor, what: str) -> None:
        """Refuse data the model's likelihood gives no density to, in one line naming ``what``."""
        likelihood = getattr(self, "likelihood", None)
        if likelihood is not None:
            likelihood.check_data(x, what)

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> None:
        """Start the decoder near the data's marginal: the output bias is set so that ``p(x|z)``
        has the mean of ``x`` per dimension when the rest of the layer outputs zero, as Burda et
        al. (2015) initialize the output layer to the marginal log-odds. It saves the first
        epochs the work of learning the average image."""
        from ..data.prepare import column_moments

        if hasattr(self, "decoder") and hasattr(self, "likelihood"):
            mean = column_moments(x)[0].to(self.device, torch.float32)  # streamed for lazy arrays
            self.decoder.set_output_bias(self.likelihood.output_for_mean(mean))

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Means of ``p(x|z)`` for ``n`` draws ``z ~ p(z)``: generation from the prior."""
        pz = self.prior()
        eps = torch.randn(n, self.latent_dim, generator=generator, device=self.device, dtype=pz.mean.dtype)
        return self.decode(pz.mean + pz.stddev * eps).mean

    @torch.inference_mode()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Means of ``p(x|z)`` at ``z = E_q[z]``."""
        return self.decode(self.encode(x).mean).mean

    @torch.inference_mode()
    def interpolate(self, x0: Tensor, x1: Tensor, steps: int = 8) -> Tensor:
        """Decoded means along the straight line between the latent means of ``x0`` and ``x1``.

        Returns ``(steps, *data_shape)``; a continuous latent space makes it a smooth path.
        """
        z = self.encode(torch.stack([x0, x1])).mean  # (2, L)
        t = torch.linspace(0, 1, steps, device=z.device, dtype=z.dtype).unsqueeze(1)
        return self.decode((1 - t) * z[0] + t * z[1]).mean


class ELBO(NamedTuple):
    """Per-example terms, in nats, each shape ``(B,)``: ``elbo = reconstruction - kl``."""

    elbo: Tensor
    reconstruction: Tensor  # E_q[log p(x|z)], a log-likelihood (higher is better)
    kl: Tensor  # KL(q(z|x) || p(z)), closed form


@register_model("vae")
class VAE(LatentVariableModel):
    """A variational autoencoder (Kingma and Welling, 2013, https://arxiv.org/abs/1312.6114).

    Parameters
    ----------
    config : ModelConfig
        Networks, latent size and likelihood. Saved with the weights; see :func:`vaekit.load`.

    Examples
    --------
    >>> import torch
    >>> from vaekit import VAE, ModelConfig
    >>> model = VAE(ModelConfig(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,)))
    >>> x = torch.rand(5, 1, 8, 8)
    >>> model.elbo(x).elbo.shape
    torch.Size([5])
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = build_networks(config)
        self.likelihood = make_likelihood(
            config.likelihood, config.data_shape, gaussian_variance=config.gaussian_variance
        )
        # a buffer so that the prior follows the model's device and dtype
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    # -- the three distributions -------------------------------------------------------------
    def prior(self) -> Independent:
        """``pz = N(0, I)``."""
        return standard_normal(self.latent_dim, device=self._zero.device, dtype=self._zero.dtype)

    def encode(self, x: Tensor) -> Independent:
        """``qz = q(z|x)``, batch shape ``(B,)``, event shape ``(latent_dim,)``."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Distribution:
        """``px_z = p(x|z)``; ``z`` may have leading axes, e.g. ``(K, B, latent_dim)``."""
        return self.likelihood(self.decoder(z))

    # -- the objective -----------------------------------------------------------------------
    def elbo(self, x: Tensor, n_samples: int = 1, *, noise: Tensor | None = None) -> ELBO:
        """The evidence lower bound per example, with its two parts.

        ``E_q[log p(x|z)]`` is estimated with ``n_samples`` reparameterized draws
        ``z = loc + scale * eps`` (gradients reach both encoder heads); the KL is exact.
        ``noise``, shape ``(n_samples, B, latent_dim)``, gives ``eps`` explicitly (the training
        loop draws it from the run's generator so that runs resume and shard exactly).
        """
        qz = self.encode(x)
        loc, scale = qz.base_dist.loc, qz.base_dist.scale
        z = qz.rsample((n_samples,)) if noise is None else loc + scale * noise  # (S, B, L)
        reconstruction = self.decode(z).log_prob(x).mean(0)  # (B,)
        kl = kl_diag_normal_standard(loc, scale)
        return ELBO(reconstruction - kl, reconstruction, kl)

    def objective(self, x: Tensor) -> ELBO:
        """What is reported, per example: the ELBO (first field) and its parts."""
        return self.elbo(x)

    def draw_noise(self, n: int, generator: torch.Generator) -> Tensor:
        """``eps ~ N(0, I)`` for ``n`` examples, ``(1, n, latent_dim)``, on the CPU."""
        return torch.randn(1, n, self.latent_dim, generator=generator)

    def training_loss(self, x: Tensor, *, beta: float = 1.0, free_bits: float = 0.0,
                      noise: Tensor | None = None) -> tuple[Tensor, ELBO]:
        """Per-example training loss ``(B,)`` and the true ELBO terms it was computed from.

        ``loss = -(E_q[log p(x|z)] - beta * KL')``. With ``beta = 1`` and no free bits it is
        the negative ELBO. ``beta`` weighs the KL (beta-VAE, Higgins et al. 2017; a KL warm-up
        ramps it). Free bits (Kingma et al. 2016, eq. 15): each latent dimension's KL, averaged
        over the batch, costs at least ``free_bits`` nats, so the encoder is not pushed to
        collapse a dimension whose KL is already small. Either changes the objective, not
        what is reported: the terms returned are always the true ELBO's.
        """
        qz = self.encode(x)
        loc, scale = qz.base_dist.loc, qz.base_dist.scale
        z = qz.rsample() if noise is None else loc + scale * noise[0]  # (B, L)
        reconstruction = self.decode(z).log_prob(x)
        kl_dims = 0.5 * (scale.square() + loc.square() - 1.0 - 2 * scale.log())  # (B, L)
        kl = kl_dims.sum(-1)
        penalty = kl
        if free_bits > 0:
            # a dimension whose batch-mean KL is below the floor costs the floor, with no gradient
            active = kl_dims.mean(0, keepdim=True) > free_bits
            penalty = torch.where(active, kl_dims, torch.full_like(kl_dims, free_bits)).sum(-1)
        loss = -(reconstruction - beta * penalty)
        return loss, ELBO(reconstruction - kl, reconstruction, kl)

    def forward(self, x: Tensor, **kwargs) -> tuple[Tensor, ELBO]:
        """:meth:`training_loss`, so that DistributedDataParallel sees the forward pass."""
        return self.training_loss(x, **kwargs)

    def loss(self, x: Tensor) -> Tensor:
        """``-mean ELBO`` over the batch: what training minimizes."""
        return -self.elbo(x).elbo.mean()
