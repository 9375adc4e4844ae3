"""Priors p(z): small modules with ``log_prob``, ``sample`` and, when they can, a closed-form KL.

A model owns one prior (``model.prior``); calling it gives the ``torch.distributions`` object
``pz`` (``model.prior()``), so the prior may have learned parameters (a mixture, a VampPrior)
and still follows the model's device and dtype. The ELBO, the training loss and ``sample`` go
through the prior, never through a hard-coded N(0, I):

- :meth:`Prior.kl` is ``KL(q(z|x) || p(z))`` per example. The default estimates it by sampling
  at the draws the ELBO already made, ``mean_s [log q(z_s|x) - log p(z_s)]`` (unbiased; what a
  mixture or a VampPrior needs). :class:`StandardNormal` overrides it with the closed form.
- :meth:`Prior.kl_per_unit` is the KL unit by unit, for priors that factorize over the latent
  units and have it in closed form (free bits need it); ``None`` otherwise.
- :meth:`Prior.sample` draws ``(n, latent_dim)``, from a ``torch.Generator`` when given.

Register a new prior with :func:`register_prior`; ``ModelConfig.prior`` names it.

Example
-------
>>> import torch
>>> from torch.distributions import Normal, Independent
>>> @register_prior("wide")  # doctest: +SKIP
... class Wide(Prior):
...     def forward(self):
...         zeros = self.zeros()
...         return Independent(Normal(zeros, 3 + zeros), 1)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from ..errors import VaekitError
from .distributions import (LOG_2PI, DiagonalNormal, gaussian_noise, kl_diag_normal_standard_per_unit, sample_with,
                            standard_normal)

PRIORS: dict[str, Callable[[int], "Prior"]] = {}


def register_prior(name: str):
    """Class decorator adding a prior ``cls(latent_dim)`` to :data:`PRIORS` under ``name``."""

    def wrap(cls):
        PRIORS[name] = cls
        cls.name = name
        return cls

    return wrap


def build_prior(name: str, latent_dim: int, *, components: int = 1, **context) -> "Prior":
    """The prior registered as ``name``, over ``latent_dim`` units (``components``: for mixtures;
    ``context``: what a prior may need of its model, ``encoder`` and ``data_shape``)."""
    if name not in PRIORS:
        raise VaekitError(f"unknown prior {name!r}; choose one of: {', '.join(sorted(PRIORS))}")
    if components < 1:
        raise VaekitError(f"--prior-components {components}: must be at least 1")
    return PRIORS[name](latent_dim, components=components, **context)


class Prior(nn.Module):
    """Base class: ``forward()`` returns ``p(z)``, batch shape ``()``, event shape ``(latent_dim,)``.

    Subclasses implement ``forward``; the rest has generic defaults written against it.
    """

    name: str = ""

    def __init__(self, latent_dim: int, **options):
        super().__init__()
        self.latent_dim = latent_dim
        # a buffer, so that the prior follows the model's device and dtype
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def zeros(self) -> Tensor:
        """``(latent_dim,)`` zeros on the prior's device, in its dtype."""
        return self._zero.expand(self.latent_dim)

    def forward(self) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """``log p(z)``, summed over the latent units: ``(..., latent_dim) -> (...)``."""
        return self().log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> Tensor:
        """``n`` draws ``z ~ p(z)``, ``(n, latent_dim)``, fixed by ``generator`` when one is given
        (the caller's random state is left as it was).

        ``temperature`` T scales the standard deviation of a Gaussian prior, or of each component
        of a mixture of Gaussians (the component is drawn as usual): T = 0 gives the means, T = 1
        the prior itself. Another prior has no temperature but 1, and refuses the rest.
        """
        pz = self()
        if temperature == 1:
            return sample_with(pz, (n,), generator=generator, device=self._zero.device)
        mixture = isinstance(pz, MixtureSameFamily)
        gaussian = pz.component_distribution if mixture else pz
        base = gaussian.base_dist if isinstance(gaussian, Independent) else gaussian
        if not isinstance(base, Normal):
            raise VaekitError(f"temperature {temperature:g}: the {self.name or type(self).__name__!r} prior is "
                              "neither Gaussian nor a mixture of Gaussians, so its only temperature is 1")
        loc, scale = base.loc, base.scale
        if mixture:  # (K, L): the draws' components, then their means and deviations
            k = sample_with(pz.mixture_distribution, (n,), generator=generator, device=self._zero.device)
            loc, scale = loc[k], scale[k]
        return loc + temperature * scale * gaussian_noise((n, self.latent_dim), generator, like=loc)

    def kl(self, qz: DiagonalNormal, z: Tensor) -> Tensor:
        """``KL(q(z|x) || p(z))`` per example, ``(B,)``.

        Estimated by sampling at ``z`` (``(S, B, latent_dim)``, draws of ``qz``):
        ``mean_s [log q(z_s|x) - log p(z_s)]``. Priors with a closed form override this.
        """
        return (qz.log_prob(z) - self.log_prob(z)).mean(0)

    def kl_per_unit(self, qz: DiagonalNormal) -> Tensor | None:
        """``(B, latent_dim)`` KL terms per unit where the prior factorizes and has a closed
        form (free bits need them); ``None`` otherwise."""
        return None

    @property
    def analytic_kl(self) -> bool:
        """Whether :meth:`kl` is exact (closed form) rather than estimated by sampling."""
        return type(self).kl is not Prior.kl


