"""What every model offers once trained, written once against the protocol's ``prior``,
``encode`` and ``decode``: generation, reconstruction, interpolation."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..batch import Batch, as_batch
from ..config import ModelConfig
from ..errors import VaekitError
from .distributions import check_temperature, sample_with
from .protocol import Headline


class ModelBase(nn.Module):
    """Shared behaviour of vaekit's models; a new model may inherit it or implement
    :class:`vaekit.models.Model` from scratch."""

    config: ModelConfig
    headline: ClassVar[Headline]
    trains_by_gradient: ClassVar[bool] = True
    #: the conditions ``sample`` accepts (a conditional model: ``("y",)``)
    conditions: ClassVar[tuple[str, ...]] = ()

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(itertools.chain(self.parameters(), self.buffers())).device

    def check_values(self, lo: float, hi: float, what: str) -> None:
        """Refuse data whose values lie outside what the likelihood gives a density to."""

    def init_output_bias(self, mean: Tensor) -> None:
        """Start the generative model at the data's mean (``mean``: per dimension); no-op here."""

    def forward(self, batch: Batch | Tensor, **kwargs: Any):
        """:meth:`training_loss`, so that DistributedDataParallel sees the forward pass."""
        return self.training_loss(batch, **kwargs)

    def draw_noise(self, n: int, generator: torch.Generator) -> Tensor | None:
        """No noise: a deterministic model."""
        return None

    @torch.inference_mode()
    def sample(self, n: int, *, generator: torch.Generator | None = None, draw: bool = False,
               temperature: float = 1.0, **conditions: Any) -> Tensor:
        """Generation from the prior: ``n`` draws ``z ~ p(z)`` decoded to the means of ``p(x|z)``,
        or with ``draw`` to draws ``x ~ p(x|z)`` (0/1 pixels from a Bernoulli, noisy values from a
        Gaussian), all fixed by ``generator`` when one is given.

        ``temperature`` T scales the prior's standard deviation (:meth:`sample_latent`):
        ``z ~ N(0, T^2 I)`` for the standard prior; 0 decodes the prior's mean. ``conditions``
        (e.g. ``y=3`` for a conditional model) fill the batch ``decode`` sees; a model refuses
        those it does not take.
        """
        check_temperature(temperature)
        unknown = sorted(set(conditions) - set(self.conditions))
        if unknown:
            raise VaekitError(f"a {self.config.model!r} model takes no condition {unknown[0]!r}"
                              + (f"; it takes: {', '.join(self.conditions)}" if self.conditions else ""))
        missing = [k for k in self.conditions if k not in conditions]
        if missing:
            raise VaekitError(f"a conditional model ('{self.config.model}') samples given {', '.join(missing)}: "
                              "a class (vaekit sample --label)")
        z = self.sample_latent(n, generator, temperature=temperature)
        batch = {k: torch.as_tensor(v, device=z.device).expand(n) for k, v in conditions.items()}
        px_z = self.decode(z, batch)
        return sample_with(px_z, generator=generator, device=z.device) if draw else px_z.mean

    @torch.inference_mode()
    def sample_latent(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> Tensor:
        """The ``n`` latents :meth:`sample` decodes: ``z ~ p(z)``, its standard deviation times
        ``temperature`` (see :meth:`vaekit.models.Prior.sample`)."""
        return self.prior.sample(n, generator, temperature=temperature)

    @torch.inference_mode()
    def reconstruct(self, batch: Batch | Tensor) -> Tensor:
        """Means of ``p(x|z)`` at ``z = E_q[z]``."""
        batch = as_batch(batch)
        return self.decode(self.encode(batch).mean, batch).mean

    @torch.inference_mode()
    def interpolate(self, x0: Tensor, x1: Tensor, steps: int = 8) -> Tensor:
        """Decoded means along the straight line between the latent means of ``x0`` and ``x1``.

        Returns ``(steps, *data_shape)``; a continuous latent space makes it a smooth path.
        """
        z = self.encode({"x": torch.stack([x0, x1])}).mean  # (2, L)
        t = torch.linspace(0, 1, steps, device=z.device, dtype=z.dtype).unsqueeze(1)
        return self.decode((1 - t) * z[0] + t * z[1]).mean


class DecoderModel(ModelBase):
    """A model whose ``p(x|z)`` is a decoder network read by a likelihood (``self.decoder``,
    ``self.likelihood``): the VAE, the autoencoder, the two-layer VAE."""

    def decode(self, z: Tensor, batch: Batch | None = None):
        """``px_z = p(x|z)``; ``z`` may have leading axes, e.g. ``(K, B, latent_dim)``."""
        return self.likelihood(self.decoder(z))

    def check_values(self, lo: float, hi: float, what: str) -> None:
        self.likelihood.check_range(lo, hi, what)

    @torch.no_grad()
    def init_output_bias(self, mean: Tensor) -> None:
        """Start the decoder near the data's marginal: the output bias is set so that ``p(x|z)``
        has mean ``mean`` (per dimension) when the rest of the layer outputs zero, as Burda et
        al. (2015) initialize the output layer to the marginal log-odds. It saves the first
        epochs the work of learning the average image."""
        self.decoder.set_output_bias(self.likelihood.output_for_mean(mean.to(self.device, torch.float32)))
