"""Presets of published protocols (Burda et al. 2015), and the settings they need."""

from __future__ import annotations

import json

import pytest

from cli_helpers import ok, refused
from vaekit.config import PRESETS, TrainConfig
from vaekit.training import checkpoint as ckpt
from vaekit.training.schedules import burda_stage, lr_factor


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_builds_and_trains_with_its_settings(capsys, tmp_path, name):
    run = tmp_path / name
    ok(capsys, "train", "--preset", name, "--epochs", 1, "--run-dir", run)  # digits, one epoch
    config = json.loads((run / "config.json").read_text())
    for part in ("model", "train"):
        for key, value in PRESETS[name][part].items():
            if key != "epochs":  # overridden by the flag
                got = config[part][key]
                assert (tuple(got) if isinstance(got, list) else got) == value, (part, key)
    assert config["train"]["preset"] == name and config["train"]["epochs"] == 1
    groups = ckpt.load_checkpoint(run / ckpt.LAST).param_groups  # the optimizer as it ran
    assert groups[0]["eps"] == 1e-4 and tuple(groups[0]["betas"]) == (0.9, 0.999)


def test_every_flag_overrides_the_presets_own_setting(capsys, tmp_path):
    run = tmp_path / "run"
    ok(capsys, "train", "--preset", "burda-1layer", "--epochs", 1, "--hidden", 64, "--batch-size", 50,
       "--activation", "relu", "--run-dir", run)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden"] == [64] and config["model"]["activation"] == "relu"
    assert config["train"]["batch_size"] == 50 and config["train"]["adam_eps"] == 1e-4  # the rest kept
    refused(capsys, tmp_path, "train", "--preset", "burda-9layer", says=("--preset",))


def test_the_burda_schedule_lasts_3_to_the_i_epochs_at_10_to_the_minus_i_over_7():
    starts = [sum(3**j for j in range(i)) for i in range(9)]  # 0, 1, 4, 13, 40, ..., 3280
    assert starts[8] == 3280
    for i in range(8):
        assert burda_stage(starts[i]) == i and burda_stage(starts[i + 1] - 1) == i
    f = lr_factor(TrainConfig(lr_schedule="burda", epochs=3280), steps_per_epoch=5)
    for epoch, stage in ((0, 0), (1, 1), (3, 1), (4, 2), (39, 3), (3279, 7)):
        for step in (epoch * 5, epoch * 5 + 4):  # every step of the epoch
            assert f(step) == pytest.approx(10 ** (-stage / 7)), (epoch, step)
