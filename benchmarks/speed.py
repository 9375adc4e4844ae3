"""Speed of vaekit against plain PyTorch loops and pythae, on the same data in one run.

Usage (from the repository root)::

    python benchmarks/speed.py --data-dir ../shared/data/mnist --epochs 3 --rounds 3 [--out benchmarks/results]
    python benchmarks/speed.py --tiny --out /tmp/speed   # synthetic data, seconds: what the tests run

It measures, in one run and on one machine:

1. the machine's peak, before every round: fp32 ``torch.mm`` throughput at torch's thread count
   on a 2048^3 square, and each training step's matrix-product floor (every product of the step
   at its own shape, timed alone);
2. training on MNIST grey levels in [0, 1] with the Bernoulli (cross-entropy) likelihood and
   Adam lr 1e-3. pytorch/examples' 784-400-20 VAE at batch 128: vaekit; the example's loop as
   written, images served as torchvision's MNIST serves them; the same loop over a per-example
   Dataset of float32 tensors; a hand-tuned loop (in-memory batches, fused Adam, denormals
   flushed). pythae's default MNIST VAE, 784-512-16 at batch 100: pythae and vaekit. Each
   contender runs in its own process (this script with ``--worker NAME``), holding the images
   as it would, so that its peak memory is its own; the contenders run in turn, ``--rounds``
   times;
3. the importance-weighted log-likelihood (K = 1000 on 1000 test images): vaekit's
   ``log_likelihood`` against pythae's ``get_nll``, on the same weights (the pythae model
   trained above, copied into a vaekit model), with the Monte Carlo standard error;
4. issue 6's targets as ratios of the above.

It writes ``speed.json`` and ``speed.md`` to ``--out`` and prints the Markdown.
pythae is an optional extra (``pip install -e ".[bench]"``); without it its rows are skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

DATA_SHAPE = (1, 28, 28)
DIM = math.prod(DATA_SHAPE)

# The training contenders. The first four train pytorch/examples' vae/main.py model (784-400-20 at
# batch 128); the last two pythae's default MLP VAE for MNIST (784-512-16 at batch 100).
# ``data``: how the worker holds the images, as that contender would (uint8 as stored, or float32).
CONTENDERS = {
    "vaekit-784-400-20": dict(library="vaekit", hidden=400, latent=20, batch=128, data="uint8"),
    "plain-784-400-20": dict(library="plain", hidden=400, latent=20, batch=128, data="uint8"),
    "plain-tensor-784-400-20": dict(library="plain", hidden=400, latent=20, batch=128, data="float32"),
    "bare-784-400-20": dict(library="bare", hidden=400, latent=20, batch=128, data="float32"),
    "pythae-784-512-16": dict(library="pythae", hidden=512, latent=16, batch=100, data="float32"),
    "vaekit-784-512-16": dict(library="vaekit", hidden=512, latent=16, batch=100, data="uint8"),
}
LABELS = {
    "vaekit-784-400-20": "vaekit `fit`",
    "plain-784-400-20": "plain loop: pytorch/examples as written (torchvision's per-image MNIST loading)",
    "plain-tensor-784-400-20": "plain loop, per-example Dataset of float32 tensors",
    "bare-784-400-20": "hand-tuned loop: tensor batches, fused Adam, denormals flushed",
    "pythae-784-512-16": "pythae `TrainingPipeline`",
    "vaekit-784-512-16": "vaekit `fit`",
}


# -- data ------------------------------------------------------------------------------------------

def _read_idx(path: Path) -> torch.Tensor:
    """An IDX file of uint8 images (gzipped or not) as a uint8 tensor ``(N, H, W)``, read into
    one buffer (no transient copies that would count in every worker's peak memory)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise SystemExit(f"{path}: not an IDX image file (magic {magic})")
        buf = bytearray(n * h * w)
        view, got = memoryview(buf), 0
        while got < len(buf):
            k = f.readinto(view[got:])
            if not k:
                raise SystemExit(f"{path}: truncated ({got} of {len(buf)} pixel bytes)")
            got += k
    return torch.frombuffer(buf, dtype=torch.uint8).reshape(n, h, w)


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (data_dir / name).exists():
            return data_dir / name
    raise SystemExit(f"{data_dir}: no {stem}[.gz]; pass --data-dir with MNIST's four IDX files, or --tiny")


def load_data(args) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and test images as stored, uint8 ``(N, 1, 28, 28)``; :func:`grey` makes them the
    float32 grey levels in [0, 1] that every contender trains on (no binarization).

    Read here rather than with vaekit's loader so that the plain and pythae workers import
    nothing of vaekit (their peak memory stays their own).
    """
    if args.tiny:
        # a few hundred synthetic images: skewed towards 0 like MNIST's background
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(256 + 20, *DATA_SHAPE, generator=g) ** 4 * 255).round().to(torch.uint8)
        return x[:256].clone(), x[256:].clone()
    d = Path(args.data_dir)
    return (_read_idx(_find(d, "train-images-idx3-ubyte")).unsqueeze(1),
            _read_idx(_find(d, "t10k-images-idx3-ubyte")).unsqueeze(1))


def grey(x: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 grey levels ``k / 255``."""
    return x.float().div_(255)


# -- the machine's peak ----------------------------------------------------------------------------

def _time_mm(a: torch.Tensor, b: torch.Tensor, target_s: float, repeats: int) -> float:
    """Median seconds of one ``torch.mm(a, b)`` after warm-up, each timing long enough to trust."""
    for _ in range(3):
        torch.mm(a, b)
    t0 = time.perf_counter()
    torch.mm(a, b)
    one = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, int(target_s / one))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def linear_products(batch: int, hidden: int, latent: int) -> list[tuple[str, tuple[int, int, int]]]:
    """Every matrix product of one training step of the one-hidden-layer MLP VAE, as ``(m, k, n)``.

    ``nn.Linear(i, o)`` on a batch computes ``x W^T`` (``(batch, i) @ (i, o)``) forward, and
    backward the weight's gradient ``g^T x`` (``(o, batch) @ (batch, i)``) and the input's
    gradient ``g W`` (``(batch, o) @ (o, i)``). The first layer needs no input gradient (the data
    need none), so it has two products, not three.
    """
    layers = [("encoder 1", DIM, hidden), ("loc head", hidden, latent), ("logvar head", hidden, latent),
              ("decoder 1", latent, hidden), ("decoder 2", hidden, DIM)]
    out = []
    for j, (name, i, o) in enumerate(layers):
        out.append((f"{name} forward", (batch, i, o)))
        out.append((f"{name} weight gradient", (o, batch, i)))
        if j > 0:
            out.append((f"{name} input gradient", (batch, o, i)))
    return out


