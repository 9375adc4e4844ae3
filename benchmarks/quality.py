"""Issue-12 quality benchmark: vaekit's variants and pythae's VAE, IWAE and VAMP on dynamically
binarized MNIST, each given the same wall-clock budget on this machine in one run, then the test
negative log-likelihood by importance sampling.

Usage (from the repository root)::

    python benchmarks/quality.py --data-dir ../shared/data/mnist --budget 240 --out /tmp/quality

Every contender has the same networks (Burda et al. 2015's one-layer 784-200-200-50, tanh; the
two-layer model 784-200-200-100-100-100-50), batch 100, Adam at 1e-3 with eps 1e-4, the
output bias at the logit of the mean training image, the training images binarized afresh in
every batch, and ``--threads`` threads. vaekit trains through ``vaekit.train`` with
``--max-seconds`` (checkpoints and all, within the budget); pythae's models (``pythae.models``
VAE, IWAE, VAMP with their own losses) train in a plain loop that gives them the same
binarization and stops at the first epoch end past the budget (which spares them the overhead
of pythae's ``TrainingPipeline``, about 1.4x per epoch in ``benchmarks/speed.py``).

The test figure: ``-1/N sum_i log 1/K sum_k w_ik`` on the first ``--n-test`` test images
(binarized once with vaekit's fixed seed), K = ``--n-importance``. vaekit's models use
``vaekit.log_likelihood``; pythae's use the same estimator written here over their encoder,
decoder and prior (checked against pythae's own ``get_nll`` in the output). The Monte Carlo
standard error comes from a second, independent estimate: ``sd(a_i - b_i) / sqrt(2 N)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from torch import nn

import vaekit
from vaekit import ModelConfig, TrainConfig
from vaekit.data.prepare import prepare_data
from vaekit.evaluation.estimators import log_likelihood
from vaekit.runs import read_metrics

HIDDEN = (200, 200)
LATENT = 50

# name -> (ModelConfig changes, TrainConfig changes)
VAEKIT = {
    "vaekit VAE": ({}, {}),
    "vaekit IWAE k=5": ({}, {"objective": "iwae", "n_samples": 5}),
    "vaekit DReG k=5": ({}, {"objective": "dreg", "n_samples": 5}),
    "vaekit VAE, VampPrior (100)": ({"prior": "vamp", "prior_components": 100}, {}),
    # the KL weight ramped from 0 over the first 50 epochs (Tomczak and Welling warm up over 100)
    "vaekit VAE, VampPrior (100), KL warm-up": ({"prior": "vamp", "prior_components": 100}, {"kl_warmup_steps": 30000}),
    "vaekit VAE, 2 layers": ({"latent_dims": (100, 50)}, {}),
    "vaekit IWAE k=5, 2 layers": ({"latent_dims": (100, 50)}, {"objective": "iwae", "n_samples": 5}),
}
PYTHAE = ("pythae VAE", "pythae IWAE k=5", "pythae VAMP (100)")
PUBLISHED = [("VAE, 1 layer, 3280 epochs (Burda et al. 2015)", 86.76), ("IWAE k=50, 1 layer", 84.78),
             ("VAE, 2 layers", 85.33), ("IWAE k=50, 2 layers", 82.90)]


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def pythae_model(name: str, mean_image: torch.Tensor):
    """pythae's model with vaekit's networks: 784-200-200-(50, 50) and 50-200-200-784."""
    from pythae.models import IWAE, VAE, VAMP, IWAEConfig, VAEConfig, VAMPConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.trunk = mlp([784, *HIDDEN])
            self.loc, self.logvar = nn.Linear(HIDDEN[-1], LATENT), nn.Linear(HIDDEN[-1], LATENT)

        def forward(self, x):
            h = torch.tanh(self.trunk(x.reshape(len(x), -1)))
            return ModelOutput(embedding=self.loc(h), log_covariance=self.logvar(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([LATENT, *reversed(HIDDEN), 784])

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(len(z), 1, 28, 28))

    kind, cfg = name.split()[1], dict(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    if kind == "VAE":
        model = VAE(VAEConfig(**cfg), encoder=Encoder(), decoder=Decoder())
    elif kind == "IWAE":
        model = IWAE(IWAEConfig(**cfg, number_samples=5), encoder=Encoder(), decoder=Decoder())
    else:
        model = VAMP(VAMPConfig(**cfg, number_components=100), encoder=Encoder(), decoder=Decoder())
    with torch.no_grad():  # the same output bias as vaekit's: the logit of the mean training image
        p = mean_image.reshape(-1).clamp(1e-3, 1 - 1e-3)
        model.decoder.net[-1].bias.copy_(torch.log(p) - torch.log1p(-p))
    return model


def train_pythae(name: str, x_train: torch.Tensor, budget: float, seed: int) -> tuple[object, dict]:
    from pythae.data.datasets import DatasetOutput

    torch.manual_seed(seed)
    model = pythae_model(name, x_train.mean(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    gen = torch.Generator().manual_seed(seed)
    t0, epochs, steps = time.perf_counter(), 0, 0
    model.train()
    while True:
        epochs += 1
        for idx in torch.randperm(len(x_train), generator=gen).split(100):
            x = torch.bernoulli(x_train[idx], generator=gen)
            loss = model(DatasetOutput(data=x), epoch=epochs).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        if time.perf_counter() - t0 > budget:
            break
    model.eval()
    return model, {"epochs": epochs, "steps": steps, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def pythae_log_px(model, x: torch.Tensor, k: int, seed: int, batch: int = 100, chunk: int = 250) -> torch.Tensor:
    """Per-example ``log 1/K sum_k p(x|z_k) p(z_k) / q(z_k|x)``, ``z_k ~ q(z|x)``, with the
    model's own networks and prior (the VampPrior through pythae's ``_log_p_z``)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for xb in x.split(batch):
        enc = model.encoder(xb)
        q = torch.distributions.Normal(enc.embedding, torch.exp(0.5 * enc.log_covariance))
        target = xb.reshape(len(xb), -1)
        parts = []
        for n in [chunk] * (k // chunk) + ([k % chunk] if k % chunk else []):
            eps = torch.randn(n, *q.loc.shape, generator=gen)
            z = q.loc + q.scale * eps
            logits = model.decoder.net(z)
            log_px_z = -nn.functional.binary_cross_entropy_with_logits(
                logits, target.expand_as(logits), reduction="none").sum(-1)
            if hasattr(model, "_log_p_z"):  # pythae's VAMP leaves out the -D/2 log 2 pi of both densities
                log_pz = model._log_p_z(z.reshape(-1, LATENT)).reshape(n, -1) - 0.5 * LATENT * math.log(2 * math.pi)
            else:
                log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
            parts.append(log_px_z + log_pz - q.log_prob(z).sum(-1))
        w = torch.cat(parts).double()
        out.append(torch.logsumexp(w, 0) - math.log(k))
    return torch.cat(out)


def figure(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Test NLL from two independent estimates: the first, and the Monte Carlo standard error
    of one estimate from their per-example differences."""
    return {"nll": float(-a.mean()), "mc_stderr": float((a - b).std() / math.sqrt(2 * len(a))),
            "nll_second": float(-b.mean()), "example_stderr": float(a.std() / math.sqrt(len(a)))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--budget", type=float, default=240.0, help="training seconds per contender")
    p.add_argument("--n-importance", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="substrings of the contenders to run")
    p.add_argument("--out", default="/tmp/quality")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_train = TrainConfig(data="mnist", data_dir=args.data_dir, binarize="dynamic", val_fraction=0.0,
                             batch_size=100, lr=1e-3, adam_eps=1e-4, epochs=10**6, max_seconds=args.budget,
                             seed=args.seed, device="cpu")
    base_model = ModelConfig(hidden=HIDDEN, latent_dim=LATENT, activation="tanh", likelihood="bernoulli")
    splits = prepare_data(base_train)
    x_test = splits.test.x[: args.n_test]
    every = [*VAEKIT, *PYTHAE]  # --only: contenders by exact name, else by a part of their name
    names = [n for n in every if not args.only or n in args.only
             or (not set(args.only) & set(every) and any(s in n for s in args.only))]
    started, load0 = dt.datetime.now().isoformat(timespec="seconds"), os.getloadavg()[0]
    rows = []
    for name in names:
        if name in VAEKIT:
            mc, tc = VAEKIT[name]
            run_dir = out / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            shutil.rmtree(run_dir, ignore_errors=True)  # this script's own folder, from an earlier run
            t0 = time.perf_counter()
            model, _ = vaekit.train(dataclasses.replace(base_model, **mc), dataclasses.replace(base_train, **tc),
                                    run_dir, progress=False)
            seconds = time.perf_counter() - t0
            metrics = read_metrics(run_dir)
            trained = {"epochs": int(metrics[-1]["epoch"]), "steps": int(metrics[-1]["step"]),
                       "seconds": sum(float(r["seconds"]) for r in metrics), "with_summary": seconds}
            model.eval()
            t1 = time.perf_counter()
            a = log_likelihood(model, x_test, args.n_importance, generator_seed=1)
            b = log_likelihood(model, x_test, args.n_importance, generator_seed=2)
        else:
            model, trained = train_pythae(name, splits.train.x, args.budget, args.seed)
            t1 = time.perf_counter()
            a = pythae_log_px(model, x_test, args.n_importance, seed=1)
            b = pythae_log_px(model, x_test, args.n_importance, seed=2)
        row = {"name": name, **trained, **figure(a, b), "eval_seconds": time.perf_counter() - t1}
        if name == "pythae VAE":  # the estimator written here against pythae's own
            n = min(200, len(x_test))
            row["pythae_get_nll_first"] = -float(model.get_nll(x_test[:n], n_samples=args.n_importance, batch_size=100))
            row["ours_first"] = float(-a[:n].mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "quality.json").write_text(json.dumps({"rows": rows}, indent=1))
    meta = {"command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "started": started, "finished": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                       f"{args.threads} thread(s)", "load_average_start": load0, "load_average_end": os.getloadavg()[0],
            "n_test": len(x_test), "n_importance": args.n_importance, "budget_s": args.budget}
    (out / "quality.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (out / "quality.md").write_text(table(meta, rows))
    print(table(meta, rows))
    return 0


def table(meta: dict, rows: list[dict]) -> str:
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; {meta['started']} to {meta['finished']}; load average "
             f"{meta['load_average_start']:.2f} at the start, {meta['load_average_end']:.2f} at the end.  ",
             f"Budget: {meta['budget_s']:g} s of training each; test NLL on the first {meta['n_test']} test images, "
             f"K = {meta['n_importance']}.", "",
             "| model | epochs | steps | training s | test NLL (nats) | MC s.e. | s.e. over images | bits/dim |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["nll"]):
        lines.append(f"| {r['name']} | {r['epochs']} | {r['steps']} | {r['seconds']:.0f} | {r['nll']:.2f} | "
                     f"{r['mc_stderr']:.3f} | {r['example_stderr']:.2f} | {r['nll'] / 784 / math.log(2):.4f} |")
    for r in rows:
        if "pythae_get_nll_first" in r:
            lines.append(f"\nEstimator check, {r['name']}, first {min(200, meta['n_test'])} images, K = {meta['n_importance']}: "
                         f"this script {r['ours_first']:.2f}, pythae's `get_nll` {r['pythae_get_nll_first']:.2f}.")
    lines.append("\nPublished, whole test set, K = 5000: "
                 + "; ".join(f"{n} {v}" for n, v in PUBLISHED) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
