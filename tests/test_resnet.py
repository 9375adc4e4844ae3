"""The residual convolutional networks (``--arch resnet``), added as one registered file."""

from __future__ import annotations

import pytest
import torch

import vaekit
from cli_helpers import ok, refused
from vaekit import ModelConfig, VaekitError
from vaekit.models import build_model
from vaekit.models.networks import ARCHS
from vaekit.models.resnet import ResidualBlock


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 9, 9), (1, 8, 8)])
def test_resnet_maps_images_of_any_size_to_their_own_shape(shape):
    model = build_model(ModelConfig(data_shape=shape, arch="resnet", latent_dim=3, hidden=(32,), likelihood="bernoulli"))
    x = torch.rand(2, *shape)
    qz = model.encode(x)
    assert qz.batch_shape == (2,) and qz.event_shape == (3,)
    assert model.decode(qz.rsample((4,))).batch_shape == (4, 2) and model.reconstruct(x).shape == (2, *shape)


def test_a_residual_block_whose_last_convolution_is_zero_is_the_identity():
    block = ResidualBlock(5, "relu")
    with torch.no_grad():
        block.body[-1].weight.zero_()
        block.body[-1].bias.zero_()
    x = torch.randn(2, 5, 6, 6)
    torch.testing.assert_close(block(x), x)
    with torch.no_grad():
        block.body[-1].bias.fill_(0.5)  # and otherwise adds its body's output
    torch.testing.assert_close(block(x), x + 0.5)


def test_resnet_trains_through_the_cli_and_conditions_on_labels(capsys, tmp_path):
    assert "resnet" in ARCHS
    run = tmp_path / "run"
    ok(capsys, "train", "--arch", "resnet", "--conv-channels", 8, 16, "--hidden", 32, "--latent-dim", 4,
       "--epochs", 3, "--model", "cvae", "--run-dir", run)
    rows = vaekit.runs.read_metrics(run)
    assert float(rows[-1]["val_elbo"]) > float(rows[0]["val_elbo"]) + 1  # it learns
    assert vaekit.load(run).sample(2, y=3).shape == (2, 1, 8, 8)
    with pytest.raises(VaekitError, match="resnet.*C x H x W"):
        build_model(ModelConfig(data_shape=(64,), arch="resnet", likelihood="gaussian"))
    refused(capsys, tmp_path, "train", "--arch", "resnet", "--conv-channels", 8, 8, 8, 8, "--run-dir",
            tmp_path / "small", says=("too small",))
