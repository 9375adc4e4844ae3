"""Networks: they map tensors to distribution parameters and know nothing of the ELBO.

The encoder is the seeds' shared trunk ``g1`` with two heads: ``g2`` gives the mean and ``h2``
the log-variance of ``q(z|x)``, so ``g(x) = g2(g1(x))`` and ``h(x) = h2(g1(x))``.
The decoder is ``f(z; theta)``: latent codes to a tensor shaped like the data (logits or means),
which the likelihood turns into ``p(x|z)``.

Architectures are registered by name in ``ARCHS``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .distributions import DiagonalNormal
from ..errors import VaekitError

# log sigma^2 is clamped so that exp() neither underflows to a zero scale nor overflows.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class GaussianEncoder(nn.Module):
    """``q(z|x) = N(loc(x), diag scale(x)^2)``: a trunk and two linear heads.

    Parameters
    ----------
    trunk : nn.Module
        ``g1``: maps a batch ``(B, *data_shape)`` to features ``(B, trunk_dim)``.
    trunk_dim : int
    latent_dim : int
    """

    def __init__(self, trunk: nn.Module, trunk_dim: int, latent_dim: int, n_conditions: int = 0):
        super().__init__()
        self.trunk = trunk
        # a conditional encoder q(z|x, y) sees the condition (one-hot) beside the trunk's features
        self.loc_head = nn.Linear(trunk_dim + n_conditions, latent_dim)  # g2
        self.logvar_head = nn.Linear(trunk_dim + n_conditions, latent_dim)  # h2

    def params(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(loc, scale, logvar)``, each ``(B, latent_dim)``; ``cond`` ``(B, C)`` for q(z|x, y)."""
        h = self.trunk(x)
        if cond is not None:
            h = torch.cat([h, cond.to(h.dtype)], -1)
        logvar = self.logvar_head(h).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return self.loc_head(h), torch.exp(0.5 * logvar), logvar

    def forward(self, x: Tensor, cond: Tensor | None = None) -> DiagonalNormal:
        return DiagonalNormal(*self.params(x, cond))


class Decoder(nn.Module):
    """``f(z; theta)``: ``(..., latent_dim)`` to ``(..., *data_shape)``, any leading axes."""

    def __init__(self, net: nn.Module, latent_dim: int, data_shape: tuple[int, ...]):
        super().__init__()
        self.net = net
        self.latent_dim = latent_dim
        self.data_shape = tuple(data_shape)

    @torch.no_grad()
    def set_output_bias(self, out: Tensor) -> None:
        """Make the decoder's last layer output ``out`` (shaped like the data) at zero input.

        For a convolutional last layer the bias is per channel, so ``out`` is averaged over space.
        """
        last = [m for m in self.net.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))][-1]
        if isinstance(last, nn.Linear):
            last.bias.copy_(out.reshape(-1))
        else:
            last.bias.copy_(out.reshape(out.shape[0], -1).mean(1))

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """``cond`` ``(B, C)``: a conditional decoder's input is ``z`` beside the condition."""
        if cond is not None:
            z = torch.cat([z, cond.to(z.dtype).expand(*z.shape[:-1], cond.shape[-1])], -1)
        lead = z.shape[:-1]  # e.g. (K, B) for K importance samples
        out = self.net(z.reshape(-1, self.latent_dim))
        return out.reshape(*lead, *self.data_shape)


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp_layers(sizes: list[int], activation: str = "relu") -> list[nn.Module]:
    """Linear layers between consecutive sizes, each followed by the activation."""
    if activation not in ACTIVATIONS:
        raise VaekitError(f"--activation {activation}: choose one of: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    return layers


ARCHS: dict[str, Callable[[ModelConfig], tuple[GaussianEncoder, Decoder]]] = {}


def register_arch(name: str):
    """Decorator adding a network builder ``fn(config) -> (encoder, decoder)`` to ``ARCHS``."""

    def wrap(fn):
        ARCHS[name] = fn
        return fn

    return wrap


@register_arch("mlp")
def mlp_networks(cfg: ModelConfig) -> tuple[GaussianEncoder, Decoder]:
    """Fully connected networks: ``D -> hidden... -> (loc, logvar)`` and ``L -> reversed(hidden) -> D``."""
    dim = math.prod(cfg.data_shape)
    hidden = list(cfg.hidden)
    trunk = nn.Sequential(nn.Flatten(), *mlp_layers([dim, *hidden], cfg.activation))
    encoder = GaussianEncoder(trunk, hidden[-1] if hidden else dim, cfg.latent_dim)
    dec_sizes = [cfg.latent_dim, *reversed(hidden)]
    decoder_net = nn.Sequential(*mlp_layers(dec_sizes, cfg.activation), nn.Linear(dec_sizes[-1], dim))
    return encoder, Decoder(decoder_net, cfg.latent_dim, cfg.data_shape)


@register_arch("linear")
def linear_networks(cfg: ModelConfig) -> tuple[GaussianEncoder, Decoder]:
    """Linear encoder heads and a linear decoder ``W z + b``.

    With the ``gaussian`` likelihood this is probabilistic PCA (Tipping and Bishop, 1999),
    whose log p(x) and maximum-likelihood solution are known in closed form.
    """
    return mlp_networks(ModelConfig(**{**vars(cfg), "hidden": ()}))


class UpsamplingDecoderNet(nn.Module):
    """Dense layers to a small feature map, ``up`` (layers that double its size once per width
    in ``conv_channels``) to the image, a crop to (H, W). The conv and resnet decoders differ
    only in ``up``."""

    def __init__(self, cfg: ModelConfig, up: list[nn.Module]):
        super().__init__()
        c, h, w = cfg.data_shape
        n = len(cfg.conv_channels)
        self.start = (cfg.conv_channels[-1], math.ceil(h / 2**n), math.ceil(w / 2**n))
        self.out_hw = (h, w)
        width = cfg.hidden[0] if cfg.hidden else 256
        self.dense = nn.Sequential(*mlp_layers([cfg.latent_dim, width, math.prod(self.start)], cfg.activation))
        self.up = nn.Sequential(*up)

    def forward(self, z: Tensor) -> Tensor:
        x = self.up(self.dense(z).reshape(-1, *self.start))
        h, w = self.out_hw
        return x[..., :h, :w]


def _conv_up(cfg: ModelConfig) -> list[nn.Module]:
    """Transposed convolutions (4x4, stride 2) through the widths in reverse, to the image's channels."""
    chans = list(cfg.conv_channels)
    ups: list[nn.Module] = []
    for a, b in zip(reversed(chans), list(reversed(chans))[1:]):
        ups += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.ReLU()]
    ups.append(nn.ConvTranspose2d(chans[0], cfg.data_shape[0], 4, stride=2, padding=1))
    return ups