def flops_per_example(hidden: int, latent: int) -> int:
    """Matrix-product FLOPs of one training example, counted exactly (``2 m k n`` per product)."""
    return sum(2 * m * k * n for _, (m, k, n) in linear_products(1, hidden, latent))


def _operands(name: str, m: int, k: int, n: int, rand) -> tuple[torch.Tensor, torch.Tensor]:
    """Operands laid out as autograd lays them out: the weight gradient's left factor is a transpose."""
    if "weight gradient" in name:
        return rand(k, m).t(), rand(k, n)
    if "forward" in name:
        return rand(m, k), rand(n, k).t()
    return rand(m, k), rand(k, n)


def machine_peak(tiny: bool) -> dict[str, Any]:
    """The throughput of ``torch.mm`` here: on a large square (the peak), and on every product of
    each contender's training step at its batch size (its matrix-product floor).

    A contender's floor is the time its step's products take one after another at the speed
    each reaches alone, hot in cache: what the step would take with no other work at all.
    """
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    target, repeats = (0.002, 3) if tiny else (0.02, 7)
    n = 512 if tiny else 2048
    square = _time_mm(rand(n, n), rand(n, n), target_s=target, repeats=repeats)
    floors = {}
    for key, spec in CONTENDERS.items():
        shape = (spec["batch"], spec["hidden"], spec["latent"])
        if shape in [f["shape"] for f in floors.values()]:
            floors[key] = next(f for f in floors.values() if f["shape"] == shape)
            continue
        products, total = [], 0.0
        for name, (m, k, nn_) in linear_products(*shape):
            a, b = _operands(name, m, k, nn_, rand)
            s = _time_mm(a, b, target_s=target, repeats=repeats)
            products.append({"product": f"{name}: ({m}x{k}) @ ({k}x{nn_})", "seconds": s,
                             "gflops": 2 * m * k * nn_ / s / 1e9})
            total += s
        floors[key] = {"shape": shape, "seconds_per_step": total, "products": products}
    return {"gflops": 2 * n**3 / square / 1e9, "square": n, "threads": torch.get_num_threads(), "floors": floors}


