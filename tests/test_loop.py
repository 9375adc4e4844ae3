"""The training loop's care with numbers: skipped batches, denormals, the gradient check."""

from __future__ import annotations

import pytest
import torch

import vaekit
from cli_helpers import poison_once
from vaekit import ELBO, Headline, ModelBase, ModelConfig, StandardNormal, TrainConfig
from vaekit.training.numerics import flush_denormal_enabled, gradients_finite


class Constant(ModelBase):
    """Every example's ELBO is exactly -1 (and its parts -0.75 and 0.25), whatever it learns."""

    headline = Headline("elbo", "ELBO", bounds_log_likelihood=True)

    def __init__(self):
        super().__init__()
        self.config = ModelConfig(data_shape=(3,), latent_dim=1)
        self.prior = StandardNormal(1)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def elbo(self, batch, n_samples=1):
        x = batch["x"]
        zero = (x.sum(1) * 0) * self.w  # NaN where x is NaN, so the guard sees it
        rec, kl = zero - 0.75, zero + 0.25
        return ELBO(rec - kl, rec, kl)

    def training_loss(self, batch, **_):
        terms = self.elbo(batch)
        return -terms.elbo, terms

    def encode(self, batch):  # the loop never encodes, decodes or weighs
        raise NotImplementedError

    decode = log_weights = encode


def test_skipped_batches_do_not_count_in_the_epochs_mean():
    """The review's case: a constant ELBO of -1 with one of ten batches skipped was reported as
    -0.9 (the sums divided by every example, skipped ones included)."""
    x = torch.ones(100, 3)
    rows = vaekit.fit(Constant(), x, None, TrainConfig(epochs=2, batch_size=10, on_nan="skip"),
                      batch_hook=poison_once(3), progress=False)
    assert rows[0]["nan_skipped"] == 1 and rows[1]["nan_skipped"] == 1  # a running count: one batch
    for row in rows:
        assert (row["train_elbo"], row["train_reconstruction"], row["train_kl"]) == (-1.0, -0.75, 0.25)


@pytest.mark.parametrize("before", [False, True])
def test_fit_restores_the_callers_denormal_setting(before):
    torch.set_flush_denormal(before)
    try:
        assert flush_denormal_enabled() is before
        seen = []
        vaekit.fit(Constant(), torch.ones(20, 3), None, TrainConfig(epochs=1, batch_size=10),
                   callback=lambda row, m: seen.append(flush_denormal_enabled()), progress=False)
        assert seen == [True]  # on while training
        assert flush_denormal_enabled() is before  # the caller's again
        with pytest.raises(vaekit.VaekitError):  # and when fit raises
            vaekit.fit(Constant(), torch.ones(20, 3), None, TrainConfig(epochs=1, batch_size=10),
                       batch_hook=poison_once(0), progress=False)
        assert flush_denormal_enabled() is before
    finally:
        torch.set_flush_denormal(False)


def test_the_gradient_check_finds_one_bad_value_among_many():
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (5, 1000, 3)]

    def fresh(bad=None):
        for p in params:
            p.grad = torch.randn_like(p)
        if bad is not None:
            params[1].grad[777] = bad

    fresh()
    assert gradients_finite(params)
    for bad in (float("nan"), float("inf"), -float("inf")):
        fresh(bad)
        assert not gradients_finite(params)
        fresh(bad)
        assert not gradients_finite(params, clip=1.0)
    fresh()
    assert gradients_finite(params, clip=1.0)
    total = torch.cat([p.grad for p in params]).norm()
    assert float(total) == pytest.approx(1.0, rel=1e-5)  # clipped to the norm asked


def test_a_time_budget_stops_at_an_epoch_end_and_resume_goes_on(tmp_path):
    """--max-seconds: past the budget, training stops at the end of that epoch (not before the
    first one ends), checkpointed; resuming runs the next epochs with a new budget."""
    x = torch.rand(64, 3)
    cfg = TrainConfig(epochs=50, batch_size=16, max_seconds=1e-9, device="cpu")
    rows = vaekit.fit(Constant(), x, None, cfg, progress=False, checkpoint_dir=tmp_path)
    assert [r["epoch"] for r in rows] == [1] and rows[-1]["stopped_time"]
    rows = vaekit.fit(Constant(), x, None, cfg, progress=False, checkpoint_dir=tmp_path, resume=True)
    assert [r["epoch"] for r in rows] == [2] and rows[-1]["step"] == 8
    free = TrainConfig(epochs=3, batch_size=16, device="cpu")  # no budget: every epoch
    assert [r["epoch"] for r in vaekit.fit(Constant(), x, None, free, progress=False)] == [1, 2, 3]
