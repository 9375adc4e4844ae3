"""Residual convolutional networks for images (``--arch resnet``), registered like every arch.

Encoder: a 3x3 stem, then per width in ``conv_channels`` a residual block and a stride-2
convolution, a last block, and a dense layer of width ``hidden[0]``. Decoder: the mirror, with
stride-2 transposed convolutions up and a crop to the image's size (28x28 MNIST: 28 -> 14 -> 7
and back with the default two widths). Blocks are pre-activation, ``x + conv(act(conv(act(x))))``
(He et al. 2016, https://arxiv.org/abs/1603.05027).
"""

from __future__ import annotations


from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import VaekitError
from .networks import ACTIVATIONS, Decoder, GaussianEncoder, UpsamplingDecoderNet, mlp_layers, register_arch


class ResidualBlock(nn.Module):
    """``x + conv3x3(act(conv3x3(act(x))))``, channels and size kept."""

    def __init__(self, channels: int, activation: str):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.body = nn.Sequential(act(), nn.Conv2d(channels, channels, 3, padding=1),
                                  act(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _resnet_up(cfg: ModelConfig) -> list[nn.Module]:
    """A block, then per width in reverse a transposed convolution up and a block; the last
    layer makes the output (``set_output_bias`` finds it): up to the image's channels."""
    chans = list(cfg.conv_channels)
    layers: list[nn.Module] = [ResidualBlock(chans[-1], cfg.activation)]
    for a, b in zip(reversed(chans), list(reversed(chans))[1:]):
        layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), ResidualBlock(b, cfg.activation)]
    layers += [ACTIVATIONS[cfg.activation](), nn.ConvTranspose2d(chans[0], cfg.data_shape[0], 4, stride=2, padding=1)]
    return layers


@register_arch("resnet")
def resnet_networks(cfg: ModelConfig) -> tuple[GaussianEncoder, Decoder]:
    """Residual convolutional networks for ``C x H x W`` images."""
    if len(cfg.data_shape) != 3:
        raise VaekitError(f"arch 'resnet' needs images shaped C x H x W, got data of shape {cfg.data_shape}")
    c, h, w = cfg.data_shape
    chans = list(cfg.conv_channels)
    layers: list[nn.Module] = [nn.Conv2d(c, chans[0], 3, padding=1)]
    for a, b in zip(chans, chans[1:] + chans[-1:]):
        layers += [ResidualBlock(a, cfg.activation), nn.Conv2d(a, b, 4, stride=2, padding=1)]
        h, w = h // 2, w // 2
    if h < 1 or w < 1:
        raise VaekitError(f"images of shape {cfg.data_shape} are too small for {len(chans)} stride-2 convolutions")
    width = cfg.hidden[0] if cfg.hidden else 256
    trunk = nn.Sequential(*layers, ResidualBlock(chans[-1], cfg.activation), ACTIVATIONS[cfg.activation](),
                          nn.Flatten(), *mlp_layers([chans[-1] * h * w, width], cfg.activation))
    decoder = Decoder(UpsamplingDecoderNet(cfg, _resnet_up(cfg)), cfg.latent_dim, cfg.data_shape)
    return GaussianEncoder(trunk, width, cfg.latent_dim), decoder
