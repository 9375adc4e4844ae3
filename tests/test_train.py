"""The training loop: it learns, it is reproducible, it binarizes as asked."""

import dataclasses

import torch

from vaekit import (ELBO, VAE, Headline, ModelBase, ModelConfig, StandardNormal, TrainConfig, evaluate, fit, load,
                    load_split, prepare_data, train)

SMALL = ModelConfig(latent_dim=4, hidden=(64,), likelihood="bernoulli")


def _digits(**kw):
    cfg = TrainConfig(data="digits", batch_size=64, **kw)
    return cfg, prepare_data(cfg)


def test_training_on_digits_drives_the_validation_elbo_far_up():
    cfg, splits = _digits(epochs=25, lr=3e-3)
    torch.manual_seed(0)
    model = VAE(dataclasses.replace(SMALL, data_shape=splits.train.shape[1:]))
    before = evaluate(model, splits.val)["elbo"]
    rows = fit(model, splits.train, splits.val, cfg, progress=False)
    after = rows[-1]["val_elbo"]
    # an untrained decoder sits near 64 * log 2 = 44 nats per example; a trained one far below
    assert before < -40
    assert after > before + 12, (before, after)
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"]
    assert [r["epoch"] for r in rows] == list(range(1, 26))


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_a_seed_fixes_the_run():
    cfg, splits = _digits(epochs=2, seed=7)
    models = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        m = VAE(dataclasses.replace(SMALL, data_shape=splits.train.shape[1:]))
        fit(m, splits.train, None, dataclasses.replace(cfg, seed=seed), progress=False)
        models.append(_params(m))
    assert torch.equal(models[0], models[1])
    assert not torch.equal(models[0], models[2])


def test_validation_split_is_held_out_and_fixed_by_the_seed():
    _, a = _digits(seed=1, val_fraction=0.2)
    _, b = _digits(seed=1, val_fraction=0.2)
    _, c = _digits(seed=2, val_fraction=0.2)
    assert torch.equal(a.val.x, b.val.x) and not torch.equal(a.val.x, c.val.x)
    assert torch.equal(a.val.y, b.val.y) and a.val.y is not None  # the labels travel with their examples
    assert len(a.val) + len(a.train) == 1797 - 359 and len(a.val) == round(0.2 * 1438)
    assert a.info["n_val"] == len(a.val)


def test_binarization_modes():
    _, none = _digits()
    _, dyn = _digits(binarize="dynamic")
    _, static = _digits(binarize="static")
    is_binary = lambda t: bool(((t == 0) | (t == 1)).all())  # noqa: E731
    assert not is_binary(none.train.x) and not is_binary(dyn.train.x)  # dynamic draws per batch
    assert is_binary(dyn.test.x) and is_binary(dyn.val.x) and is_binary(static.train.x)
    assert torch.equal(dyn.test.x, static.test.x)  # held-out draws use one fixed seed


class _Recorder(ModelBase):
    """A model of the protocol whose loss remembers the batches the loop fed it."""

    headline = Headline("elbo", "ELBO", bounds_log_likelihood=False)

    def __init__(self):
        super().__init__()
        self.config = ModelConfig(data_shape=(1, 8, 8), latent_dim=1)
        self.prior = StandardNormal(1)
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def elbo(self, batch, n_samples=1):
        e = -(batch["x"].flatten(1).sum(1)) * self.w.exp()
        return ELBO(e, e, torch.zeros_like(e))

    def training_loss(self, batch, **_):
        self.seen.append(batch["x"].clone())
        terms = self.elbo(batch)
        return -terms.elbo, terms

    def encode(self, batch):  # the loop never encodes, decodes or weighs
        raise NotImplementedError

    decode = log_weights = encode


def test_dynamic_binarization_draws_afresh_every_epoch():
    _, splits = _digits()
    for mode, fresh in (("dynamic", True), ("none", False)):
        model = _Recorder()
        fit(model, splits.train, None, TrainConfig(epochs=3, batch_size=len(splits.train), binarize=mode), progress=False)
        sums = [float(x.sum()) for x in model.seen]  # order-free summary of each epoch's data
        assert (len(set(sums)) == 3) is fresh, (mode, sums)
        if fresh:
            assert all(bool(((x == 0) | (x == 1)).all()) for x in model.seen)


def test_train_writes_a_run_that_load_rebuilds(tmp_path):
    run = tmp_path / "run"
    model, summary = train(SMALL, TrainConfig(data="digits", epochs=2), run, progress=False)
    for name in ("config.json", "model.safetensors", "metrics.csv", "summary.json", "samples.png", "reconstructions.png"):
        assert (run / name).exists(), name
    again = load(run)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a.cpu(), b)
    test = load_split(TrainConfig(data="digits"), "test")
    assert evaluate(again, test)["elbo"] == summary["elbo"]


def test_byte_images_read_as_grey_levels_and_train_exactly_as_their_floats():
    from vaekit import ByteImages, VaekitError

    g = torch.Generator().manual_seed(0)
    stored = torch.randint(0, 256, (200, 1, 8, 8), generator=g, dtype=torch.uint8)
    grey = stored.float() / 255
    x = ByteImages(stored)
    assert x.shape == (200, 1, 8, 8) and len(x) == 200
    idx = torch.tensor([7, 3, 7, 199])
    for key in (idx, slice(10, 20), 5):
        assert x[key].dtype == torch.float32 and torch.equal(x[key], grey[key])
    assert torch.equal(x.subset(idx)[0:4], grey[idx])
    assert float(x[:].max()) <= 1.0
    try:
        ByteImages(grey)
    except VaekitError as e:
        assert "uint8" in str(e)
    else:
        raise AssertionError("ByteImages took float32")

    # a quarter of the memory, the same run: every step sees the same numbers
    cfg = TrainConfig(epochs=2, batch_size=32, val_fraction=0.0, binarize="none", seed=3, device="cpu")
    runs = []
    for data in (grey, x):
        torch.manual_seed(0)
        model = VAE(dataclasses.replace(SMALL, data_shape=(1, 8, 8)))
        model.init_output_bias(data[:].mean(0))
        rows = fit(model, data, None, cfg, progress=False)
        runs.append(([r["train_elbo"] for r in rows], evaluate(model, data)["elbo"], model.state_dict()))
    (rows_f, ev_f, sd_f), (rows_b, ev_b, sd_b) = runs
    assert rows_f == rows_b and ev_f == ev_b
    assert all(torch.equal(sd_f[k], sd_b[k]) for k in sd_f)