@register_prior("standard")
class StandardNormal(Prior):
    """``p(z) = N(0, I)``, the seeds' prior, with its closed-form KL (Kingma and Welling 2013,
    appendix B) computed from the encoder's log-variance."""

    def forward(self) -> DiagonalNormal:
        return standard_normal(self.latent_dim, device=self._zero.device, dtype=self._zero.dtype)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.square() + LOG_2PI).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> Tensor:
        """``n`` draws of ``N(0, T^2 I)`` at temperature ``T``."""
        z = gaussian_noise((n, self.latent_dim), generator, like=self._zero)
        return z if temperature == 1 else temperature * z

    def kl(self, qz: DiagonalNormal, z: Tensor | None = None) -> Tensor:
        return self.kl_per_unit(qz).sum(-1)

    def kl_per_unit(self, qz: DiagonalNormal) -> Tensor:
        if isinstance(qz, DiagonalNormal):
            return kl_diag_normal_standard_per_unit(qz.loc, qz.scale, logvar=qz.logvar)
        return kl_diag_normal_standard_per_unit(qz.mean, qz.stddev)


@register_prior("mog")
class MixtureOfGaussians(Prior):
    """A learned mixture of ``components`` diagonal Gaussians,
    ``p(z) = sum_k pi_k N(z | mu_k, diag sigma_k^2)`` (``torch.distributions.MixtureSameFamily``).

    It has no closed-form KL with ``q(z|x)``: the ELBO's KL is estimated by sampling. The
    means start spread as draws of N(0, I), the scales at 1, the weights equal.
    """

    def __init__(self, latent_dim: int, *, components: int = 10, **options):
        super().__init__(latent_dim)
        g = torch.Generator().manual_seed(0)  # a fixed start: the run's seed sets everything else
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim, generator=g))
        self.log_scale = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self) -> MixtureSameFamily:
        components = Independent(Normal(self.loc, self.log_scale.exp(), validate_args=False), 1)
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False), components,
                                 validate_args=False)


@register_prior("vamp")
class VampPrior(Prior):
    """The VampPrior (Tomczak and Welling 2018, https://arxiv.org/abs/1705.07120): the mixture of
    the encoder's posteriors at ``components`` learned pseudo-inputs,
    ``p(z) = 1/K sum_k q(z | u_k)``. Its KL is estimated by sampling.

    The encoder is the model's own (shared, not copied: it is held outside this module's
    parameters, so the state dict stores it once, under the model).

    The pseudo-inputs are parameterized as in the paper's code (and pythae's):
    ``u_k = clamp(W_k + b)``, a per-component part ``pseudo_inputs`` (``W``) plus a shared
    ``pseudo_bias`` (``b``), both started as ``nn.Linear(K, D)`` starts its weights (uniform
    within ``1/sqrt(K)``, seeded, so near zero). ``clamp`` is Hardtanh into the likelihood's
    ``support`` when it has one (pixels in [0, 1] for ``bernoulli``), so a pseudo-input stays a
    possible input; the identity otherwise. The shared bias moves all of them together.

    Runs saved before the bias existed (state dicts without ``pseudo_bias``) load as they were
    trained: free pseudo-inputs, no bias, no clamp (:meth:`take_saved_format`).
    """

    def __init__(self, latent_dim: int, *, components: int = 10, encoder: nn.Module | None = None,
                 data_shape: tuple[int, ...] = (), support: tuple[float, float] | None = None, **options: int):
        super().__init__(latent_dim)
        if encoder is None or not data_shape:
            raise VaekitError("the vamp prior needs the model's encoder and data shape (build it through a VAE)")
        g = torch.Generator().manual_seed(0)  # a fixed start: the run's seed sets everything else
        bound = components ** -0.5
        self.pseudo_inputs = nn.Parameter((2 * torch.rand(components, *data_shape, generator=g) - 1) * bound)
        self.pseudo_bias: nn.Parameter | None = nn.Parameter((2 * torch.rand(*data_shape, generator=g) - 1) * bound)
        self.support = support
        self._encoder = (encoder,)  # a tuple: not registered as a submodule

    def inputs(self) -> Tensor:
        """The pseudo-inputs ``u_k`` as the encoder sees them, ``(K, *data_shape)``."""
        if self.pseudo_bias is None:  # a run saved before the bias: free pseudo-inputs
            return self.pseudo_inputs
        u = self.pseudo_inputs + self.pseudo_bias
        return u if self.support is None else torch.nn.functional.hardtanh(u, *self.support)

    def forward(self) -> MixtureSameFamily:
        u = self.inputs()
        qu = self._encoder[0](u)  # (K,) posteriors over (latent_dim,)
        mixture = Categorical(logits=torch.zeros(len(u), device=u.device), validate_args=False)
        return MixtureSameFamily(mixture, Independent(Normal(qu.mean, qu.stddev, validate_args=False), 1),
                                 validate_args=False)

    def take_saved_format(self, state: dict[str, Tensor], prefix: str = "") -> None:
        """Become the format ``state`` was saved in: without ``pseudo_bias`` (vaekit before
        2026-11-30), the free pseudo-inputs of then. Called before loading or resuming."""
        if prefix + "pseudo_inputs" in state and prefix + "pseudo_bias" not in state:
            self.pseudo_bias = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.take_saved_format(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