@register_arch("conv")
def conv_networks(cfg: ModelConfig) -> tuple[GaussianEncoder, Decoder]:
    """Convolutional networks for ``C x H x W`` images: stride-2 convolutions down and
    transposed convolutions up (4x4 kernels), one dense layer of width ``hidden[0]``."""
    if len(cfg.data_shape) != 3:
        raise VaekitError(f"arch 'conv' needs images shaped C x H x W, got data of shape {cfg.data_shape}")
    c, h, w = cfg.data_shape
    chans = list(cfg.conv_channels)
    layers: list[nn.Module] = []
    for a, b in zip([c, *chans[:-1]], chans):
        layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU()]
        h, w = h // 2, w // 2
    if h < 1 or w < 1:
        raise VaekitError(f"images of shape {cfg.data_shape} are too small for {len(chans)} stride-2 convolutions")
    width = cfg.hidden[0] if cfg.hidden else 256
    trunk = nn.Sequential(*layers, nn.Flatten(), *mlp_layers([chans[-1] * h * w, width], cfg.activation))
    return GaussianEncoder(trunk, width, cfg.latent_dim), Decoder(UpsamplingDecoderNet(cfg, _conv_up(cfg)), cfg.latent_dim,
                                                                  cfg.data_shape)


def build_networks(cfg: ModelConfig) -> tuple[GaussianEncoder, Decoder]:
    """The encoder and decoder that ``cfg.arch`` names.

    With ``cfg.n_classes`` C > 0 they are conditional, for any architecture: the encoder's heads
    see a one-hot label beside the trunk's features, and the decoder's input is ``z`` beside it.
    """
    if cfg.arch not in ARCHS:
        raise VaekitError(f"unknown arch {cfg.arch!r}; choose one of: {', '.join(sorted(ARCHS))}")
    if not cfg.n_classes:
        return ARCHS[cfg.arch](cfg)
    encoder, _ = ARCHS[cfg.arch](cfg)
    _, decoder = ARCHS[cfg.arch](dataclasses.replace(cfg, latent_dim=cfg.latent_dim + cfg.n_classes))
    trunk_dim = encoder.loc_head.in_features
    return GaussianEncoder(encoder.trunk, trunk_dim, cfg.latent_dim, n_conditions=cfg.n_classes), decoder