def pool_peaks(peaks: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds' peaks as one: the median throughput and, per contender, the median floor."""
    out = {**peaks[0], "gflops": statistics.median(p["gflops"] for p in peaks),
           "gflops_by_round": [p["gflops"] for p in peaks], "floors": {}}
    for key, floor in peaks[0]["floors"].items():
        steps = [p["floors"][key]["seconds_per_step"] for p in peaks]
        out["floors"][key] = {**floor, "seconds_per_step": statistics.median(steps), "seconds_per_step_by_round": steps}
    return out


# -- workers: one contender each, in its own process ------------------------------------------------

def peak_rss_mib() -> float:
    """This process's peak resident memory, in MiB.

    On Linux the high-water mark of its own memory map (``VmHWM``): ``ru_maxrss`` survives
    ``exec``, so a worker started by a larger parent would report the parent's peak instead.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _timed_epochs(seconds: list[float]) -> dict[str, Any]:
    """A worker's epoch times; :func:`_pool_rounds` turns every round's into the figures."""
    return {"epoch_seconds": seconds}


def worker_vaekit(spec: dict, args, x_train, x_test, tmp: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    from vaekit import VAE, ByteImages, ModelConfig, TrainConfig, evaluate, fit
    from vaekit.data.prepare import column_moments

    # the images as stored, read as grey levels a batch at a time (a quarter of float32's memory)
    x_train, x_test = ByteImages(x_train), ByteImages(x_test)
    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden=(spec["hidden"],), latent_dim=spec["latent"], likelihood="bernoulli",
                            data_shape=DATA_SHAPE))
    model.init_output_bias(column_moments(x_train)[0])  # as vaekit.train does: output bias at the data's mean
    cfg = TrainConfig(epochs=args.epochs, batch_size=spec["batch"], lr=1e-3, binarize="none",
                      val_fraction=0.0, seed=0, device=args.device)
    rows = fit(model, x_train, None, cfg, progress=False)
    out = _timed_epochs([r["seconds"] for r in rows])
    out["test_neg_elbo"] = -evaluate(model, x_test)["elbo"]
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / f"{args.worker}.safetensors"))
    return out


class ExampleVAE(torch.nn.Module):
    """The model of pytorch/examples' ``vae/main.py`` (its layer names), any sizes."""

    def __init__(self, dim: int, hidden: int, latent: int, logits: bool = False):
        from torch import nn

        super().__init__()
        self.dim, self.logits = dim, logits
        self.fc1 = nn.Linear(dim, hidden)
        self.fc21 = nn.Linear(hidden, latent)  # mean
        self.fc22 = nn.Linear(hidden, latent)  # log-variance
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, dim)

    def encode(self, x):
        h1 = torch.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        out = self.fc4(torch.relu(self.fc3(z)))
        return out if self.logits else torch.sigmoid(out)  # the example outputs sigmoid means

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, self.dim))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def _kld(mu, logvar):
    # Kingma and Welling (2013), appendix B: -KL(q(z|x) || N(0, I)) in closed form
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def worker_plain(spec: dict, args, x_train, x_test, tmp: Path) -> dict[str, Any]:
    """A training loop written the way pytorch/examples' ``vae/main.py`` writes it.

    ``data="uint8"``: images held and served as torchvision's ``MNIST`` dataset serves them (one
    PIL image a time, then ``ToTensor``), as in the example; ``data="float32"``: a per-example
    Dataset over a float32 tensor, the same loop with cheaper loading.
    """
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    class TorchvisionMNIST(Dataset):
        """torchvision.datasets.MNIST's ``__getitem__`` with ``transforms.ToTensor()``: uint8
        images, one PIL image per example, ``to_tensor`` (copy, HWC -> CHW, / 255), a target."""

        def __init__(self, images: torch.Tensor):
            self.data = images.squeeze(1)  # (N, 28, 28) uint8, as torchvision keeps it

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int):
            img = Image.fromarray(self.data[i].numpy(), mode="L")
            t = torch.from_numpy(np.array(img, np.uint8, copy=True))
            t = t.view(img.size[1], img.size[0], 1).permute((2, 0, 1)).contiguous()
            return t.to(dtype=torch.get_default_dtype()).div(255), 0

    class Images(Dataset):
        """One float32 image tensor at a time; the DataLoader collates them into batches."""

        def __init__(self, images: torch.Tensor):
            self.images = images

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, i: int):
            return self.images[i]  # no target: the cheapest per-example Dataset

    def loss_function(recon_x, x, mu, logvar):
        return F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[-1]), reduction="sum") + _kld(mu, logvar)

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = ExampleVAE(DIM, spec["hidden"], spec["latent"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    wrap = TorchvisionMNIST if spec["data"] == "uint8" else Images
    train_loader = DataLoader(wrap(x_train), batch_size=spec["batch"], shuffle=True)
    test_loader = DataLoader(wrap(x_test), batch_size=spec["batch"], shuffle=False)
    seconds = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        train_loss = 0.0
        for data in train_loader:
            data = data[0] if isinstance(data, list) else data  # (images, targets) from torchvision's
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        seconds.append(time.perf_counter() - t0)
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data in test_loader:
            data = data[0] if isinstance(data, list) else data
            data = data.to(device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
    out = _timed_epochs(seconds)
    out["test_neg_elbo"] = test_loss / len(test_loader.dataset)
    return out


def worker_bare(spec: dict, args, x_train, x_test, tmp: Path) -> dict[str, Any]:
    """The example's model and loss written by hand for speed: batches gathered from one
    in-memory tensor, the loss from logits, fused Adam, denormals flushed, no per-step sync."""
    import torch.nn.functional as F

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = ExampleVAE(DIM, spec["hidden"], spec["latent"], logits=True).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x_train, x_test = x_train.to(device).flatten(1), x_test.to(device).flatten(1)
    B, n = spec["batch"], len(x_train)

    def loss_function(logits, mu, logvar, x):
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + _kld(mu, logvar)

    seconds = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device)
        total = torch.zeros((), device=device)
        for i in range(0, n, B):
            x = x_train[perm[i : i + B]]
            loss = loss_function(*model(x), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        float(total)  # one synchronization an epoch
        seconds.append(time.perf_counter() - t0)
    model.eval()
    test = torch.zeros((), device=device)
    with torch.inference_mode():
        for i in range(0, len(x_test), 1000):
            x = x_test[i : i + 1000]
            test += loss_function(*model(x), x)
    out = _timed_epochs(seconds)
    out["test_neg_elbo"] = float(test) / len(x_test)
    return out


def _pythae_model(latent: int):
    from pythae.models import VAE, VAEConfig

    # pythae's default reconstruction loss is "mse"; "bce" is the Bernoulli cross-entropy
    return VAE(VAEConfig(input_dim=DATA_SHAPE, latent_dim=latent, reconstruction_loss="bce"))


def worker_pythae(spec: dict, args, x_train, x_test, tmp: Path) -> dict[str, Any]:
    from pythae.data.datasets import DatasetOutput
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback
    from safetensors.torch import save_file

    class EpochTimer(TrainingCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_epoch_begin(self, training_config, **kwargs):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self.t0)

    torch.manual_seed(0)
    model = _pythae_model(spec["latent"])
    cfg = BaseTrainerConfig(output_dir=str(tmp / "pythae-run"), num_epochs=args.epochs, learning_rate=1e-3,
                            per_device_train_batch_size=spec["batch"], per_device_eval_batch_size=spec["batch"],
                            seed=0, no_cuda=args.device == "cpu")
    timer = EpochTimer()
    TrainingPipeline(model=model, training_config=cfg)(train_data=x_train, callbacks=[timer])
    # its own figure: the mean of the model's loss (BCE summed over pixels + KL) over the test set
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x_test), spec["batch"]):
            xb = x_test[i : i + spec["batch"]].to(model.device)
            total += float(model(DatasetOutput(data=xb)).loss) * len(xb)
    out = _timed_epochs(timer.seconds)
    out["test_neg_elbo"] = total / len(x_test)
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / f"{args.worker}.safetensors"))
    return out


