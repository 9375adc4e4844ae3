"""The conditional VAE (``--model cvae``): q(z|x, y) and p(x|z, y) with the data's labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vaekit
from cli_helpers import ok, refused
from vaekit import ModelConfig, TrainConfig


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cvae") / "run"
    model, _ = vaekit.train(ModelConfig(model="cvae", latent_dim=4, hidden=(128,)),
                            TrainConfig(data="digits", epochs=60, batch_size=64, lr=3e-3), run, progress=False)
    return run, model


def test_the_conditional_model_draws_the_class_it_is_asked_for(cvae_run):
    """A classifier trained here on the digits agrees with the requested class on most samples."""
    from sklearn.linear_model import LogisticRegression

    _, model = cvae_run
    ds = vaekit.load_dataset("digits")
    clf = LogisticRegression(max_iter=3000).fit(ds.train.flatten(1).numpy(), ds.train_labels.numpy())
    assert clf.score(ds.test.flatten(1).numpy(), ds.test_labels.numpy()) > 0.9  # a classifier worth asking
    g = torch.Generator().manual_seed(0)
    agree = []
    for label in range(10):
        samples = model.sample(20, generator=g, y=label)
        agree.append(float(np.mean(clf.predict(samples.flatten(1).numpy()) == label)))
    assert np.mean(agree) > 0.8, agree
    assert min(agree) > 0.4, agree  # every class, not only the easy ones


def test_every_command_takes_the_labels_from_the_data(capsys, cvae_run, tmp_path):
    run, _ = cvae_run
    out = ok(capsys, "evaluate", run, "--n-importance", 20, "--n-examples", 30).out
    assert "ELBO" in out and "log p(x)" in out
    for command, suffix in (("encode", "npy"), ("score", "csv"), ("reconstruct", "png")):
        ok(capsys, command, run, "-o", tmp_path / f"out.{suffix}")
    ok(capsys, "sample", run, "--label", 7, "-n", 8, "-o", tmp_path / "sevens.npy")
    assert np.load(tmp_path / "sevens.npy").shape == (8, 1, 8, 8)


def test_bad_conditional_requests_are_one_line_errors(capsys, cvae_run, tmp_path):
    run, _ = cvae_run
    refused(capsys, tmp_path, "sample", run, "--label", 10, "-o", tmp_path / "s.png", says=("--label 10", "0-9"))
    refused(capsys, tmp_path, "sample", run, "--label", "seven", "-o", tmp_path / "s.png", says=("--label seven",))
    refused(capsys, tmp_path, "sample", run, "-o", tmp_path / "s.png", says=("--label",))
    plain = tmp_path / "plain"
    ok(capsys, "train", "--epochs", 1, "--latent-dim", 2, "--hidden", 16, "--run-dir", plain)
    refused(capsys, tmp_path, "sample", plain, "--label", 3, "-o", tmp_path / "s.png", says=("not conditional",))
    np.save(tmp_path / "x.npy", (np.random.default_rng(0).random((40, 6)) < 0.5).astype(np.float32))
    refused(capsys, tmp_path, "train", "--model", "cvae", "--data", tmp_path / "x.npy", "--run-dir", tmp_path / "c",
            says=("x.npy", "--model cvae needs labelled data"))
    assert not (tmp_path / "c").exists()
