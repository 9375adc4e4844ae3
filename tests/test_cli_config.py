"""Every option of ``vaekit train`` is a config field, with the field's default: nothing is
copied by hand between the command line and the dataclasses."""

from __future__ import annotations

import dataclasses

from vaekit import ModelConfig, TrainConfig
from vaekit.cli import _NOT_OPTIONS, build_parser, configs_from_args


def _train_args(*argv):
    return build_parser().parse_args(["train", *map(str, argv)])


def test_every_config_field_is_an_option_with_the_fields_default():
    args = _train_args()
    fields = [f.name for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls) if f.name not in _NOT_OPTIONS]
    missing = [name for name in fields if not hasattr(args, name)]
    assert missing == [], f"config fields without a train option: {missing}"
    assert configs_from_args(args) == (ModelConfig(), TrainConfig())


def test_options_reach_their_fields():
    args = _train_args("--latent-dim", 3, "--hidden", 7, 5, "--prior", "standard", "--likelihood", "gaussian",
                       "--lr", 0.01, "--epochs", 4, "--free-bits", 0.5, "--image-size", 9, 11, "--patience", 2,
                       "--no-memmap", "--grayscale")
    model, train = configs_from_args(args)
    assert (model.latent_dim, model.hidden, model.prior, model.likelihood) == (3, (7, 5), "standard", "gaussian")
    assert (train.lr, train.epochs, train.free_bits, train.image_size, train.patience) == (0.01, 4, 0.5, (9, 11), 2)
    assert train.memmap is False and train.grayscale is True