# pythae's Encoder_VAE_MLP / Decoder_AE_MLP parameter names -> vaekit's mlp networks. pythae's
# decoder ends in a sigmoid; vaekit's outputs the logits before it (the Bernoulli likelihood).
PYTHAE_TO_VAEKIT = {
    "encoder.layers.0.0": "encoder.trunk.1",  # 784 -> 512, ReLU
    "encoder.embedding": "encoder.loc_head",  # 512 -> 16, the mean
    "encoder.log_var": "encoder.logvar_head",  # 512 -> 16, log sigma^2
    "decoder.layers.0.0": "decoder.net.0",  # 16 -> 512, ReLU
    "decoder.layers.1.0": "decoder.net.2",  # 512 -> 784, then pythae's sigmoid
}


def _vaekit_from_pythae(state: dict[str, torch.Tensor], latent: int):
    from vaekit import VAE, ModelConfig

    model = VAE(ModelConfig(hidden=(512,), latent_dim=latent, likelihood="bernoulli", data_shape=DATA_SHAPE))
    mapped = {}
    for k, v in state.items():
        prefix, leaf = k.rsplit(".", 1)
        mapped[f"{PYTHAE_TO_VAEKIT[prefix]}.{leaf}"] = v
    model.load_state_dict(mapped, strict=True)  # every parameter, and nothing else
    return model


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def worker_eval(spec: dict, args, x_train, x_test, tmp: Path) -> dict[str, Any]:
    """The importance-weighted log-likelihood: vaekit against pythae on the same weights."""
    from safetensors.torch import load_file

    from vaekit import VAE, ModelConfig
    from vaekit.evaluation.estimators import log_likelihood

    k = 10 if args.tiny else args.n_importance
    x = x_test[: 20 if args.tiny else args.n_examples]
    out: dict[str, Any] = {"n_importance": k, "n_examples": len(x)}

    own = tmp / "vaekit-784-512-16.safetensors"
    if own.exists():
        model = VAE(ModelConfig(hidden=(512,), latent_dim=16, likelihood="bernoulli", data_shape=DATA_SHAPE))
        model.load_state_dict(load_file(str(own)))
        ll, s = _timed(lambda: log_likelihood(model, x, k))
        out["vaekit_own_weights"] = {"seconds": s, "log_likelihood": float(ll.mean())}

    theirs = tmp / "pythae-784-512-16.safetensors"
    if not theirs.exists():
        return out
    state = load_file(str(theirs))
    pmodel = _pythae_model(16)
    pmodel.load_state_dict(state)
    pmodel.eval()
    vmodel = _vaekit_from_pythae(state, 16)
    vmodel.eval()
    with torch.no_grad():  # the copy is exact: same means, log-variances and decoder means
        enc = pmodel.encoder(x)
        qz = vmodel.encode(x)
        z = enc.embedding
        weights_max_abs_diff = max(
            float((qz.mean - enc.embedding).abs().max()),
            float((2 * qz.stddev.log() - enc.log_covariance).abs().max()),
            float((vmodel.decode(z).mean - pmodel.decoder(z).reconstruction.flatten(1).view_as(x)).abs().max()),
        )
    # two independent runs of vaekit: their per-example differences give the Monte Carlo error
    ll0, s0 = _timed(lambda: log_likelihood(vmodel, x, k, generator_seed=0))
    ll1, s1 = _timed(lambda: log_likelihood(vmodel, x, k, generator_seed=1))
    torch.manual_seed(0)
    # pythae's get_nll returns the mean log-likelihood (a negative number) despite its name
    pythae_ll, sp = _timed(lambda: float(pmodel.get_nll(x, n_samples=k)))
    diff = (ll0 - ll1).double()
    # one estimate's per-example MC variance is var(diff) / 2; its mean over N examples has
    # standard error sqrt(var(diff) / 2 / N); two independent estimators differ by sqrt(2) of that
    se_mean = float(diff.var() / 2 / len(x)) ** 0.5 if len(x) > 1 else float("nan")
    se_diff = se_mean * 2 ** 0.5
    gap = float(ll0.mean()) - pythae_ll
    out.update(
        weights_max_abs_diff=weights_max_abs_diff,
        vaekit={"seconds": s0, "seconds_second_run": s1, "log_likelihood": float(ll0.mean()),
                "log_likelihood_second_run": float(ll1.mean()), "standard_error": se_mean},
        pythae={"seconds": sp, "log_likelihood": pythae_ll,
                "samples_used": 100 * max(1, k // 100)},  # get_nll draws whole batches of 100
        difference=gap, difference_standard_error=se_diff,
        # only comparable when pythae drew the K asked for (it draws whole batches of 100)
        agree=bool(abs(gap) <= 3 * se_diff) if 100 * max(1, k // 100) == k else None,
    )
    return out


WORKERS = {"vaekit": worker_vaekit, "plain": worker_plain, "bare": worker_bare, "pythae": worker_pythae,
           "eval": worker_eval}


def run_worker_here(args) -> int:
    """``--worker NAME``: run one contender in this process and write its JSON to ``--tmp``."""
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    tmp = Path(args.tmp)
    spec = CONTENDERS.get(args.worker, dict(library="eval", data="float32"))
    x_train, x_test = load_data(args)
    if spec["data"] == "float32":  # the uint8 arrays are dropped: this process holds what it uses
        x_train, x_test = grey(x_train), grey(x_test)
    rss_data = peak_rss_mib()
    out = WORKERS[spec["library"]](spec, args, x_train, x_test, tmp)
    out.update(peak_rss_mib=peak_rss_mib(), rss_after_data_mib=rss_data, threads=torch.get_num_threads(),
               n_train=len(x_train), n_test=len(x_test), total_seconds=time.perf_counter() - t0,
               load_average_1min_start_end=[round(load_start, 2), round(os.getloadavg()[0], 2)])
    (tmp / f"{args.worker}.json").write_text(json.dumps(out, indent=2))
    return 0


def _pool_rounds(runs: list[dict[str, Any]], floor_step_s: float, spec: dict, peak_gflops: float) -> dict[str, Any]:
    """One contender's figures over its rounds: the median of every epoch after each process's first."""
    later = [s for t in runs for s in (t["epoch_seconds"][1:] or t["epoch_seconds"])]
    med = statistics.median(later)
    n_train = runs[0]["n_train"]
    steps = math.ceil(n_train / spec["batch"])
    flops = flops_per_example(spec["hidden"], spec["latent"])
    return {
        **runs[0],
        "epoch_seconds_by_round": [t["epoch_seconds"] for t in runs],
        "seconds_per_epoch": med,
        "images_per_second": n_train / med,
        "peak_rss_mib": max(t["peak_rss_mib"] for t in runs),
        "flops_per_example": flops,
        # the step's time against the time of its matrix products alone, each at its own speed
        "fraction_of_mm_floor": floor_step_s * steps / med,
        # its matrix-product FLOPs per second against the large square's throughput
        "fraction_of_peak": flops * n_train / med / 1e9 / peak_gflops,
    }


def spawn(name: str, args, tmp: Path, note: str = "") -> dict[str, Any]:
    """Run ``--worker name`` in a fresh process; its result, or the error it ended with."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--tmp", str(tmp), "--epochs", str(args.epochs),
           "--device", args.device, "--n-importance", str(args.n_importance), "--n-examples", str(args.n_examples)]
    cmd += ["--tiny"] if args.tiny else ["--data-dir", str(args.data_dir)]
    print(f"[speed] {name} {note}...", file=sys.stderr, flush=True)
    log = tmp / f"{name}.log"
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    result = tmp / f"{name}.json"
    if proc.returncode != 0 or not result.exists():
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        print(f"[speed] {name} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": f"exit {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"}
    return json.loads(result.read_text())


# -- the report ------------------------------------------------------------------------------------

def _f(v, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def ratios(training: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, float | None]:
    """The issue's targets as measured: speed-ups (images per second over images per second),
    fractions of the matrix-product floor, and vaekit's peak memory over the plain loop's."""
    def fig(key: str, name: str):
        t = training.get(key, {})
        return t.get(name) if "error" not in t and "skipped" not in t else None

    def over(a, b):
        return a / b if a is not None and b else None

    ips = lambda key: fig(key, "images_per_second")  # noqa: E731
    ev_v, ev_p = evaluation.get("vaekit", {}), evaluation.get("pythae", {})
    return {
        "training_vs_pythae": over(ips("vaekit-784-512-16"), ips("pythae-784-512-16")),
        "training_vs_plain": over(ips("vaekit-784-400-20"), ips("plain-784-400-20")),
        "training_vs_plain_tensor": over(ips("vaekit-784-400-20"), ips("plain-tensor-784-400-20")),
        "training_vs_bare": over(ips("vaekit-784-400-20"), ips("bare-784-400-20")),
        "mm_floor_fraction_784_400_20": fig("vaekit-784-400-20", "fraction_of_mm_floor"),
        "mm_floor_fraction_784_512_16": fig("vaekit-784-512-16", "fraction_of_mm_floor"),
        "evaluation_vs_pythae": over(ev_p.get("seconds"), ev_v.get("seconds")),
        "peak_rss_vs_plain": over(fig("vaekit-784-400-20", "peak_rss_mib"), fig("plain-784-400-20", "peak_rss_mib")),
    }


TARGETS = [  # (ratio, what, target, higher is better)
    ("training_vs_pythae", "training, vaekit over pythae (784-512-16)", 3.0, True),
    ("training_vs_plain", "training, vaekit over the plain loop (784-400-20)", 2.0, True),
    ("training_vs_plain_tensor", "training, vaekit over the plain loop with a float32 tensor Dataset", None, True),
    ("training_vs_bare", "training, vaekit over the hand-tuned loop", None, True),
    ("mm_floor_fraction_784_400_20", "a vaekit step's matrix-product floor over its time (784-400-20)", 0.6, True),
    ("mm_floor_fraction_784_512_16", "the same, 784-512-16", 0.6, True),
    ("evaluation_vs_pythae", "importance-weighted log p(x), pythae's seconds over vaekit's", 5.0, True),
    ("peak_rss_vs_plain", "peak memory, vaekit over the plain loop", 1.0, False),
]


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"## Speed: vaekit, a plain PyTorch loop and pythae ({r['date']})",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['platform']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads; "
        f"load average {m['load_average_1min_start_end'][0]:.2f} at the start, "
        f"{m['load_average_1min_start_end'][1]:.2f} at the end; "
        f"data: {r['data']}; {r['epochs']} epoch{'s' if r['epochs'] != 1 else ''} per process; whole run {r['runtime_seconds']:.0f} s.",
        "",
        f"Machine peak: fp32 `torch.mm` of two {r['peak']['square']}x{r['peak']['square']} matrices, "
        f"**{r['peak']['gflops']:.1f} GFLOP/s** (median over the rounds, measured before each: "
        + ", ".join(f"{g:.1f}" for g in r["peak"]["gflops_by_round"]) + ").",
        "",
        "| model | contender | batch | s/epoch | images/s | peak RSS (MiB) | % of mm floor | % of peak | test −ELBO (nats) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, spec in CONTENDERS.items():
        t = r["training"][key]
        model = f"784-{spec['hidden']}-{spec['latent']}"
        who = LABELS[key]
        if "skipped" in t or "error" in t:
            lines.append(f"| {model} | {who} | {spec['batch']} | {'skipped: ' + t['skipped'] if 'skipped' in t else 'failed: ' + t['error']} | | | | | |")
            continue
        lines.append(f"| {model} | {who} | {spec['batch']} | {_f(t['seconds_per_epoch'], '.2f')} | "
                     f"{_f(t['images_per_second'], ',.0f')} | {_f(t['peak_rss_mib'], '.0f')} | "
                     f"{_f(100 * t['fraction_of_mm_floor'], '.1f')} | {_f(100 * t['fraction_of_peak'], '.1f')} | "
                     f"{_f(t['test_neg_elbo'], '.2f')} |")
    floors = r["peak"]["floors"]
    lines += ["", f"s/epoch: median over {r['rounds']} round{'s' if r['rounds'] != 1 else ''}, each contender in turn, of every epoch after each process's first. "
              "% of mm floor: the time the step's own matrix products take alone, one after another at the "
              "speed each reaches here hot in cache ("
              + "; ".join(f"{k.split('-', 1)[1]} at batch {f['shape'][0]}: {1e3 * f['seconds_per_step']:.2f} ms a step "
                          f"(median of {', '.join(f'{1e3 * v:.2f}' for v in f['seconds_per_step_by_round'])})"
                          for k, f in floors.items() if k.startswith("vaekit"))
              + "), over the measured time of a step. % of peak: the step's matrix-product FLOPs (exact: "
              "2·m·k·n for each of forward, weight gradient and input gradient, no input gradient for the "
              "first layer) per second over the large square's throughput. Peak RSS: the high-water mark (`VmHWM`) of the "
              "contender's own process (data loading included), the largest over the rounds."]
    e = r["evaluation"]
    lines += ["", f"Importance-weighted log p(x), K = {e.get('n_importance')}, first {e.get('n_examples')} test images "
              "(784-512-16 weights):", "",
              "| estimator | weights | seconds | log p(x) (nats) |", "|---|---|---|---|"]
    if "vaekit" in e:
        v, p = e["vaekit"], e["pythae"]
        lines.append(f"| vaekit `log_likelihood` | pythae-trained, copied | {v['seconds']:.1f} (2nd run {v['seconds_second_run']:.1f}) | "
                     f"{v['log_likelihood']:.3f} ± {v['standard_error']:.3f} (2nd run {v['log_likelihood_second_run']:.3f}) |")
        lines.append(f"| pythae `get_nll` | pythae-trained | {p['seconds']:.1f} | {p['log_likelihood']:.3f} |")
    if "vaekit_own_weights" in e:
        o = e["vaekit_own_weights"]
        lines.append(f"| vaekit `log_likelihood` | vaekit-trained | {o['seconds']:.1f} | {o['log_likelihood']:.3f} |")
    if "vaekit" in e:
        verdict = {True: "agree within 3 standard errors", False: "DISAGREE beyond 3 standard errors",
                   None: "not comparable: pythae drew a different K"}[e["agree"]]
        lines += ["", f"Same weights (copy checked: max abs difference {e['weights_max_abs_diff']:.1e}): vaekit − pythae = "
                  f"{e['difference']:+.3f} nats, Monte Carlo standard error of the difference {e['difference_standard_error']:.3f} "
                  f"(from two independent vaekit runs): **{verdict}**. "
                  f"pythae's `get_nll` returns the mean log-likelihood, not its negative; it used "
                  f"{e['pythae']['samples_used']} samples per example."]
    if "error" in e:
        lines += ["", f"Evaluation failed: {e['error']}"]
    lines += ["", "The issue's targets, as measured in this run:", "",
              "| ratio | measured | target | met |", "|---|---|---|---|"]
    for name, what, target, higher in TARGETS:
        v = r["ratios"].get(name)
        fmt = ".0%" if "fraction" in name else ".2f"
        met = "—" if v is None or target is None else ("yes" if (v >= target if higher else v <= target) else "**no**")
        goal = "—" if target is None else (("≥ " if higher else "≤ ") + format(target, fmt))
        lines.append(f"| {what} | {_f(v, fmt)} | {goal} | {met} |")
    if r["skipped"]:
        lines += ["", "Skipped: " + "; ".join(r["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def machine_info(load_start: tuple[float, ...]) -> dict[str, Any]:
    """The machine, torch, and the load on the machine at the start and now (other work skews timings)."""
    return {"platform": f"{platform.system()} {platform.machine()}", "processor": platform.processor(),
            "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "load_average_1min_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)]}


def write_results(out: Path, stem: str, results: dict[str, Any], markdown) -> None:
    """``STEM.json`` and ``STEM.md`` in ``out``; the Markdown printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (out / f"{stem}.md").write_text(table)
    print(table)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/mnist", help="MNIST's four IDX files (gzipped or not)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per contender and round")
    p.add_argument("--rounds", type=int, default=2, help="times each contender runs, in turn with the others")
    p.add_argument("--out", default="benchmarks/results", help="folder for speed.json and speed.md")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--n-importance", type=int, default=1000, help="K for the log-likelihood")
    p.add_argument("--n-examples", type=int, default=1000, help="test images for the log-likelihood")
    p.add_argument("--tiny", action="store_true", help="synthetic data, 1 epoch, K=10, 20 test images (the tests)")
    p.add_argument("--with-pythae", action="store_true", help="run pythae under --tiny too")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tiny and args.worker is None:
        args.epochs, args.rounds = 1, 1
    if args.worker:
        return run_worker_here(args)

    t_start = time.perf_counter()
    if not args.tiny and not Path(args.data_dir).is_dir():
        raise SystemExit(f"--data-dir {args.data_dir}: not a folder; pass MNIST's folder, or --tiny")
    skipped = []
    has_pythae = importlib.util.find_spec("pythae") is not None
    run_pythae = has_pythae and (not args.tiny or args.with_pythae)
    if not has_pythae:
        skipped.append("pythae (not installed: pip install -e \".[bench]\")")
    elif not run_pythae:
        skipped.append("pythae (--tiny without --with-pythae)")

    load_start = os.getloadavg()  # other work on the machine skews every timing: recorded
    peaks = []
    training: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vaekit-speed-") as d:
        tmp = Path(d)
        # Rounds: every contender once per round, in turn, so that a slow spell of a shared
        # machine falls on all of them rather than on one.
        rounds: dict[str, list[dict[str, Any]]] = {}
        for r in range(args.rounds):
            # the peak and the floors too, every round: the machine's speed drifts within a run
            print(f"[speed] machine peak, round {r + 1}/{args.rounds} ...", file=sys.stderr, flush=True)
            peaks.append(machine_peak(args.tiny))
            for key, spec in CONTENDERS.items():
                if spec["library"] == "pythae" and not run_pythae:
                    training[key] = {"skipped": "pythae not installed" if not has_pythae else "--tiny"}
                    continue
                rounds.setdefault(key, []).append(spawn(key, args, tmp, f"round {r + 1}/{args.rounds}"))
        peak = pool_peaks(peaks)
        for key, runs in rounds.items():
            spec = CONTENDERS[key]
            failed = [t for t in runs if "error" in t]
            if failed:
                training[key] = {**spec, **failed[0]}
                continue
            training[key] = {**spec, **_pool_rounds(runs, peak["floors"][key]["seconds_per_step"], spec, peak["gflops"])}
        evaluation = spawn("eval", args, tmp)

    cmd = " ".join(["python", "benchmarks/speed.py", *(sys.argv[1:] if argv is None else argv)])
    results = {
        "date": dt.date.today().isoformat(),
        "command": cmd,
        "machine": machine_info(load_start),
        "data": "synthetic (--tiny)" if args.tiny else "MNIST grey levels in [0, 1], 60000 train / 10000 test",
        "epochs": args.epochs,
        "rounds": args.rounds,
        "peak": peak,
        "training": training,
        "evaluation": evaluation,
        "ratios": ratios(training, evaluation),
        "skipped": skipped,
        "runtime_seconds": time.perf_counter() - t_start,
    }
    write_results(Path(args.out), "speed", results, markdown)
    failed = [k for k, t in training.items() if "error" in t] + (["eval"] if "error" in evaluation else [])
    if failed:
        print(f"[speed] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
